//! Messages a client sends: the untagged startup phase (StartupMessage, SSLRequest,
//! GSSENCRequest, CancelRequest), then tagged messages. [`FrontendDecoder`] frames and parses
//! them; every frame keeps its exact bytes.

use super::{
    CANCEL_REQUEST_CODE, DEFAULT_MAX_MESSAGE, Format, GSSENC_REQUEST_CODE, MAX_STARTUP,
    PROTOCOL_3_0, Reader, SSL_REQUEST_CODE, Side, Tag, WireError, length_at,
};

/// Where a client connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Untagged packets: SSLRequest / GSSENCRequest (any number), then a StartupMessage or a
    /// CancelRequest.
    Startup,
    /// After the StartupMessage: tagged messages.
    Tagged,
    /// After a CancelRequest: nothing more may come.
    Cancelled,
}

/// An incremental decoder of a client's byte stream.
#[derive(Debug, Clone)]
pub struct FrontendDecoder {
    phase: Phase,
    max_message: u32,
}

impl Default for FrontendDecoder {
    fn default() -> Self {
        FrontendDecoder::new(DEFAULT_MAX_MESSAGE)
    }
}

/// One decoded client message and its exact bytes (tag and length included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendFrame<'a> {
    pub raw: &'a [u8],
    pub message: FrontendMessage<'a>,
}

/// A client message, its fields borrowed from the frame. Strings are the bytes sent (in the
/// client encoding, normally UTF-8), without their NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage<'a> {
    SslRequest,
    GssEncRequest,
    Startup(Startup<'a>),
    CancelRequest(CancelRequest),
    /// 'Q': a simple query string (may hold several statements).
    Query(&'a [u8]),
    Parse(Parse<'a>),
    Bind(Bind<'a>),
    Execute(Execute<'a>),
    Describe(Target<'a>),
    Close(Target<'a>),
    Sync,
    Flush,
    Terminate,
    CopyData(&'a [u8]),
    CopyDone,
    /// 'f': the client's reason for abandoning a COPY FROM STDIN.
    CopyFail(&'a [u8]),
    /// 'p': PasswordMessage, SASLInitialResponse, SASLResponse or GSSResponse — which one only
    /// the authentication exchange knows; see [`AuthResponse`].
    AuthResponse(AuthResponse<'a>),
    FunctionCall(FunctionCall<'a>),
}

/// StartupMessage (protocol 3.0): its parameters in the order sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Startup<'a> {
    pub params: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Startup<'a> {
    /// The first value sent for `name`.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.params
            .iter()
            .find(|(k, _)| *k == name.as_bytes())
            .map(|(_, v)| *v)
    }

    pub fn user(&self) -> Option<&'a [u8]> {
        self.get("user")
    }

    /// The database; PostgreSQL defaults it to the user name when absent.
    pub fn database(&self) -> Option<&'a [u8]> {
        self.get("database")
    }
}

/// CancelRequest: the key a server handed out in BackendKeyData.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelRequest {
    pub pid: u32,
    pub secret: u32,
}

/// 'P': prepare `query` as statement `name` (empty = the unnamed statement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    pub name: &'a [u8],
    pub query: &'a [u8],
    /// Parameter type OIDs the client specifies (0 = let the server infer).
    pub param_types: Vec<u32>,
}

/// 'B': bind parameters to a statement, making a portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    /// None, one for all, or one per parameter (checked).
    pub param_formats: Vec<Format>,
    /// `None` is SQL NULL (length -1).
    pub params: Vec<Option<&'a [u8]>>,
    pub result_formats: Vec<Format>,
}

/// 'E': run a portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execute<'a> {
    pub portal: &'a [u8],
    /// 0 (or less) = no limit.
    pub max_rows: i32,
}

/// What Describe and Close act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Statement,
    Portal,
}

impl TargetKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            TargetKind::Statement => b'S',
            TargetKind::Portal => b'P',
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub kind: TargetKind,
    pub name: &'a [u8],
}

/// 'F': the fast-path function call interface (calls a function by OID, no SQL text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCall<'a> {
    pub function: u32,
    pub arg_formats: Vec<Format>,
    pub args: Vec<Option<&'a [u8]>>,
    pub result_format: Format,
}

/// The body of a 'p' message, to be read as what the server asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthResponse<'a> {
    pub body: &'a [u8],
}

/// SASLInitialResponse: the mechanism chosen and the client-first-message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaslInitialResponse<'a> {
    pub mechanism: &'a [u8],
    /// `None` when the client sent length -1.
    pub data: Option<&'a [u8]>,
}

impl<'a> AuthResponse<'a> {
    /// As a PasswordMessage (cleartext or `md5…`): the password string.
    pub fn password(&self) -> Result<&'a [u8], WireError> {
        let mut r = Reader::new(self.body, "PasswordMessage");
        let p = r.cstr("password")?;
        r.finish()?;
        Ok(p)
    }

    /// As a SASLInitialResponse.
    pub fn sasl_initial(&self) -> Result<SaslInitialResponse<'a>, WireError> {
        let mut r = Reader::new(self.body, "SASLInitialResponse");
        let mechanism = r.cstr("mechanism")?;
        let data = r.value("data")?;
        r.finish()?;
        Ok(SaslInitialResponse { mechanism, data })
    }

    /// As a SASLResponse (or GSSResponse): the raw data.
    pub fn sasl_response(&self) -> &'a [u8] {
        self.body
    }
}

impl FrontendDecoder {
    /// A decoder for a new connection (startup phase), refusing tagged messages whose length
    /// field exceeds `max_message`.
    pub fn new(max_message: u32) -> Self {
        FrontendDecoder {
            phase: Phase::Startup,
            max_message,
        }
    }

    /// A decoder for a stream already past its StartupMessage.
    pub fn tagged(max_message: u32) -> Self {
        FrontendDecoder {
            phase: Phase::Tagged,
            max_message,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Decodes the first message of `buf`: `Ok(None)` when more bytes are needed, else the frame
    /// and the number of bytes it took (= `frame.raw.len()`, never more than `buf.len()`).
    pub fn decode<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Option<(FrontendFrame<'a>, usize)>, WireError> {
        match self.phase {
            Phase::Startup => {
                let Some(frame) = decode_startup(buf)? else {
                    return Ok(None);
                };
                match frame.message {
                    FrontendMessage::Startup(_) => self.phase = Phase::Tagged,
                    FrontendMessage::CancelRequest(_) => self.phase = Phase::Cancelled,
                    _ => {}
                }
                let n = frame.raw.len();
                Ok(Some((frame, n)))
            }
            Phase::Tagged => {
                let Some(frame) = decode_tagged(buf, self.max_message)? else {
                    return Ok(None);
                };
                let n = frame.raw.len();
                Ok(Some((frame, n)))
            }
            Phase::Cancelled if buf.is_empty() => Ok(None),
            Phase::Cancelled => Err(WireError::AfterCancel),
        }
    }
}

const STARTUP: &str = "startup packet";

pub(crate) fn decode_startup(buf: &[u8]) -> Result<Option<FrontendFrame<'_>>, WireError> {
    if buf.first() == Some(&0x16) {
        // A TLS record header (handshake): the length would read as > 369 MB anyway.
        return Err(WireError::DirectTls);
    }
    let Some(len) = length_at(buf, 0) else {
        return Ok(None);
    };
    if len < 4 {
        return Err(WireError::LengthTooSmall { msg: STARTUP, len });
    }
    if len > MAX_STARTUP {
        return Err(WireError::StartupTooLarge { len });
    }
    if len < 8 {
        return Err(WireError::StartupTooShort { len });
    }
    let Some(raw) = buf.get(..len as usize) else {
        return Ok(None);
    };
    let mut r = Reader::new(raw.get(4..).unwrap_or_default(), STARTUP);
    let code = r.u32("protocol code")?;
    let fixed = |msg, expected: u32| {
        if len == expected {
            Ok(())
        } else {
            Err(WireError::WrongLength { msg, expected, len })
        }
    };
    let message = match code {
        SSL_REQUEST_CODE => {
            fixed("SSLRequest", 8)?;
            FrontendMessage::SslRequest
        }
        GSSENC_REQUEST_CODE => {
            fixed("GSSENCRequest", 8)?;
            FrontendMessage::GssEncRequest
        }
        CANCEL_REQUEST_CODE => {
            fixed("CancelRequest", 16)?;
            let mut r = Reader::new(raw.get(8..).unwrap_or_default(), "CancelRequest");
            FrontendMessage::CancelRequest(CancelRequest {
                pid: r.u32("process id")?,
                secret: r.u32("secret key")?,
            })
        }
        PROTOCOL_3_0 => FrontendMessage::Startup(startup_params(r)?),
        other => {
            return Err(WireError::UnsupportedProtocol {
                major: (other >> 16) as u16,
                minor: (other & 0xffff) as u16,
            });
        }
    };
    Ok(Some(FrontendFrame { raw, message }))
}

fn startup_params(mut r: Reader<'_>) -> Result<Startup<'_>, WireError> {
    let mut params = Vec::new();
    loop {
        let name = r.cstr("parameter name")?;
        if name.is_empty() {
            break;
        }
        let value = r.cstr("parameter value")?;
        params.push((name, value));
    }
    r.finish()?;
    Ok(Startup { params })
}

/// The message name of a frontend tag, or `None` for a tag clients do not send.
pub fn tag_name(tag: u8) -> Option<&'static str> {
    Some(match tag {
        b'Q' => "Query",
        b'P' => "Parse",
        b'B' => "Bind",
        b'E' => "Execute",
        b'D' => "Describe",
        b'C' => "Close",
        b'S' => "Sync",
        b'H' => "Flush",
        b'X' => "Terminate",
        b'd' => "CopyData",
        b'c' => "CopyDone",
        b'f' => "CopyFail",
        b'p' => "PasswordMessage",
        b'F' => "FunctionCall",
        _ => return None,
    })
}

fn decode_tagged(buf: &[u8], max: u32) -> Result<Option<FrontendFrame<'_>>, WireError> {
    let Some(&tag) = buf.first() else {
        return Ok(None);
    };
    let msg = tag_name(tag).ok_or(WireError::UnknownTag {
        side: Side::Frontend,
        tag: Tag(tag),
    })?;
    let Some(len) = length_at(buf, 1) else {
        return Ok(None);
    };
    if len < 4 {
        return Err(WireError::LengthTooSmall { msg, len });
    }
    if len > max {
        return Err(WireError::MessageTooLarge { msg, len, max });
    }
    let Some(raw) = buf.get(..1 + len as usize) else {
        return Ok(None);
    };
    let body = raw.get(5..).unwrap_or_default();
    let message = parse_tagged(tag, msg, body)?;
    Ok(Some(FrontendFrame { raw, message }))
}

pub(crate) fn parse_tagged<'a>(
    tag: u8,
    msg: &'static str,
    body: &'a [u8],
) -> Result<FrontendMessage<'a>, WireError> {
    let mut r = Reader::new(body, msg);
    let m = match tag {
        b'Q' => FrontendMessage::Query(r.cstr("query")?),
        b'P' => {
            let name = r.cstr("statement name")?;
            let query = r.cstr("query")?;
            let n = r.count("parameter type count")?;
            r.need(n.saturating_mul(4), "parameter types")?;
            let param_types = (0..n)
                .map(|_| r.u32("parameter type"))
                .collect::<Result<_, _>>()?;
            FrontendMessage::Parse(Parse {
                name,
                query,
                param_types,
            })
        }
        b'B' => {
            let portal = r.cstr("portal name")?;
            let statement = r.cstr("statement name")?;
            let param_formats = r.formats("parameter format code")?;
            let params = values(&mut r, "parameter")?;
            check_formats(msg, &param_formats, params.len())?;
            let result_formats = r.formats("result format code")?;
            FrontendMessage::Bind(Bind {
                portal,
                statement,
                param_formats,
                params,
                result_formats,
            })
        }
        b'E' => FrontendMessage::Execute(Execute {
            portal: r.cstr("portal name")?,
            max_rows: r.i32("row limit")?,
        }),
        b'D' => FrontendMessage::Describe(target(&mut r)?),
        b'C' => FrontendMessage::Close(target(&mut r)?),
        b'S' => FrontendMessage::Sync,
        b'H' => FrontendMessage::Flush,
        b'X' => FrontendMessage::Terminate,
        b'd' => FrontendMessage::CopyData(r.rest()),
        b'c' => FrontendMessage::CopyDone,
        b'f' => FrontendMessage::CopyFail(r.cstr("error message")?),
        b'p' => FrontendMessage::AuthResponse(AuthResponse { body: r.rest() }),
        b'F' => {
            let function = r.u32("function oid")?;
            let arg_formats = r.formats("argument format code")?;
            let args = values(&mut r, "argument")?;
            check_formats(msg, &arg_formats, args.len())?;
            let code = r.i16("result format code")?;
            let result_format = Format::from_code(msg, "result format code", code)?;
            FrontendMessage::FunctionCall(FunctionCall {
                function,
                arg_formats,
                args,
                result_format,
            })
        }
        other => {
            return Err(WireError::UnknownTag {
                side: Side::Frontend,
                tag: Tag(other),
            });
        }
    };
    r.finish()?;
    Ok(m)
}

/// An Int16 count then that many length-prefixed values (-1 = NULL).
fn values<'a>(r: &mut Reader<'a>, field: &'static str) -> Result<Vec<Option<&'a [u8]>>, WireError> {
    let n = r.count(field)?;
    // Each value takes at least its 4-byte length.
    r.need(n.saturating_mul(4), field)?;
    (0..n).map(|_| r.value(field)).collect()
}

fn check_formats(msg: &'static str, formats: &[Format], values: usize) -> Result<(), WireError> {
    if formats.len() > 1 && formats.len() != values {
        return Err(WireError::FormatCount {
            msg,
            formats: formats.len(),
            values,
        });
    }
    Ok(())
}

fn target<'a>(r: &mut Reader<'a>) -> Result<Target<'a>, WireError> {
    let kind = match r.u8("kind")? {
        b'S' => TargetKind::Statement,
        b'P' => TargetKind::Portal,
        other => return Err(r.invalid("kind (must be 'S' or 'P')", other.into())),
    };
    Ok(Target {
        kind,
        name: r.cstr("name")?,
    })
}
