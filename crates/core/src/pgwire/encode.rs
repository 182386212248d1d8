//! Encoders: every message of [`FrontendMessage`] and [`BackendMessage`] ([`encode_frontend`],
//! [`encode_backend`]), bodies built from parts ([`data_row`], [`row_description`],
//! [`fields_body`]), and shorthands for what a gateway sends itself (in `gateway.rs`, re-exported
//! here) — upstream its own StartupMessage, password or SASL responses, queries, Terminate and
//! CancelRequest; to the client the authentication exchange, ParameterStatus, BackendKeyData,
//! ReadyForQuery and ErrorResponse.
//!
//! Every encoder appends to `out`, and on error leaves `out` as it was. Errors: a string that
//! holds a NUL ([`WireError::NulInString`]), a count or length the protocol cannot carry
//! ([`WireError::TooLong`]); and every encoded message is decoded again before it is kept, so
//! nothing leaves an encoder that the decoders would refuse.

use super::backend::{self, BackendMessage, FieldDescription};
use super::frontend::{self, FrontendMessage, Target};
use super::{
    CANCEL_REQUEST_CODE, Format, GSSENC_REQUEST_CODE, MAX_STARTUP, PROTOCOL_3_0, SSL_REQUEST_CODE,
    WireError,
};

struct Writer<'o> {
    out: &'o mut Vec<u8>,
    msg: &'static str,
}

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    fn i16(&mut self, v: i16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.out.extend_from_slice(v);
    }
    fn cstr(&mut self, field: &'static str, v: &[u8]) -> Result<(), WireError> {
        if v.contains(&0) {
            return Err(WireError::NulInString {
                msg: self.msg,
                field,
            });
        }
        self.out.extend_from_slice(v);
        self.out.push(0);
        Ok(())
    }
    fn count(&mut self, field: &'static str, n: usize) -> Result<(), WireError> {
        let n = i16::try_from(n).map_err(|_| WireError::TooLong {
            msg: self.msg,
            field,
            len: n,
        })?;
        self.i16(n);
        Ok(())
    }
    fn value(&mut self, field: &'static str, v: Option<&[u8]>) -> Result<(), WireError> {
        match v {
            None => self.i32(-1),
            Some(v) => {
                let n = i32::try_from(v.len()).map_err(|_| WireError::TooLong {
                    msg: self.msg,
                    field,
                    len: v.len(),
                })?;
                self.i32(n);
                self.bytes(v);
            }
        }
        Ok(())
    }
    fn values(&mut self, field: &'static str, vs: &[Option<&[u8]>]) -> Result<(), WireError> {
        self.count(field, vs.len())?;
        vs.iter().try_for_each(|v| self.value(field, *v))
    }
    fn formats(&mut self, field: &'static str, fs: &[Format]) -> Result<(), WireError> {
        self.count(field, fs.len())?;
        fs.iter().for_each(|f| self.i16(f.code()));
        Ok(())
    }
}

/// Appends one message: the tag (if any), the length, then what `body` writes; checks it
/// decodes with `check`; on any error truncates `out` back.
fn message(
    out: &mut Vec<u8>,
    tag: Option<u8>,
    msg: &'static str,
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), WireError>,
    check: impl FnOnce(&[u8]) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let start = out.len();
    let result = (|| {
        if let Some(t) = tag {
            out.push(t);
        }
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        body(&mut Writer { out, msg })?;
        let len = out.len() - len_at;
        let len32 = i32::try_from(len)
            .map(|l| l as u32)
            .map_err(|_| WireError::TooLong {
                msg,
                field: "message",
                len,
            })?;
        if let Some(slot) = out.get_mut(len_at..len_at + 4) {
            slot.copy_from_slice(&len32.to_be_bytes());
        }
        check(out.get(start..).unwrap_or_default())
    })();
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn check_frontend(tag: u8, msg: &'static str) -> impl FnOnce(&[u8]) -> Result<(), WireError> {
    move |bytes| frontend::parse_tagged(tag, msg, bytes.get(5..).unwrap_or_default()).map(|_| ())
}

fn check_backend(tag: u8, msg: &'static str) -> impl FnOnce(&[u8]) -> Result<(), WireError> {
    move |bytes| backend::parse(tag, msg, bytes.get(5..).unwrap_or_default()).map(|_| ())
}

fn check_startup(bytes: &[u8]) -> Result<(), WireError> {
    let len = bytes.len();
    if len > MAX_STARTUP as usize {
        return Err(WireError::TooLong {
            msg: "startup packet",
            field: "parameters",
            len,
        });
    }
    frontend::decode_startup(bytes).map(|_| ())
}

/// Appends any client message.
pub fn encode_frontend(m: &FrontendMessage<'_>, out: &mut Vec<u8>) -> Result<(), WireError> {
    use FrontendMessage as F;
    let startup_code = |out: &mut Vec<u8>, msg, code: u32, tail: &[u32]| {
        message(
            out,
            None,
            msg,
            |w| {
                w.u32(code);
                tail.iter().for_each(|v| w.u32(*v));
                Ok(())
            },
            check_startup,
        )
    };
    let tagged =
        |out: &mut Vec<u8>, tag: u8, body: &dyn Fn(&mut Writer<'_>) -> Result<(), WireError>| {
            let msg = frontend::tag_name(tag).unwrap_or("message");
            message(out, Some(tag), msg, body, check_frontend(tag, msg))
        };
    match m {
        F::SslRequest => startup_code(out, "SSLRequest", SSL_REQUEST_CODE, &[]),
        F::GssEncRequest => startup_code(out, "GSSENCRequest", GSSENC_REQUEST_CODE, &[]),
        F::CancelRequest(c) => startup_code(
            out,
            "CancelRequest",
            CANCEL_REQUEST_CODE,
            &[c.pid, c.secret],
        ),
        F::Startup(s) => message(
            out,
            None,
            "StartupMessage",
            |w| {
                w.u32(PROTOCOL_3_0);
                for (k, v) in &s.params {
                    if k.is_empty() {
                        return Err(w_invalid_empty());
                    }
                    w.cstr("parameter name", k)?;
                    w.cstr("parameter value", v)?;
                }
                w.u8(0);
                Ok(())
            },
            check_startup,
        ),
        F::Query(q) => tagged(out, b'Q', &|w| w.cstr("query", q)),
        F::Parse(p) => tagged(out, b'P', &|w| {
            w.cstr("statement name", p.name)?;
            w.cstr("query", p.query)?;
            w.count("parameter types", p.param_types.len())?;
            p.param_types.iter().for_each(|t| w.u32(*t));
            Ok(())
        }),
        F::Bind(b) => tagged(out, b'B', &|w| {
            w.cstr("portal name", b.portal)?;
            w.cstr("statement name", b.statement)?;
            w.formats("parameter formats", &b.param_formats)?;
            w.values("parameters", &b.params)?;
            w.formats("result formats", &b.result_formats)
        }),
        F::Execute(e) => tagged(out, b'E', &|w| {
            w.cstr("portal name", e.portal)?;
            w.i32(e.max_rows);
            Ok(())
        }),
        F::Describe(t) => tagged(out, b'D', &|w| target(w, t)),
        F::Close(t) => tagged(out, b'C', &|w| target(w, t)),
        F::Sync => tagged(out, b'S', &|_| Ok(())),
        F::Flush => tagged(out, b'H', &|_| Ok(())),
        F::Terminate => tagged(out, b'X', &|_| Ok(())),
        F::CopyData(d) => tagged(out, b'd', &|w| {
            w.bytes(d);
            Ok(())
        }),
        F::CopyDone => tagged(out, b'c', &|_| Ok(())),
        F::CopyFail(e) => tagged(out, b'f', &|w| w.cstr("error message", e)),
        F::AuthResponse(a) => tagged(out, b'p', &|w| {
            w.bytes(a.body);
            Ok(())
        }),
        F::FunctionCall(f) => tagged(out, b'F', &|w| {
            w.u32(f.function);
            w.formats("argument formats", &f.arg_formats)?;
            w.values("arguments", &f.args)?;
            w.i16(f.result_format.code());
            Ok(())
        }),
    }
}

fn w_invalid_empty() -> WireError {
    WireError::Invalid {
        msg: "StartupMessage",
        field: "parameter name (empty)",
        value: 0,
    }
}

fn target(w: &mut Writer<'_>, t: &Target<'_>) -> Result<(), WireError> {
    w.u8(t.kind.code());
    w.cstr("name", t.name)
}

/// Appends any server message.
pub fn encode_backend(m: &BackendMessage<'_>, out: &mut Vec<u8>) -> Result<(), WireError> {
    use BackendMessage as B;
    let tag = backend_tag(m);
    let msg = backend::tag_name(tag).unwrap_or("message");
    message(
        out,
        Some(tag),
        msg,
        |w| {
            match m {
                B::Authentication(a) => {
                    w.i32(a.code());
                    use backend::Authentication as A;
                    match a {
                        A::Md5Password { salt } => w.bytes(salt),
                        A::GssContinue(d) | A::SaslContinue(d) | A::SaslFinal(d) => w.bytes(d),
                        A::Sasl(mechanisms) => {
                            for m in mechanisms {
                                if m.is_empty() {
                                    return Err(WireError::Invalid {
                                        msg: "Authentication",
                                        field: "SASL mechanism (empty)",
                                        value: 0,
                                    });
                                }
                                w.cstr("SASL mechanism", m)?;
                            }
                            w.u8(0);
                        }
                        A::Ok | A::KerberosV5 | A::CleartextPassword | A::Gss | A::Sspi => {}
                    }
                }
                B::BackendKeyData { pid, secret } => {
                    w.u32(*pid);
                    w.u32(*secret);
                }
                B::ParameterStatus { name, value } => {
                    w.cstr("name", name)?;
                    w.cstr("value", value)?;
                }
                B::ReadyForQuery(s) => w.u8(s.code()),
                B::CommandComplete(c) => w.cstr("command tag", c.tag)?,
                B::ErrorResponse(f) | B::NoticeResponse(f) => w.bytes(f.body),
                B::RowDescription(r) => {
                    w.i16(r.count as i16);
                    w.bytes(r.body);
                }
                B::DataRow(r) => {
                    w.i16(r.count as i16);
                    w.bytes(r.body);
                }
                B::CopyInResponse(c) | B::CopyOutResponse(c) | B::CopyBothResponse(c) => {
                    w.u8(c.format.code() as u8);
                    w.formats("column formats", &c.columns)?;
                }
                B::CopyData(d) => w.bytes(d),
                B::CopyDone
                | B::ParseComplete
                | B::BindComplete
                | B::CloseComplete
                | B::NoData
                | B::PortalSuspended
                | B::EmptyQueryResponse => {}
                B::ParameterDescription(types) => {
                    w.count("parameter types", types.len())?;
                    types.iter().for_each(|t| w.u32(*t));
                }
                B::FunctionCallResponse(v) => w.value("result", *v)?,
                B::NotificationResponse {
                    pid,
                    channel,
                    payload,
                } => {
                    w.u32(*pid);
                    w.cstr("channel", channel)?;
                    w.cstr("payload", payload)?;
                }
                B::NegotiateProtocolVersion {
                    newest_minor,
                    unrecognized,
                } => {
                    w.u32(*newest_minor);
                    let n = i32::try_from(unrecognized.len()).map_err(|_| WireError::TooLong {
                        msg: "NegotiateProtocolVersion",
                        field: "options",
                        len: unrecognized.len(),
                    })?;
                    w.i32(n);
                    for o in unrecognized {
                        w.cstr("option name", o)?;
                    }
                }
            }
            Ok(())
        },
        check_backend(tag, msg),
    )
}

fn backend_tag(m: &BackendMessage<'_>) -> u8 {
    use BackendMessage as B;
    match m {
        B::Authentication(_) => b'R',
        B::BackendKeyData { .. } => b'K',
        B::ParameterStatus { .. } => b'S',
        B::ReadyForQuery(_) => b'Z',
        B::CommandComplete(_) => b'C',
        B::ErrorResponse(_) => b'E',
        B::NoticeResponse(_) => b'N',
        B::RowDescription(_) => b'T',
        B::DataRow(_) => b'D',
        B::CopyInResponse(_) => b'G',
        B::CopyOutResponse(_) => b'H',
        B::CopyBothResponse(_) => b'W',
        B::CopyData(_) => b'd',
        B::CopyDone => b'c',
        B::ParseComplete => b'1',
        B::BindComplete => b'2',
        B::CloseComplete => b'3',
        B::NoData => b'n',
        B::PortalSuspended => b's',
        B::EmptyQueryResponse => b'I',
        B::ParameterDescription(_) => b't',
        B::FunctionCallResponse(_) => b'V',
        B::NotificationResponse { .. } => b'A',
        B::NegotiateProtocolVersion { .. } => b'v',
    }
}

// ---- Bodies built from parts (rows, row descriptions, error fields) ----

/// The body of an ErrorResponse/NoticeResponse from `(code, value)` pairs (code ≠ 0).
pub fn fields_body(fields: &[(u8, &[u8])]) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    let mut w = Writer {
        out: &mut out,
        msg: "ErrorResponse",
    };
    for (code, value) in fields {
        if *code == 0 {
            return Err(WireError::Invalid {
                msg: "ErrorResponse",
                field: "field code",
                value: 0,
            });
        }
        w.u8(*code);
        w.cstr("field value", value)?;
    }
    w.u8(0);
    Ok(out)
}

/// Appends a DataRow holding `values` (`None` = NULL).
pub fn data_row(out: &mut Vec<u8>, values: &[Option<&[u8]>]) -> Result<(), WireError> {
    message(
        out,
        Some(b'D'),
        "DataRow",
        |w| w.values("values", values),
        check_backend(b'D', "DataRow"),
    )
}

/// Appends a RowDescription of `fields`.
pub fn row_description(
    out: &mut Vec<u8>,
    fields: &[FieldDescription<'_>],
) -> Result<(), WireError> {
    message(
        out,
        Some(b'T'),
        "RowDescription",
        |w| {
            w.count("fields", fields.len())?;
            for f in fields {
                w.cstr("field name", f.name)?;
                w.u32(f.table_oid);
                w.i16(f.column);
                w.u32(f.type_oid);
                w.i16(f.type_size);
                w.i32(f.type_modifier);
                w.i16(f.format);
            }
            Ok(())
        },
        check_backend(b'T', "RowDescription"),
    )
}

mod gateway;
pub use gateway::*;
