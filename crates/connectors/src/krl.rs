//! OpenSSH key revocation lists (KRL), as described in OpenSSH's `PROTOCOL.krl`.
//!
//! breakglass revokes a certificate before its natural expiry by listing its serial under the
//! CA's key; hosts fetch the list (`breakglass ssh krl --out FILE`) and point sshd's
//! `RevokedKeys` at it. [`encode`] writes the subset we need (one certificates section with a
//! serial list); [`decode`] reads any KRL's certificate serials and ranges so that
//! `breakglass session` on a host can end a live session whose serial appears, and ignores the
//! sections it does not need. Decoding is bounds-checked and never panics on hostile input.

use thiserror::Error;

const MAGIC: u64 = 0x5353_484b_524c_0a00; // "SSHKRL\n\0"
const FORMAT_VERSION: u32 = 1;
const SECTION_CERTIFICATES: u8 = 1;
const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_SERIAL_RANGE: u8 = 0x21;
const CERT_SERIAL_BITMAP: u8 = 0x22;
const MAX_BITMAP_BYTES: usize = 64 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KrlError {
    #[error("not an OpenSSH KRL (bad magic)")]
    Magic,
    #[error("unsupported KRL format version {0}")]
    Version(u32),
    #[error("KRL serial bitmap larger than {MAX_BITMAP_BYTES} bytes")]
    TooLarge,
    #[error("truncated KRL at byte {0}")]
    Truncated(usize),
}

/// The revocations a KRL carries (certificate serials under each CA key).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Krl {
    pub version: u64,
    pub generated: u64,
    pub comment: String,
    /// (CA public key blob, revoked serial ranges, inclusive).
    pub certs: Vec<(Vec<u8>, SerialRanges)>,
}

/// Inclusive ranges of revoked certificate serials.
pub type SerialRanges = Vec<(u64, u64)>;

impl Krl {
    /// Whether this serial is revoked under any CA (serials are random 64-bit numbers).
    pub fn revokes_serial(&self, serial: u64) -> bool {
        self.certs
            .iter()
            .any(|(_, r)| r.iter().any(|&(a, b)| a <= serial && serial <= b))
    }

    /// Whether a certificate with this serial, signed by `ca_blob`, is revoked.
    pub fn revokes(&self, ca_blob: &[u8], serial: u64) -> bool {
        self.certs.iter().any(|(ca, ranges)| {
            (ca.is_empty() || ca == ca_blob)
                && ranges.iter().any(|&(a, b)| a <= serial && serial <= b)
        })
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(s);
}

/// A KRL revoking `serials` of certificates signed by the CA whose public key blob is `ca_blob`.
pub fn encode(
    ca_blob: &[u8],
    serials: &[u64],
    version: u64,
    generated: u64,
    comment: &str,
) -> Vec<u8> {
    let mut serials = serials.to_vec();
    serials.sort_unstable();
    serials.dedup();
    let mut out = Vec::with_capacity(64 + ca_blob.len() + serials.len() * 8);
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&generated.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes()); // flags
    put_string(&mut out, b""); // reserved
    put_string(&mut out, comment.as_bytes());
    if !serials.is_empty() {
        let mut section = Vec::new();
        put_string(&mut section, ca_blob);
        put_string(&mut section, b""); // reserved
        section.push(CERT_SERIAL_LIST);
        let list: Vec<u8> = serials.iter().flat_map(|s| s.to_be_bytes()).collect();
        put_string(&mut section, &list);
        out.push(SECTION_CERTIFICATES);
        put_string(&mut out, &section);
    }
    out
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], KrlError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(KrlError::Truncated(self.base + self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, KrlError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, KrlError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, KrlError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn string(&mut self) -> Result<(&'a [u8], usize), KrlError> {
        let n = self.u32()? as usize;
        let at = self.base + self.pos;
        Ok((self.take(n)?, at))
    }
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }
}

/// Reads a KRL (signature sections are not checked: breakglass fetches it over TLS).
pub fn decode(buf: &[u8]) -> Result<Krl, KrlError> {
    let mut r = Reader::new(buf, 0);
    if r.u64().map_err(|_| KrlError::Magic)? != MAGIC {
        return Err(KrlError::Magic);
    }
    let v = r.u32()?;
    if v != FORMAT_VERSION {
        return Err(KrlError::Version(v));
    }
    let mut krl = Krl {
        version: r.u64()?,
        generated: r.u64()?,
        ..Krl::default()
    };
    let _flags = r.u64()?;
    let _reserved = r.string()?;
    krl.comment = String::from_utf8_lossy(r.string()?.0).into_owned();
    while !r.done() {
        let kind = r.u8()?;
        let (data, at) = r.string()?;
        if kind != SECTION_CERTIFICATES {
            continue;
        }
        let mut s = Reader::new(data, at);
        let ca = s.string()?.0.to_vec();
        let _reserved = s.string()?;
        let mut ranges = Vec::new();
        while !s.done() {
            let sub = s.u8()?;
            let (body, at) = s.string()?;
            let mut b = Reader::new(body, at);
            match sub {
                CERT_SERIAL_LIST => {
                    while !b.done() {
                        let x = b.u64()?;
                        ranges.push((x, x));
                    }
                }
                CERT_SERIAL_RANGE => {
                    let lo = b.u64()?;
                    let hi = b.u64()?;
                    ranges.push((lo, hi));
                }
                CERT_SERIAL_BITMAP => {
                    let offset = b.u64()?;
                    // An mpint bitmap: bit i set = serial offset + i revoked.
                    let (bits, _) = b.string()?;
                    if bits.len() > MAX_BITMAP_BYTES {
                        return Err(KrlError::TooLarge);
                    }
                    for (i, byte) in bits.iter().rev().enumerate() {
                        for bit in 0..8u64 {
                            if byte & (1 << bit) != 0 {
                                let n = (i as u64) * 8 + bit;
                                let x = offset.saturating_add(n);
                                ranges.push((x, x));
                            }
                        }
                    }
                }
                _ => {} // key ids and future subsections: not needed here
            }
        }
        krl.certs.push((ca, ranges));
    }
    Ok(krl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let k = encode(b"ca-blob", &[9, 3, 3, 7], 5, 1000, "breakglass");
        let d = decode(&k).unwrap();
        assert_eq!(d.version, 5);
        assert_eq!(d.generated, 1000);
        assert_eq!(d.comment, "breakglass");
        assert!(d.revokes(b"ca-blob", 3) && d.revokes(b"ca-blob", 9));
        assert!(!d.revokes(b"ca-blob", 4));
        assert!(!d.revokes(b"other", 3));
        let empty = decode(&encode(b"ca", &[], 1, 1, "")).unwrap();
        assert!(empty.certs.is_empty());
    }

    #[test]
    fn hostile_input_is_an_error() {
        assert_eq!(decode(b""), Err(KrlError::Magic));
        assert_eq!(decode(b"SSHKRL\n\0\0\0\0\x02"), Err(KrlError::Version(2)));
        let k = encode(b"ca", &[1, 2], 1, 1, "c");
        let header = 8 + 4 + 8 + 8 + 8 + 4 + 4 + 1; // a KRL with no sections ends here
        for n in (0..k.len()).filter(|&n| n != header) {
            assert!(decode(&k[..n]).is_err(), "prefix {n}");
        }
        let mut huge = k.clone();
        let at = huge.len() - 16 - 4; // the serial list's length field
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            let mut k = encode(b"ca", &[1], 1, 1, "");
            k.extend_from_slice(&bytes);
            let _ = decode(&k);
        }
    }
}
