//! Where the audit trail is copied as it is written: `streams:` (every event, to a SIEM) and
//! `witness:` (every signed checkpoint, off the host). Validated by `validate/streams.rs`; the
//! server delivers them (`server/src/stream/`).

use serde_json::{Value, json};
use std::time::Duration;

/// Syslog facility `log audit` (RFC 5424 §6.2.1, code 13): the default.
pub const FACILITY_AUDIT: u8 = 13;

/// Facility names accepted by `facility:` and their RFC 5424 codes.
pub const FACILITIES: &[(&str, u8)] = &[
    ("auth", 4),
    ("authpriv", 10),
    ("audit", FACILITY_AUDIT),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// Where a new stream starts: the whole log, or the events written after it was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    Beginning,
    Now,
}

/// RFC 5424 messages over TCP, octet-counted (RFC 5425 / RFC 6587 §3.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    pub host: String,
    pub port: u16,
    /// TLS (RFC 5425) unless `tls: none` (plain TCP, only to a relay on this host).
    pub tls: bool,
    /// PEM file of the CA(s) to trust; none: the Mozilla roots (webpki-roots).
    pub ca_file: Option<String>,
    /// Name the certificate must carry; default: `host`.
    pub server_name: Option<String>,
    /// HOSTNAME field of each message; default: this machine's host name.
    pub hostname: Option<String>,
    pub facility: u8,
    /// Connect, handshake and each write must finish within this.
    pub timeout: Duration,
    /// Longest message in bytes (the rest of a longer one is cut and it says so).
    pub max_message: usize,
}

/// JSON lines appended to a file, rotated by size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonlTarget {
    pub path: String,
    /// Rotate before a line would take the file past this many bytes.
    pub max_size: u64,
    /// Rotated files kept (`path.1` newest … `path.N`).
    pub keep: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamTarget {
    Syslog(SyslogTarget),
    Jsonl(JsonlTarget),
}

/// A destination that receives every audit event, in order, at least once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub name: String,
    pub start: StreamStart,
    pub target: StreamTarget,
}

impl Stream {
    pub fn kind(&self) -> &'static str {
        match self.target {
            StreamTarget::Syslog(_) => "syslog",
            StreamTarget::Jsonl(_) => "jsonl",
        }
    }

    /// A JSON view for the API (no secrets: there are none in a stream).
    pub fn to_json(&self) -> Value {
        let start = match self.start {
            StreamStart::Beginning => "beginning",
            StreamStart::Now => "now",
        };
        match &self.target {
            StreamTarget::Syslog(s) => json!({
                "name": self.name, "kind": "syslog", "start": start, "host": s.host, "port": s.port,
                "tls": if s.tls { "required" } else { "none" }, "ca_file": s.ca_file,
                "server_name": s.server_name, "hostname": s.hostname, "facility": s.facility,
                "timeout_secs": s.timeout.as_secs(), "max_message": s.max_message,
            }),
            StreamTarget::Jsonl(j) => json!({
                "name": self.name, "kind": "jsonl", "start": start, "path": j.path,
                "max_size": j.max_size, "keep": j.keep,
            }),
        }
    }
}

/// Where each signed checkpoint is copied, as its note: a directory (another volume, a mount
/// of another host) and/or a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Witness {
    pub dir: Option<String>,
    pub url: Option<String>,
    /// HMAC key for the webhook's `X-Breakglass-Signature` (optional: the note is signed).
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    pub timeout: Option<Duration>,
}

impl Witness {
    pub fn to_json(&self) -> Value {
        json!({"dir": self.dir, "url": self.url, "secret_env": self.secret_env,
               "secret_file": self.secret_file, "timeout_secs": self.timeout.map(|t| t.as_secs())})
    }
}
