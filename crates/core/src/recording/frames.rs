//! The record format inside a chunk: `kind (1 byte) | ms since the session started (u32 BE) |
//! length (u32 BE) | data`. The decoder is strict (unknown kinds, truncated or oversized
//! records, text that must be UTF-8 and is not, are errors) because a chunk comes from a host
//! the requester may control.

use super::MAX_CHUNK;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Terminal output (PTY) or the command's stdout.
    Output,
    /// The command's stderr (no PTY).
    Stderr,
    /// Keystrokes (PTY) or stdin (no PTY).
    Input,
    /// Keystrokes typed while the terminal had echo off: data is the count, never the bytes.
    HiddenInput,
    /// A window size, `COLSxROWS`.
    Resize,
    /// A note from the recorder (paused, resumed, cap reached, …).
    Marker,
    /// The shell's exit status (decimal).
    Exit,
    /// A database client message written ahead, before the gateway forwards it (JSON,
    /// `pgwire::Sent`).
    SqlSent,
    /// A statement as run, with its outcome (JSON, `pgwire::StatementRecord`).
    SqlStatement,
}

impl Kind {
    pub fn code(self) -> u8 {
        match self {
            Kind::Output => b'o',
            Kind::Stderr => b'e',
            Kind::Input => b'i',
            Kind::HiddenInput => b'h',
            Kind::Resize => b'r',
            Kind::Marker => b'm',
            Kind::Exit => b'x',
            Kind::SqlSent => b'q',
            Kind::SqlStatement => b's',
        }
    }

    pub fn from_code(c: u8) -> Option<Kind> {
        Some(match c {
            b'o' => Kind::Output,
            b'e' => Kind::Stderr,
            b'i' => Kind::Input,
            b'h' => Kind::HiddenInput,
            b'r' => Kind::Resize,
            b'm' => Kind::Marker,
            b'x' => Kind::Exit,
            b'q' => Kind::SqlSent,
            b's' => Kind::SqlStatement,
            _ => return None,
        })
    }

    /// Whether the data is text the recorder wrote (must be UTF-8), not terminal bytes.
    fn is_text(self) -> bool {
        matches!(
            self,
            Kind::HiddenInput
                | Kind::Resize
                | Kind::Marker
                | Kind::Exit
                | Kind::SqlSent
                | Kind::SqlStatement
        )
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    /// Milliseconds since the session started.
    pub ms: u32,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the chunk is larger than {MAX_CHUNK} bytes")]
    TooLarge,
    #[error("record at byte {0} is truncated")]
    Truncated(usize),
    #[error("record at byte {at} has the unknown kind {code:#04x}")]
    UnknownKind { at: usize, code: u8 },
    #[error("record at byte {0} should hold UTF-8 text and does not")]
    NotText(usize),
    #[error("record at byte {0} is not valid for its kind")]
    Invalid(usize),
    #[error("the compressed chunk is damaged or expands past {MAX_CHUNK} bytes")]
    Compression,
}

/// The first byte of a compressed chunk: `Z`, then the uncompressed length (u32,
/// little-endian) and an LZ4 block. No record kind uses it.
pub const COMPRESSED: u8 = b'Z';

/// A chunk as the recorder posts it: compressed when that makes it smaller.
pub fn compress_chunk(raw: &[u8]) -> Vec<u8> {
    let packed = lz4_flex::block::compress_prepend_size(raw);
    if packed.len() + 1 >= raw.len() {
        return raw.to_vec();
    }
    let mut out = Vec::with_capacity(packed.len() + 1);
    out.push(COMPRESSED);
    out.extend_from_slice(&packed);
    out
}

/// The bytes of records a chunk holds: after decompressing a compressed one (refused when it
/// claims more than [`MAX_CHUNK`] bytes, before anything is allocated).
pub fn expand(chunk: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, RecordError> {
    let Some(packed) = chunk.strip_prefix(&[COMPRESSED]) else {
        return Ok(std::borrow::Cow::Borrowed(chunk));
    };
    if expanded_len(chunk) > MAX_CHUNK {
        return Err(RecordError::Compression);
    }
    lz4_flex::block::decompress_size_prepended(packed)
        .map(std::borrow::Cow::Owned)
        .map_err(|_| RecordError::Compression)
}

/// How many bytes of records a chunk holds (its length, or a compressed chunk's claim).
pub fn expanded_len(chunk: &[u8]) -> usize {
    match chunk {
        [COMPRESSED, a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]) as usize,
        _ => chunk.len(),
    }
}

const HEADER: usize = 9;

/// Appends one record to `out`.
pub fn encode_record(out: &mut Vec<u8>, kind: Kind, ms: u32, data: &[u8]) {
    out.push(kind.code());
    out.extend_from_slice(&ms.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

/// Walks the records of a chunk, validating each, and hands each (kind, ms, data) to `f`.
fn walk<'a>(chunk: &'a [u8], mut f: impl FnMut(Kind, u32, &'a [u8])) -> Result<(), RecordError> {
    if chunk.len() > MAX_CHUNK {
        return Err(RecordError::TooLarge);
    }
    let mut at = 0;
    while at < chunk.len() {
        let head = chunk
            .get(at..at + HEADER)
            .ok_or(RecordError::Truncated(at))?;
        let kind =
            Kind::from_code(head[0]).ok_or(RecordError::UnknownKind { at, code: head[0] })?;
        let ms = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let len = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) as usize;
        let data = chunk
            .get(at + HEADER..at + HEADER + len)
            .ok_or(RecordError::Truncated(at))?;
        if kind.is_text() {
            let text = std::str::from_utf8(data).map_err(|_| RecordError::NotText(at))?;
            let valid = match kind {
                Kind::HiddenInput | Kind::Exit => {
                    !text.is_empty()
                        && text.len() <= 12
                        && text.bytes().all(|b| b.is_ascii_digit() || b == b'-')
                }
                Kind::Resize => parse_size(text).is_some(),
                Kind::SqlSent | Kind::SqlStatement => text.starts_with('{') && text.ends_with('}'),
                _ => text.len() <= 1024,
            };
            if !valid {
                return Err(RecordError::Invalid(at));
            }
        }
        f(kind, ms, data);
        at += HEADER + len;
    }
    Ok(())
}

/// Decodes every record of a chunk, or says what is wrong with it.
pub fn decode_chunk(chunk: &[u8]) -> Result<Vec<Record>, RecordError> {
    let chunk = expand(chunk)?;
    let mut out = Vec::new();
    walk(&chunk, |kind, ms, data| {
        out.push(Record {
            kind,
            ms,
            data: data.to_vec(),
        })
    })?;
    Ok(out)
}

/// Validates a chunk without copying it; returns whether it holds terminal bytes (output,
/// stderr or input) rather than only the recorder's notes, and the time of its first record.
pub fn check_chunk(chunk: &[u8]) -> Result<(bool, u32), RecordError> {
    let chunk = expand(chunk)?;
    let mut terminal = false;
    let mut first = None;
    walk(&chunk, |kind, ms, _| {
        terminal |= matches!(
            kind,
            Kind::Output | Kind::Stderr | Kind::Input | Kind::SqlSent | Kind::SqlStatement
        );
        first.get_or_insert(ms);
    })?;
    Ok((terminal, first.unwrap_or(0)))
}

/// `COLSxROWS` → (cols, rows), each 1..=10000.
pub fn parse_size(s: &str) -> Option<(u16, u16)> {
    let (c, r) = s.split_once('x')?;
    let c: u16 = c.parse().ok()?;
    let r: u16 = r.parse().ok()?;
    ((1..=10_000).contains(&c) && (1..=10_000).contains(&r)).then_some((c, r))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut c = Vec::new();
        encode_record(&mut c, Kind::Output, 5, b"hello\x1b[0m");
        encode_record(&mut c, Kind::Resize, 9, b"80x24");
        encode_record(&mut c, Kind::HiddenInput, 10, b"7");
        let r = decode_chunk(&c).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].data, b"hello\x1b[0m");
        assert_eq!(r[1].kind, Kind::Resize);
        assert_eq!(r[2].ms, 10);
    }

    #[test]
    fn compressed_chunks_round_trip_and_hostile_ones_fail() {
        let mut c = Vec::new();
        for i in 0..200 {
            encode_record(
                &mut c,
                Kind::Output,
                i,
                b"the same line of terminal output\r\n",
            );
        }
        let z = compress_chunk(&c);
        assert_eq!(z[0], COMPRESSED);
        assert!(z.len() < c.len() / 4, "{} vs {}", z.len(), c.len());
        assert_eq!(expanded_len(&z), c.len());
        assert_eq!(decode_chunk(&z).unwrap(), decode_chunk(&c).unwrap());
        // Incompressible: sent as is.
        let mut r = Vec::new();
        encode_record(&mut r, Kind::Output, 0, &[7, 200, 13]);
        assert_eq!(compress_chunk(&r), r);
        // A bomb: claims 4 GiB.
        let bomb = [COMPRESSED, 0xff, 0xff, 0xff, 0xff, 0x10, 0];
        assert_eq!(decode_chunk(&bomb), Err(RecordError::Compression));
        // Damaged: truncated.
        assert!(decode_chunk(&z[..z.len() / 2]).is_err());
    }

    proptest::proptest! {
        /// Any bytes: a clear error or records, never a panic; and what decodes renders.
        #[test]
        fn any_bytes_decode_or_fail_cleanly(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            if let Ok(recs) = decode_chunk(&data) {
                let meta = crate::recording::render::SessionMeta {
                    session: "s".into(), grant: "g".into(), host: "h".into(),
                    cols: 80, rows: 24, started: 0, command: None,
                };
                let (mut cast, _) = crate::recording::render::Asciicast::start(&meta);
                for r in &recs {
                    if let Some(l) = cast.line(r) {
                        proptest::prop_assert!(serde_json::from_str::<serde_json::Value>(&l).is_ok());
                    }
                }
            }
        }

        /// Records built from any data round-trip.
        #[test]
        fn records_round_trip(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048), ms in 0u32..) {
            let mut c = Vec::new();
            encode_record(&mut c, Kind::Output, ms, &data);
            encode_record(&mut c, Kind::Input, ms, &data);
            let r = decode_chunk(&c).unwrap();
            proptest::prop_assert_eq!(&r[0].data, &data);
            proptest::prop_assert_eq!(r[1].ms, ms);
        }
    }

    #[test]
    fn hostile_chunks_are_refused() {
        assert_eq!(decode_chunk(b"o\0\0"), Err(RecordError::Truncated(0)));
        assert!(matches!(
            decode_chunk(b"z\0\0\0\0\0\0\0\0"),
            Err(RecordError::UnknownKind { .. })
        ));
        let mut c = Vec::new();
        encode_record(&mut c, Kind::Output, 0, b"abc");
        c[8] = 200; // length beyond the end
        assert_eq!(decode_chunk(&c), Err(RecordError::Truncated(0)));
        let mut c = Vec::new();
        encode_record(&mut c, Kind::Resize, 0, b"0x0");
        assert_eq!(decode_chunk(&c), Err(RecordError::Invalid(0)));
        let mut c = Vec::new();
        encode_record(&mut c, Kind::Marker, 0, &[0xff, 0xfe]);
        assert_eq!(decode_chunk(&c), Err(RecordError::NotText(0)));
        let mut c = Vec::new();
        encode_record(&mut c, Kind::HiddenInput, 0, b"secret");
        assert_eq!(decode_chunk(&c), Err(RecordError::Invalid(0)));
        assert_eq!(
            decode_chunk(&vec![0; MAX_CHUNK + 1]),
            Err(RecordError::TooLarge)
        );
        assert_eq!(decode_chunk(b""), Ok(vec![]));
    }
}
