//! Shorthands for what a gateway sends itself: upstream its StartupMessage, password and SASL
//! responses, queries, Terminate, Sync, SSLRequest and CancelRequest; to the client the
//! encryption answer, the authentication exchange, ParameterStatus, BackendKeyData,
//! ReadyForQuery and ErrorResponse.

use super::super::backend::{self, BackendMessage, TransactionStatus};
use super::super::frontend::{self, FrontendMessage, Startup};
use super::super::{CANCEL_REQUEST_CODE, SSL_REQUEST_CODE, WireError};
use super::{encode_backend, encode_frontend, fields_body, message};

// ---- What the gateway sends upstream ----

/// A StartupMessage (protocol 3.0) with `user`, then `database` and `application_name` when
/// given, then `other` parameters in order.
pub fn startup_message(
    out: &mut Vec<u8>,
    user: &str,
    database: Option<&str>,
    application_name: Option<&str>,
    other: &[(&str, &str)],
) -> Result<(), WireError> {
    let mut params = vec![(b"user".as_slice(), user.as_bytes())];
    if let Some(d) = database {
        params.push((b"database", d.as_bytes()));
    }
    if let Some(a) = application_name {
        params.push((b"application_name", a.as_bytes()));
    }
    params.extend(other.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
    encode_frontend(&FrontendMessage::Startup(Startup { params }), out)
}

/// PasswordMessage: a cleartext password, or `md5` + hex for MD5 authentication.
pub fn password_message(out: &mut Vec<u8>, password: &[u8]) -> Result<(), WireError> {
    message(
        out,
        Some(b'p'),
        "PasswordMessage",
        |w| w.cstr("password", password),
        |_| Ok(()),
    )
}

/// SASLInitialResponse: the mechanism chosen and the client-first-message (`None` = none).
pub fn sasl_initial_response(
    out: &mut Vec<u8>,
    mechanism: &str,
    data: Option<&[u8]>,
) -> Result<(), WireError> {
    message(
        out,
        Some(b'p'),
        "SASLInitialResponse",
        |w| {
            w.cstr("mechanism", mechanism.as_bytes())?;
            w.value("data", data)
        },
        |_| Ok(()),
    )
}

/// SASLResponse: the client-final-message.
pub fn sasl_response(out: &mut Vec<u8>, data: &[u8]) -> Result<(), WireError> {
    encode_frontend(
        &FrontendMessage::AuthResponse(frontend::AuthResponse { body: data }),
        out,
    )
}

/// Query: a simple-protocol query string.
pub fn query(out: &mut Vec<u8>, sql: &str) -> Result<(), WireError> {
    encode_frontend(&FrontendMessage::Query(sql.as_bytes()), out)
}

/// Terminate.
pub fn terminate(out: &mut Vec<u8>) {
    out.extend_from_slice(&[b'X', 0, 0, 0, 4]);
}

/// Sync.
pub fn sync(out: &mut Vec<u8>) {
    out.extend_from_slice(&[b'S', 0, 0, 0, 4]);
}

/// SSLRequest.
pub fn ssl_request(out: &mut Vec<u8>) {
    out.extend_from_slice(&8u32.to_be_bytes());
    out.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
}

/// CancelRequest (sent on a connection of its own).
pub fn cancel_request(out: &mut Vec<u8>, pid: u32, secret: u32) {
    out.extend_from_slice(&16u32.to_be_bytes());
    out.extend_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(&secret.to_be_bytes());
}

// ---- What the gateway sends to the client ----

/// The answer to an SSLRequest/GSSENCRequest: `'S'` (go on with TLS) or `'N'` (refused).
pub fn encryption_answer(out: &mut Vec<u8>, accept: bool) {
    out.push(if accept { b'S' } else { b'N' });
}

/// AuthenticationOk.
pub fn authentication_ok(out: &mut Vec<u8>) {
    out.extend_from_slice(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]);
}

/// AuthenticationCleartextPassword.
pub fn authentication_cleartext_password(out: &mut Vec<u8>) {
    out.extend_from_slice(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]);
}

/// AuthenticationSASL offering `mechanisms` (e.g. `["SCRAM-SHA-256"]`).
pub fn authentication_sasl(out: &mut Vec<u8>, mechanisms: &[&str]) -> Result<(), WireError> {
    let list = mechanisms.iter().map(|m| m.as_bytes()).collect();
    encode_backend(
        &BackendMessage::Authentication(backend::Authentication::Sasl(list)),
        out,
    )
}

/// AuthenticationSASLContinue with the server-first-message.
pub fn authentication_sasl_continue(out: &mut Vec<u8>, data: &[u8]) -> Result<(), WireError> {
    encode_backend(
        &BackendMessage::Authentication(backend::Authentication::SaslContinue(data)),
        out,
    )
}

/// AuthenticationSASLFinal with the server-final-message.
pub fn authentication_sasl_final(out: &mut Vec<u8>, data: &[u8]) -> Result<(), WireError> {
    encode_backend(
        &BackendMessage::Authentication(backend::Authentication::SaslFinal(data)),
        out,
    )
}

/// ParameterStatus.
pub fn parameter_status(out: &mut Vec<u8>, name: &str, value: &str) -> Result<(), WireError> {
    encode_backend(
        &BackendMessage::ParameterStatus {
            name: name.as_bytes(),
            value: value.as_bytes(),
        },
        out,
    )
}

/// BackendKeyData (the key the client will cancel with).
pub fn backend_key_data(out: &mut Vec<u8>, pid: u32, secret: u32) {
    out.push(b'K');
    out.extend_from_slice(&12u32.to_be_bytes());
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(&secret.to_be_bytes());
}

/// ReadyForQuery.
pub fn ready_for_query(out: &mut Vec<u8>, status: TransactionStatus) {
    out.extend_from_slice(&[b'Z', 0, 0, 0, 5, status.code()]);
}

/// The severity of an ErrorResponse the gateway sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement fails; the session goes on.
    Error,
    /// The session ends.
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// What an ErrorResponse says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorSpec {
    pub severity: Severity,
    /// Five characters, e.g. `57P01`, `28P01`, `08P01`.
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl ErrorSpec {
    /// FATAL 57P01 `grant <id> expired: the connection is closed`, sent as a grant's time is up.
    pub fn grant_expired(grant: &str) -> ErrorSpec {
        ErrorSpec {
            severity: Severity::Fatal,
            sqlstate: "57P01".into(),
            message: format!("grant {grant} expired: the connection is closed"),
            detail: None,
            hint: None,
        }
    }
}

/// ErrorResponse with S and V (severity), C (SQLSTATE), M (message) and D/H when given.
pub fn error_response(out: &mut Vec<u8>, e: &ErrorSpec) -> Result<(), WireError> {
    if e.sqlstate.len() != 5 || !e.sqlstate.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(WireError::Invalid {
            msg: "ErrorResponse",
            field: "SQLSTATE (5 letters or digits)",
            value: e.sqlstate.len() as i64,
        });
    }
    let sev = e.severity.as_str().as_bytes();
    let mut fields: Vec<(u8, &[u8])> = vec![
        (b'S', sev),
        (b'V', sev),
        (b'C', e.sqlstate.as_bytes()),
        (b'M', e.message.as_bytes()),
    ];
    if let Some(d) = &e.detail {
        fields.push((b'D', d.as_bytes()));
    }
    if let Some(h) = &e.hint {
        fields.push((b'H', h.as_bytes()));
    }
    let body = fields_body(&fields)?;
    encode_backend(
        &BackendMessage::ErrorResponse(backend::Fields { body: &body }),
        out,
    )
}
