//! Messages a server sends (all tagged: 1-byte tag + 4-byte length). [`BackendDecoder`] frames
//! and parses every protocol 3.0 backend message, in full for those a gateway inspects and
//! structurally (validated, not copied) for rows and row descriptions.
//!
//! The one untagged answer — the single byte after an SSLRequest/GSSENCRequest — is read with
//! [`super::parse_encryption_answer`].

use super::{DEFAULT_MAX_MESSAGE, Format, Reader, Side, Tag, WireError, length_at};

/// An incremental decoder of a server's byte stream (stateless: every message is tagged).
#[derive(Debug, Clone, Copy)]
pub struct BackendDecoder {
    max_message: u32,
}

impl Default for BackendDecoder {
    fn default() -> Self {
        BackendDecoder::new(DEFAULT_MAX_MESSAGE)
    }
}

/// One decoded server message and its exact bytes (tag and length included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendFrame<'a> {
    pub raw: &'a [u8],
    pub message: BackendMessage<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendMessage<'a> {
    /// 'R'
    Authentication(Authentication<'a>),
    /// 'K'
    BackendKeyData { pid: u32, secret: u32 },
    /// 'S'
    ParameterStatus { name: &'a [u8], value: &'a [u8] },
    /// 'Z'
    ReadyForQuery(TransactionStatus),
    /// 'C'
    CommandComplete(CommandComplete<'a>),
    /// 'E'
    ErrorResponse(Fields<'a>),
    /// 'N'
    NoticeResponse(Fields<'a>),
    /// 'T'
    RowDescription(RowDescription<'a>),
    /// 'D'
    DataRow(DataRow<'a>),
    /// 'G'
    CopyInResponse(CopyResponse),
    /// 'H'
    CopyOutResponse(CopyResponse),
    /// 'W' (replication)
    CopyBothResponse(CopyResponse),
    /// 'd'
    CopyData(&'a [u8]),
    /// 'c'
    CopyDone,
    /// '1'
    ParseComplete,
    /// '2'
    BindComplete,
    /// '3'
    CloseComplete,
    /// 'n'
    NoData,
    /// 's': Execute reached its row limit; the portal stays open.
    PortalSuspended,
    /// 'I': the query string (or portal) was empty.
    EmptyQueryResponse,
    /// 't': parameter type OIDs of a described statement.
    ParameterDescription(Vec<u32>),
    /// 'V': the result of a FunctionCall (`None` = NULL).
    FunctionCallResponse(Option<&'a [u8]>),
    /// 'A': LISTEN/NOTIFY.
    NotificationResponse {
        pid: u32,
        channel: &'a [u8],
        payload: &'a [u8],
    },
    /// 'v'
    NegotiateProtocolVersion {
        newest_minor: u32,
        unrecognized: Vec<&'a [u8]>,
    },
}

/// The authentication request or result ('R').
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication<'a> {
    /// 0
    Ok,
    /// 2
    KerberosV5,
    /// 3
    CleartextPassword,
    /// 5
    Md5Password { salt: [u8; 4] },
    /// 7
    Gss,
    /// 8
    GssContinue(&'a [u8]),
    /// 9
    Sspi,
    /// 10: the mechanisms offered, in the server's order of preference.
    Sasl(Vec<&'a [u8]>),
    /// 11: server-first-message.
    SaslContinue(&'a [u8]),
    /// 12: server-final-message.
    SaslFinal(&'a [u8]),
}

impl Authentication<'_> {
    pub(crate) fn code(&self) -> i32 {
        match self {
            Authentication::Ok => 0,
            Authentication::KerberosV5 => 2,
            Authentication::CleartextPassword => 3,
            Authentication::Md5Password { .. } => 5,
            Authentication::Gss => 7,
            Authentication::GssContinue(_) => 8,
            Authentication::Sspi => 9,
            Authentication::Sasl(_) => 10,
            Authentication::SaslContinue(_) => 11,
            Authentication::SaslFinal(_) => 12,
        }
    }
}

/// The transaction status in ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// 'I': not in a transaction block.
    Idle,
    /// 'T': in a transaction block.
    InTransaction,
    /// 'E': in a failed transaction block (statements refused until it ends).
    Failed,
}

impl TransactionStatus {
    pub fn code(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }
}

/// CommandComplete: the command tag, e.g. `INSERT 0 5`, `SELECT 3`, `CREATE TABLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandComplete<'a> {
    pub tag: &'a [u8],
}

impl CommandComplete<'_> {
    /// The row count of the tags that carry one: `SELECT n`, `INSERT oid n`, `UPDATE n`,
    /// `DELETE n`, `MERGE n`, `COPY n`, `FETCH n`, `MOVE n`.
    pub fn rows(&self) -> Option<u64> {
        command_rows(self.tag)
    }
}

/// The row count in a command tag (see [`CommandComplete::rows`]).
pub fn command_rows(tag: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(tag).ok()?;
    let words: Vec<&str> = text.split(' ').collect();
    let count = match words.as_slice() {
        ["INSERT", oid, n] if oid.bytes().all(|b| b.is_ascii_digit()) && !oid.is_empty() => n,
        [cmd, n]
            if [
                "SELECT", "UPDATE", "DELETE", "MERGE", "COPY", "FETCH", "MOVE",
            ]
            .contains(cmd) =>
        {
            n
        }
        _ => return None,
    };
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    count.parse().ok()
}

/// The fields of an ErrorResponse or NoticeResponse: `(code, value)` pairs, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields<'a> {
    /// The body as sent: each field is a code byte and a NUL-terminated string; a 0 ends it.
    pub body: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn iter(&self) -> impl Iterator<Item = (u8, &'a [u8])> + 'a {
        let mut r = Reader::new(self.body, "fields");
        std::iter::from_fn(move || match r.u8("code") {
            Ok(0) | Err(_) => None,
            Ok(code) => r.cstr("value").ok().map(|v| (code, v)),
        })
    }

    /// The first value of field `code`.
    pub fn get(&self, code: u8) -> Option<&'a [u8]> {
        self.iter().find(|(c, _)| *c == code).map(|(_, v)| v)
    }

    /// The non-localized severity ('V', PostgreSQL ≥ 9.6), else the localized one ('S').
    pub fn severity(&self) -> Option<&'a [u8]> {
        self.get(b'V').or_else(|| self.get(b'S'))
    }

    /// 'C': the SQLSTATE code.
    pub fn sqlstate(&self) -> Option<&'a [u8]> {
        self.get(b'C')
    }

    /// 'M': the primary message.
    pub fn message(&self) -> Option<&'a [u8]> {
        self.get(b'M')
    }

    /// 'D'
    pub fn detail(&self) -> Option<&'a [u8]> {
        self.get(b'D')
    }

    /// 'H'
    pub fn hint(&self) -> Option<&'a [u8]> {
        self.get(b'H')
    }
}

/// RowDescription: the field count and the (validated) field descriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowDescription<'a> {
    pub count: u16,
    /// The bytes after the count.
    pub body: &'a [u8],
}

/// One column of a RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDescription<'a> {
    pub name: &'a [u8],
    pub table_oid: u32,
    pub column: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub type_modifier: i32,
    /// 0 text, 1 binary (0 also when Describe of a statement cannot know yet).
    pub format: i16,
}

fn field_description<'a>(r: &mut Reader<'a>) -> Result<FieldDescription<'a>, WireError> {
    Ok(FieldDescription {
        name: r.cstr("field name")?,
        table_oid: r.u32("table oid")?,
        column: r.i16("column number")?,
        type_oid: r.u32("type oid")?,
        type_size: r.i16("type size")?,
        type_modifier: r.i32("type modifier")?,
        format: r.i16("format code")?,
    })
}

impl<'a> RowDescription<'a> {
    pub fn fields(&self) -> impl Iterator<Item = FieldDescription<'a>> + 'a {
        let mut r = Reader::new(self.body, "RowDescription");
        (0..self.count).map_while(move |_| field_description(&mut r).ok())
    }
}

/// DataRow: the column count and the (validated) values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRow<'a> {
    pub count: u16,
    /// The bytes after the count.
    pub body: &'a [u8],
}

impl<'a> DataRow<'a> {
    /// The values (`None` = NULL).
    pub fn values(&self) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
        let mut r = Reader::new(self.body, "DataRow");
        (0..self.count).map_while(move |_| r.value("value").ok())
    }
}

/// CopyInResponse / CopyOutResponse / CopyBothResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyResponse {
    /// The overall format (text or binary).
    pub format: Format,
    pub columns: Vec<Format>,
}

impl BackendDecoder {
    /// A decoder refusing messages whose length field exceeds `max_message`.
    pub fn new(max_message: u32) -> Self {
        BackendDecoder { max_message }
    }

    /// Decodes the first message of `buf`: `Ok(None)` when more bytes are needed, else the frame
    /// and the number of bytes it took (= `frame.raw.len()`, never more than `buf.len()`).
    pub fn decode<'a>(
        &self,
        buf: &'a [u8],
    ) -> Result<Option<(BackendFrame<'a>, usize)>, WireError> {
        let Some(&tag) = buf.first() else {
            return Ok(None);
        };
        let msg = tag_name(tag).ok_or(WireError::UnknownTag {
            side: Side::Backend,
            tag: Tag(tag),
        })?;
        let Some(len) = length_at(buf, 1) else {
            return Ok(None);
        };
        if len < 4 {
            return Err(WireError::LengthTooSmall { msg, len });
        }
        if len > self.max_message {
            return Err(WireError::MessageTooLarge {
                msg,
                len,
                max: self.max_message,
            });
        }
        let Some(raw) = buf.get(..1 + len as usize) else {
            return Ok(None);
        };
        let message = parse(tag, msg, raw.get(5..).unwrap_or_default())?;
        Ok(Some((BackendFrame { raw, message }, raw.len())))
    }
}

/// The message name of a backend tag, or `None` for a tag servers do not send.
pub fn tag_name(tag: u8) -> Option<&'static str> {
    Some(match tag {
        b'R' => "Authentication",
        b'K' => "BackendKeyData",
        b'S' => "ParameterStatus",
        b'Z' => "ReadyForQuery",
        b'C' => "CommandComplete",
        b'E' => "ErrorResponse",
        b'N' => "NoticeResponse",
        b'T' => "RowDescription",
        b'D' => "DataRow",
        b'G' => "CopyInResponse",
        b'H' => "CopyOutResponse",
        b'W' => "CopyBothResponse",
        b'd' => "CopyData",
        b'c' => "CopyDone",
        b'1' => "ParseComplete",
        b'2' => "BindComplete",
        b'3' => "CloseComplete",
        b'n' => "NoData",
        b's' => "PortalSuspended",
        b'I' => "EmptyQueryResponse",
        b't' => "ParameterDescription",
        b'V' => "FunctionCallResponse",
        b'A' => "NotificationResponse",
        b'v' => "NegotiateProtocolVersion",
        _ => return None,
    })
}

pub(crate) fn parse<'a>(
    tag: u8,
    msg: &'static str,
    body: &'a [u8],
) -> Result<BackendMessage<'a>, WireError> {
    use BackendMessage as B;
    let mut r = Reader::new(body, msg);
    let m = match tag {
        b'R' => B::Authentication(authentication(&mut r)?),
        b'K' => B::BackendKeyData {
            pid: r.u32("process id")?,
            secret: r.u32("secret key")?,
        },
        b'S' => B::ParameterStatus {
            name: r.cstr("name")?,
            value: r.cstr("value")?,
        },
        b'Z' => B::ReadyForQuery(match r.u8("transaction status")? {
            b'I' => TransactionStatus::Idle,
            b'T' => TransactionStatus::InTransaction,
            b'E' => TransactionStatus::Failed,
            other => return Err(r.invalid("transaction status (I, T or E)", other.into())),
        }),
        b'C' => B::CommandComplete(CommandComplete {
            tag: r.cstr("command tag")?,
        }),
        b'E' => B::ErrorResponse(fields(&mut r)?),
        b'N' => B::NoticeResponse(fields(&mut r)?),
        b'T' => {
            let count = r.count("field count")?;
            let start = r.rest();
            let mut check = Reader::new(start, msg);
            for _ in 0..count {
                field_description(&mut check)?;
            }
            check.finish()?;
            B::RowDescription(RowDescription {
                count: count as u16,
                body: start,
            })
        }
        b'D' => {
            let count = r.count("column count")?;
            let start = r.rest();
            let mut check = Reader::new(start, msg);
            for _ in 0..count {
                check.value("column value")?;
            }
            check.finish()?;
            B::DataRow(DataRow {
                count: count as u16,
                body: start,
            })
        }
        b'G' => B::CopyInResponse(copy_response(&mut r)?),
        b'H' => B::CopyOutResponse(copy_response(&mut r)?),
        b'W' => B::CopyBothResponse(copy_response(&mut r)?),
        b'd' => B::CopyData(r.rest()),
        b'c' => B::CopyDone,
        b'1' => B::ParseComplete,
        b'2' => B::BindComplete,
        b'3' => B::CloseComplete,
        b'n' => B::NoData,
        b's' => B::PortalSuspended,
        b'I' => B::EmptyQueryResponse,
        b't' => {
            let n = r.count("parameter count")?;
            r.need(n.saturating_mul(4), "parameter types")?;
            B::ParameterDescription(
                (0..n)
                    .map(|_| r.u32("parameter type"))
                    .collect::<Result<_, _>>()?,
            )
        }
        b'V' => B::FunctionCallResponse(r.value("result")?),
        b'A' => B::NotificationResponse {
            pid: r.u32("process id")?,
            channel: r.cstr("channel")?,
            payload: r.cstr("payload")?,
        },
        b'v' => {
            let newest_minor = r.u32("newest minor version")?;
            let n = r.i32("option count")?;
            let n = usize::try_from(n).map_err(|_| r.invalid("option count", n.into()))?;
            // Each option name takes at least its NUL.
            r.need(n, "options")?;
            B::NegotiateProtocolVersion {
                newest_minor,
                unrecognized: (0..n)
                    .map(|_| r.cstr("option name"))
                    .collect::<Result<_, _>>()?,
            }
        }
        other => {
            return Err(WireError::UnknownTag {
                side: Side::Backend,
                tag: Tag(other),
            });
        }
    };
    r.finish()?;
    Ok(m)
}

fn authentication<'a>(r: &mut Reader<'a>) -> Result<Authentication<'a>, WireError> {
    use Authentication as A;
    Ok(match r.i32("authentication code")? {
        0 => A::Ok,
        2 => A::KerberosV5,
        3 => A::CleartextPassword,
        5 => {
            let b = r.bytes(4, "salt")?;
            A::Md5Password {
                salt: [b[0], b[1], b[2], b[3]],
            }
        }
        7 => A::Gss,
        8 => A::GssContinue(r.rest()),
        9 => A::Sspi,
        10 => {
            let mut mechanisms = Vec::new();
            loop {
                let m = r.cstr("SASL mechanism")?;
                if m.is_empty() {
                    break;
                }
                mechanisms.push(m);
            }
            A::Sasl(mechanisms)
        }
        11 => A::SaslContinue(r.rest()),
        12 => A::SaslFinal(r.rest()),
        other => return Err(r.invalid("authentication code", other.into())),
    })
}

fn fields<'a>(r: &mut Reader<'a>) -> Result<Fields<'a>, WireError> {
    let body = r.rest();
    let mut check = Reader::new(body, r.msg);
    loop {
        if check.u8("field code")? == 0 {
            break;
        }
        check.cstr("field value")?;
    }
    check.finish()?;
    Ok(Fields { body })
}

fn copy_response(r: &mut Reader<'_>) -> Result<CopyResponse, WireError> {
    let overall = r.u8("overall format")?;
    let format = match overall {
        0 => Format::Text,
        1 => Format::Binary,
        other => return Err(r.invalid("overall format", other.into())),
    };
    Ok(CopyResponse {
        format,
        columns: r.formats("column format code")?,
    })
}
