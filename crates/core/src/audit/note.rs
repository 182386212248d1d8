//! Checkpoints in the C2SP signed-note / tlog-checkpoint format:
//!
//! ```text
//! <origin>\n<tree size>\n<base64 RFC 6962 root>\n
//! \n
//! — <key name> <base64(key id (4 bytes) ‖ Ed25519 signature (64 bytes))>\n
//! ```
//! The signature is plain RFC 8032 Ed25519 over the body (the first three lines, with their
//! newlines), so `openssl pkeyutl -verify -rawin` checks it. Key id = the first 4 bytes of
//! SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key).

use super::AuditError;
use super::merkle::Hash;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// Longest note we parse.
const MAX_NOTE: usize = 16 * 1024;

/// A signed statement: the log `origin` had `size` events with Merkle root `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// Note key id of an Ed25519 key.
pub fn key_id(key_name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(key_name.as_bytes());
    h.update([0x0A, 0x01]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// SPKI PEM of the public key (for `openssl pkeyutl -verify -pubin`).
pub fn public_key_pem(key: &VerifyingKey) -> String {
    // SubjectPublicKeyInfo for Ed25519 (RFC 8410): fixed 12-byte prefix + 32-byte key.
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(key.as_bytes());
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        B64.encode(der)
    )
}

impl Checkpoint {
    /// The signed body: three lines, each ending in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// The whole signed note.
    pub fn sign(&self, key: &SigningKey, key_name: &str) -> String {
        let body = self.body();
        let sig = key.sign(body.as_bytes());
        let mut blob = key_id(key_name, &key.verifying_key()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n\u{2014} {key_name} {}\n", B64.encode(blob))
    }

    /// Parses a note and verifies its signature by `key` under `key_name`.
    pub fn open(note: &str, key: &VerifyingKey, key_name: &str) -> Result<Checkpoint, AuditError> {
        let bad = |m: &str| AuditError::Note(m.to_string());
        if note.len() > MAX_NOTE {
            return Err(bad("note is too long"));
        }
        let (body, sigs) = note
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line between body and signatures"))?;
        let body = format!("{body}\n");
        let mut lines = body.lines();
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let size: u64 = lines
            .next()
            .and_then(|l| {
                (!l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_digit())
                    && (l == "0" || !l.starts_with('0')))
                .then(|| l.parse().ok())
                .flatten()
            })
            .ok_or_else(|| bad("tree size line is not a decimal number"))?;
        let root: Hash = lines
            .next()
            .and_then(|l| B64.decode(l).ok())
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("root hash line is not 32 bytes of base64"))?;
        let want_id = key_id(key_name, key);
        let mut saw_key = false;
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(bad("signature line does not start with an em dash"));
            };
            let Some((name, b64)) = rest.rsplit_once(' ') else {
                return Err(bad("malformed signature line"));
            };
            if name != key_name {
                continue;
            }
            let blob = B64
                .decode(b64)
                .map_err(|_| bad("signature is not base64"))?;
            if blob.len() != 68 || blob[..4] != want_id {
                continue;
            }
            saw_key = true;
            let sig = Signature::from_slice(&blob[4..]).map_err(|_| bad("malformed signature"))?;
            if key.verify(body.as_bytes(), &sig).is_ok() {
                return Ok(Checkpoint {
                    origin: origin.to_string(),
                    size,
                    root,
                });
            }
        }
        Err(bad(if saw_key {
            "signature invalid"
        } else {
            "no signature by the expected key"
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn round_trip_and_tamper() {
        let cp = Checkpoint {
            origin: "breakglass/test".into(),
            size: 42,
            root: [9u8; 32],
        };
        let note = cp.sign(&key(), "breakglass/test");
        assert!(note.starts_with("breakglass/test\n42\nCQkJ"));
        assert!(note.contains("\n\n\u{2014} breakglass/test "));
        let vk = key().verifying_key();
        assert_eq!(Checkpoint::open(&note, &vk, "breakglass/test").unwrap(), cp);
        let tampered = note.replacen("\n42\n", "\n43\n", 1);
        assert!(Checkpoint::open(&tampered, &vk, "breakglass/test").is_err());
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert!(Checkpoint::open(&note, &other, "breakglass/test").is_err());
        for junk in [
            "",
            "\n\n",
            "a\nb\nc\n\n— x y\n",
            "a\n1\n!!\n\nz",
            &"x".repeat(20_000),
        ] {
            assert!(Checkpoint::open(junk, &vk, "breakglass/test").is_err());
        }
    }

    #[test]
    fn key_id_follows_the_formula() {
        let vk = key().verifying_key();
        let mut pre = b"n\n\x01".to_vec();
        pre.extend_from_slice(vk.as_bytes());
        let d = Sha256::digest(&pre);
        assert_eq!(key_id("n", &vk), [d[0], d[1], d[2], d[3]]);
    }

    #[test]
    fn pem_is_spki() {
        use ed25519_dalek::pkcs8::DecodePublicKey;
        let vk = key().verifying_key();
        let pem = public_key_pem(&vk);
        assert_eq!(VerifyingKey::from_public_key_pem(&pem).unwrap(), vk);
    }
}
