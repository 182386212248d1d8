//! The PostgreSQL wire protocol (3.0) as a PostgreSQL gateway needs it, without I/O: framing
//! and typed parsing of what a client sends ([`frontend`]) and what a server sends
//! ([`backend`]), encoders for what the gateway itself sends ([`encode`]), the statement
//! recorder that turns both streams into audit records ([`recorder`]) and the redaction of
//! passwords in recorded SQL ([`redact`]).
//!
//! Hand-written rather than the `pgwire` crate (pre-1.0, frequent breaking releases): the
//! codec is small, every frame keeps its exact bytes ([`frontend::FrontendFrame::raw`],
//! [`backend::BackendFrame::raw`]) so a gateway forwards them untouched and can hash them, and
//! every parser refuses what it does not understand instead of guessing.
//!
//! # How a gateway uses it
//!
//! ```text
//! client bytes → FrontendDecoder::decode → (frame, consumed) → Recorder::frontend(&frame.message)
//!                                                             → forward frame.raw upstream
//! server bytes → BackendDecoder::decode  → (frame, consumed) → Recorder::backend(&frame.message)
//!                                                             → forward frame.raw to the client
//! Recorder::take_records() → audit events;  at the end: Recorder::finish(now)
//! ```
//!
//! The decoders borrow from the caller's buffer: `decode` returns `Ok(None)` until a whole
//! message is there, and never consumes more than it was given. Any `Err` means the peer broke
//! the protocol (or a limit): close the connection; a decoder is not meant to go on after one.
//!
//! # Limits
//!
//! * startup packets (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest): at most
//!   [`MAX_STARTUP`] bytes, refused as soon as the length is read;
//! * any other message: its declared length (which counts itself, not the tag byte) at most a
//!   configurable maximum, [`DEFAULT_MAX_MESSAGE`] (16 MiB) by default, refused as soon as the
//!   five header bytes are there (nothing is buffered for an oversized message);
//! * only protocol 3.0 is spoken (no NegotiateProtocolVersion downgrade, no 3.2 long cancel keys,
//!   no direct TLS without an SSLRequest);
//! * the recorder's memory is bounded by [`recorder::RecorderLimits`].
//!
//! # Redaction and its blind spots
//!
//! See [`redact`]: a string literal, dollar-quoted string or `$n` parameter right after the
//! keyword `PASSWORD` is replaced by `'***'` (or the bound value by `***`), as are
//! `SCRAM-SHA-256$…` verifiers and `md5…` hashes anywhere, and `password=` values in connection
//! strings inside literals. What it cannot see — passwords built by string concatenation,
//! `format()`, variables or `EXECUTE` of an escape string, a `standard_conforming_strings`
//! change inside the same query string, passwords in COPY data — is listed there.
//!
//! # What the recorder cannot know
//!
//! See [`recorder`]: statements prepared or cursors declared in SQL (`PREPARE`, `DECLARE`) and
//! then used through the protocol are recorded with a placeholder text and a [`recorder::Caveat`];
//! after SQL that may replace prepared statements (`PREPARE`, `DEALLOCATE`, `DISCARD`,
//! `DECLARE`, `CLOSE`), earlier texts carry [`recorder::Caveat::MayBeOutdated`].

pub mod backend;
pub mod encode;
pub mod frontend;
pub mod recorder;
pub mod redact;
pub mod scram;

#[cfg(test)]
mod tests;

pub use backend::{BackendDecoder, BackendFrame, BackendMessage};
pub use frontend::{FrontendDecoder, FrontendFrame, FrontendMessage};
pub use recorder::{
    Outcome, Protocol, Recorder, RecorderError, RecorderLimits, Sent, StatementRecord,
};

use std::fmt;

/// Largest startup packet accepted (StartupMessage with its parameters), as the length field
/// counts it.
pub const MAX_STARTUP: u32 = 10 * 1024;

/// Default largest message: the length field (which counts itself, not the tag byte).
pub const DEFAULT_MAX_MESSAGE: u32 = 16 * 1024 * 1024;

/// Protocol 3.0 as the StartupMessage carries it.
pub const PROTOCOL_3_0: u32 = 3 << 16;
/// The request codes of the untagged startup packets.
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;

/// A message's one-byte tag, shown as `'Q'` when printable, else `0x00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag(pub u8);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", self.0 as char)
        } else {
            write!(f, "{:#04x}", self.0)
        }
    }
}

/// Which side of a connection a message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Frontend,
    Backend,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Frontend => "frontend",
            Side::Backend => "backend",
        })
    }
}

/// Everything that can be wrong with bytes on the wire (decoding) or with a message the caller
/// asks to encode. `msg` names the message ("Bind", "startup packet", …), `field` the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{msg}: declared length {len} is less than 4 (the length counts its own 4 bytes)")]
    LengthTooSmall { msg: &'static str, len: u32 },
    #[error("startup packet: declared length {len} is over the limit of {MAX_STARTUP} bytes")]
    StartupTooLarge { len: u32 },
    #[error("startup packet: declared length {len} leaves no room for the 4-byte protocol code")]
    StartupTooShort { len: u32 },
    #[error("{msg}: declared length {len} is over the limit of {max} bytes")]
    MessageTooLarge {
        msg: &'static str,
        len: u32,
        max: u32,
    },
    #[error("startup packet: unsupported protocol version {major}.{minor} (only 3.0 is spoken)")]
    UnsupportedProtocol { major: u16, minor: u16 },
    #[error("{msg}: must be exactly {expected} bytes long, declares {len}")]
    WrongLength {
        msg: &'static str,
        expected: u32,
        len: u32,
    },
    #[error("the client opened with a TLS handshake (direct TLS); only SSLRequest is supported")]
    DirectTls,
    #[error("a CancelRequest connection carries nothing else, yet more bytes followed")]
    AfterCancel,
    #[error("unknown {side} message tag {tag}")]
    UnknownTag { side: Side, tag: Tag },
    #[error("{msg}: {field} is a string without its terminating NUL byte")]
    MissingNul {
        msg: &'static str,
        field: &'static str,
    },
    #[error("{msg}: {field} runs past the end of the message")]
    Truncated {
        msg: &'static str,
        field: &'static str,
    },
    #[error("{msg}: {extra} unexpected byte(s) after the last field")]
    TrailingBytes { msg: &'static str, extra: usize },
    #[error("{msg}: invalid {field}: {value}")]
    Invalid {
        msg: &'static str,
        field: &'static str,
        value: i64,
    },
    #[error("{msg}: {formats} format code(s) for {values} value(s) (must be 0, 1 or {values})")]
    FormatCount {
        msg: &'static str,
        formats: usize,
        values: usize,
    },
    #[error("SSL/GSS answer byte {0:#04x} is neither 'S'/'G' nor 'N'")]
    BadSslAnswer(u8),
    #[error("{msg}: {field} contains a NUL byte, which a protocol string cannot carry")]
    NulInString {
        msg: &'static str,
        field: &'static str,
    },
    #[error("{msg}: {field} has {len} entries or bytes, more than the protocol can carry")]
    TooLong {
        msg: &'static str,
        field: &'static str,
        len: usize,
    },
}

/// A value's wire format (format codes 0 and 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Binary,
}

impl Format {
    fn from_code(msg: &'static str, field: &'static str, code: i16) -> Result<Format, WireError> {
        match code {
            0 => Ok(Format::Text),
            1 => Ok(Format::Binary),
            _ => Err(WireError::Invalid {
                msg,
                field,
                value: code.into(),
            }),
        }
    }

    fn code(self) -> i16 {
        match self {
            Format::Text => 0,
            Format::Binary => 1,
        }
    }

    /// The format of value `i` under a list of format codes: none = all text, one = all that
    /// one, else one per value.
    pub fn of(formats: &[Format], i: usize) -> Format {
        match formats {
            [] => Format::Text,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(Format::Text),
        }
    }
}

/// A cursor over a message body; every read names the message and field it reads for errors.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    msg: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], msg: &'static str) -> Self {
        Reader { buf, pos: 0, msg }
    }

    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let out = end
            .and_then(|e| self.buf.get(self.pos..e))
            .ok_or(WireError::Truncated {
                msg: self.msg,
                field,
            })?;
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let b = self.bytes(N, field)?;
        let mut out = [0; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn i16(&mut self, field: &'static str) -> Result<i16, WireError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, WireError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A non-negative Int16 count.
    pub(crate) fn count(&mut self, field: &'static str) -> Result<usize, WireError> {
        let n = self.i16(field)?;
        usize::try_from(n).map_err(|_| self.invalid(field, n.into()))
    }

    /// A NUL-terminated string, without its NUL.
    pub(crate) fn cstr(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(WireError::MissingNul {
                msg: self.msg,
                field,
            })?;
        self.pos += nul + 1;
        Ok(rest.get(..nul).unwrap_or_default())
    }

    /// A value with an Int32 length prefix, -1 meaning NULL.
    pub(crate) fn value(&mut self, field: &'static str) -> Result<Option<&'a [u8]>, WireError> {
        match self.i32(field)? {
            -1 => Ok(None),
            n => {
                let n = usize::try_from(n).map_err(|_| self.invalid(field, n.into()))?;
                self.bytes(n, field).map(Some)
            }
        }
    }

    pub(crate) fn formats(&mut self, field: &'static str) -> Result<Vec<Format>, WireError> {
        let n = self.count(field)?;
        // Each code is 2 bytes: refuse a count the body cannot hold before allocating.
        self.need(n.saturating_mul(2), field)?;
        (0..n)
            .map(|_| Format::from_code(self.msg, field, self.i16(field)?))
            .collect()
    }

    /// Fails unless `n` more bytes are there (to refuse absurd counts before allocating).
    pub(crate) fn need(&self, n: usize, field: &'static str) -> Result<(), WireError> {
        if self.remaining() < n {
            return Err(WireError::Truncated {
                msg: self.msg,
                field,
            });
        }
        Ok(())
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        out
    }

    pub(crate) fn invalid(&self, field: &'static str, value: i64) -> WireError {
        WireError::Invalid {
            msg: self.msg,
            field,
            value,
        }
    }

    /// Fails if bytes remain after the last field.
    pub(crate) fn finish(self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(WireError::TrailingBytes {
                msg: self.msg,
                extra,
            }),
        }
    }
}

/// Reads the 4-byte big-endian length at `at`, if there.
pub(crate) fn length_at(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The answer a server gives to an SSLRequest or a GSSENCRequest: one untagged byte, `'S'`
/// (SSL) or `'G'` (GSS) to go on encrypted, `'N'` to go on in the clear. `Ok(true)` means
/// encrypted.
pub fn parse_encryption_answer(byte: u8) -> Result<bool, WireError> {
    match byte {
        b'S' | b'G' => Ok(true),
        b'N' => Ok(false),
        other => Err(WireError::BadSslAnswer(other)),
    }
}
