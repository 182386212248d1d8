//! Signed notes (C2SP `signed-note`, as in Go's `golang.org/x/mod/sumdb/note`) and checkpoints
//! in that format (C2SP `tlog-checkpoint`):
//!
//! ```text
//! <origin>\n<tree size>\n<base64 RFC 6962 root>\n
//! \n
//! — <key name> <base64(key id (4 bytes) ‖ Ed25519 signature (64 bytes))>\n
//! ```
//! The signature is plain RFC 8032 Ed25519 over the text (everything before the blank line,
//! including the text's final newline), so `openssl pkeyutl -verify -rawin` checks it. Key id =
//! the first 4 bytes of SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key).
//!
//! Parsing follows Go's `note.Open`: the note is UTF-8 without control characters other than
//! newline, the text is everything up to the last blank line, every signature line is
//! well-formed, at most 100 signatures; signatures by other keys are ignored; a signature by
//! the expected key that does not verify is an error.

use super::AuditError;
use super::merkle::Hash;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// Longest note accepted.
pub const MAX_NOTE: usize = 16 * 1024;
/// Most signature lines accepted in one note (as Go's `note.Open`).
pub const MAX_SIGNATURES: usize = 100;
/// Note signature algorithm identifier of Ed25519.
const ALG_ED25519: u8 = 0x01;

/// Note key id of an Ed25519 key: the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key).
pub fn key_id(key_name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(key_name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Go's verifier-key string for `key`: `<name>+<hex key id>+<base64(0x01 ‖ key)>`, as taken by
/// `note.NewVerifier` (so Go tooling can check our checkpoints).
pub fn verifier_key(key_name: &str, key: &VerifyingKey) -> String {
    let mut raw = vec![ALG_ED25519];
    raw.extend_from_slice(key.as_bytes());
    format!(
        "{key_name}+{}+{}",
        hex::encode(key_id(key_name, key)),
        B64.encode(raw)
    )
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

/// A key name is non-empty and has no Unicode white space and no `+` (as in Go).
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn malformed(m: impl Into<String>) -> AuditError {
    AuditError::Note(m.into())
}

/// One signature line of a note, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature<'a> {
    pub name: &'a str,
    pub key_id: [u8; 4],
    /// The signature bytes after the key id.
    pub sig: Vec<u8>,
}

/// Splits a note into its text and signature lines, checking the syntax only.
pub fn parse_note(note: &str) -> Result<(&str, Vec<NoteSignature<'_>>), AuditError> {
    if note.len() > MAX_NOTE {
        return Err(malformed(format!(
            "note is longer than {MAX_NOTE} bytes ({})",
            note.len()
        )));
    }
    if let Some(c) = note.chars().find(|&c| c < ' ' && c != '\n') {
        return Err(malformed(format!(
            "note contains the control character U+{:04X}",
            u32::from(c)
        )));
    }
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| malformed("no blank line between text and signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    if sigs.is_empty() {
        return Err(malformed("no signature lines"));
    }
    let Some(sigs) = sigs.strip_suffix('\n') else {
        return Err(malformed(
            "the last signature line does not end in a newline",
        ));
    };
    let mut out = Vec::new();
    for line in sigs.split('\n') {
        if out.len() == MAX_SIGNATURES {
            return Err(malformed(format!("more than {MAX_SIGNATURES} signatures")));
        }
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| malformed("a signature line does not start with \"— \""))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| malformed("a signature line has no space between name and signature"))?;
        if !is_valid_key_name(name) {
            return Err(malformed(format!("invalid key name {name:?}")));
        }
        let raw = B64
            .decode(b64)
            .map_err(|_| malformed(format!("signature by {name:?} is not base64")))?;
        if raw.len() < 5 {
            return Err(malformed(format!("signature by {name:?} is too short")));
        }
        out.push(NoteSignature {
            name,
            key_id: [raw[0], raw[1], raw[2], raw[3]],
            sig: raw[4..].to_vec(),
        });
    }
    Ok((text, out))
}

/// Checks that `sigs` holds a valid signature of `text` by `key` named `key_name`.
fn verify_sigs(
    text: &str,
    sigs: &[NoteSignature<'_>],
    key: &VerifyingKey,
    key_name: &str,
) -> Result<(), AuditError> {
    let id = key_id(key_name, key);
    let Some(s) = sigs.iter().find(|s| s.name == key_name && s.key_id == id) else {
        return Err(AuditError::NoSignature {
            key_name: key_name.to_string(),
            key_id: hex::encode(id),
        });
    };
    let sig = Signature::from_slice(&s.sig).map_err(|_| AuditError::BadSignature)?;
    key.verify(text.as_bytes(), &sig)
        .map_err(|_| AuditError::BadSignature)
}

/// Signs `text` (which must end in a newline) as a note by `key` named `key_name`.
pub fn sign_note(text: &str, key: &SigningKey, key_name: &str) -> Result<String, AuditError> {
    if !text.ends_with('\n') {
        return Err(malformed("note text does not end in a newline"));
    }
    if !is_valid_key_name(key_name) {
        return Err(malformed(format!("invalid key name {key_name:?}")));
    }
    Ok(sign_unchecked(text, key, key_name))
}

fn sign_unchecked(text: &str, key: &SigningKey, key_name: &str) -> String {
    let sig = key.sign(text.as_bytes());
    let mut blob = key_id(key_name, &key.verifying_key()).to_vec();
    blob.extend_from_slice(&sig.to_bytes());
    format!("{text}\n\u{2014} {key_name} {}\n", B64.encode(blob))
}

/// Opens a note: checks its syntax and a signature by `key` named `key_name`; returns the text.
pub fn open_note<'a>(
    note: &'a str,
    key: &VerifyingKey,
    key_name: &str,
) -> Result<&'a str, AuditError> {
    let (text, sigs) = parse_note(note)?;
    verify_sigs(text, &sigs, key, key_name)?;
    Ok(text)
}

/// A signed statement: the log `origin` had `size` events with Merkle root `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The signed text: three lines, each ending in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// The whole signed note. `key_name` must be a valid note key name and `origin` a single
    /// non-empty line (ours are `breakglass/<hex>`); otherwise [`Checkpoint::open`] refuses the
    /// result.
    pub fn sign(&self, key: &SigningKey, key_name: &str) -> String {
        sign_unchecked(&self.body(), key, key_name)
    }

    /// Parses a checkpoint text (the note text, without signatures), strictly: exactly three
    /// lines, non-empty origin, decimal size without leading zeros, canonical base64 of 32 bytes.
    pub fn parse_body(text: &str) -> Result<Checkpoint, AuditError> {
        let lines = text
            .strip_suffix('\n')
            .ok_or_else(|| malformed("checkpoint text does not end in a newline"))?;
        let mut it = lines.split('\n');
        let (Some(origin), Some(size), Some(root)) = (it.next(), it.next(), it.next()) else {
            return Err(malformed(
                "checkpoint text has fewer than three lines (origin, size, root)",
            ));
        };
        if it.next().is_some() {
            return Err(malformed(
                "checkpoint text has more than three lines (origin, size, root)",
            ));
        }
        if origin.is_empty() {
            return Err(malformed("empty origin line"));
        }
        let size_ok = !size.is_empty()
            && size.len() <= 20
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size: u64 = size
            .parse()
            .ok()
            .filter(|_| size_ok)
            .ok_or_else(|| malformed(format!("tree size {size:?} is not a decimal number")))?;
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| malformed("root hash line is not 32 bytes of base64"))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }

    /// Parses a note without checking any signature (to report which checkpoint is bad).
    pub fn open_unverified(note: &str) -> Result<Checkpoint, AuditError> {
        let (text, _) = parse_note(note)?;
        Checkpoint::parse_body(text)
    }

    /// Parses a note and verifies its signature by `key` under `key_name`.
    pub fn open(note: &str, key: &VerifyingKey, key_name: &str) -> Result<Checkpoint, AuditError> {
        let (text, sigs) = parse_note(note)?;
        let cp = Checkpoint::parse_body(text)?;
        verify_sigs(text, &sigs, key, key_name)?;
        Ok(cp)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    const NAME: &str = "breakglass/test";

    fn cp() -> Checkpoint {
        Checkpoint {
            origin: NAME.into(),
            size: 42,
            root: [9u8; 32],
        }
    }

    // The documented example of Go's golang.org/x/mod/sumdb/note package.
    const GO_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const GO_SIG2: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    fn go_key() -> SigningKey {
        let raw = B64.decode(GO_SKEY.splitn(5, '+').nth(4).unwrap()).unwrap();
        assert_eq!(raw[0], ALG_ED25519);
        SigningKey::from_bytes(&raw[1..].try_into().unwrap())
    }

    #[test]
    fn go_note_documented_example() {
        let sk = go_key();
        let vk = sk.verifying_key();
        // Key id and verifier key string as Go computes them.
        assert_eq!(hex::encode(key_id("PeterNeumann", &vk)), "c74f20a3");
        assert_eq!(verifier_key("PeterNeumann", &vk), GO_VKEY);
        // Signing gives Go's note byte for byte (Ed25519 is deterministic).
        let want = format!("{GO_TEXT}\n{GO_SIG}");
        assert_eq!(sign_note(GO_TEXT, &sk, "PeterNeumann").unwrap(), want);
        assert_eq!(open_note(&want, &vk, "PeterNeumann").unwrap(), GO_TEXT);
        // The doubly-signed variant opens too (the unknown EnochRoot signature is ignored).
        let both = format!("{GO_TEXT}\n{GO_SIG}{GO_SIG2}");
        assert_eq!(open_note(&both, &vk, "PeterNeumann").unwrap(), GO_TEXT);
        // Only EnochRoot's: no signature by our key.
        let other = format!("{GO_TEXT}\n{GO_SIG2}");
        assert!(matches!(
            open_note(&other, &vk, "PeterNeumann"),
            Err(AuditError::NoSignature { .. })
        ));
        // A changed text fails.
        let bad = want.replacen("cryptography", "cryptographY", 1);
        assert_eq!(
            open_note(&bad, &vk, "PeterNeumann"),
            Err(AuditError::BadSignature)
        );
    }

    #[test]
    fn round_trip_and_tamper() {
        let note = cp().sign(&key(), NAME);
        assert!(note.starts_with("breakglass/test\n42\nCQkJ"));
        assert!(note.contains("\n\n\u{2014} breakglass/test "));
        assert_eq!(sign_note(&cp().body(), &key(), NAME).unwrap(), note);
        let vk = key().verifying_key();
        assert_eq!(Checkpoint::open(&note, &vk, NAME).unwrap(), cp());
        assert_eq!(Checkpoint::open_unverified(&note).unwrap(), cp());
        let tampered = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            Checkpoint::open(&tampered, &vk, NAME),
            Err(AuditError::BadSignature)
        );
        assert_eq!(Checkpoint::open_unverified(&tampered).unwrap().size, 43);
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert!(matches!(
            Checkpoint::open(&note, &other, NAME),
            Err(AuditError::NoSignature { .. })
        ));
        // Same key under another name: a different key id, so not "our" signature.
        assert!(Checkpoint::open(&note, &vk, "breakglass/other").is_err());
        // A cosignature by another key is ignored.
        let extra = format!("{note}\u{2014} witness {}\n", B64.encode([1u8; 68]));
        assert_eq!(Checkpoint::open(&extra, &vk, NAME).unwrap(), cp());
    }

    #[test]
    fn hostile_notes_are_errors() {
        let vk = key().verifying_key();
        let good = cp().sign(&key(), NAME);
        let sigline = good.split("\n\n").nth(1).unwrap().to_string();
        let many = format!(
            "{}\n{}",
            cp().body(),
            format!("\u{2014} w {}\n", B64.encode([1u8; 68])).repeat(101)
        );
        let cases: Vec<String> = vec![
            String::new(),
            "\n\n".into(),
            "a\nb\nc\n\n— x y\n".into(),
            "a\n1\n!!\n\nz".into(),
            "x".repeat(20_000),
            good.trim_end().to_string(),           // no final newline
            good.replace('\n', "\r\n"),            // CR
            good.replacen("\n42\n", "\n042\n", 1), // leading zero
            good.replacen("\n42\n", "\n-1\n", 1),  // sign
            good.replacen("\n42\n", "\n99999999999999999999999\n", 1),
            good.replacen("breakglass/test\n", "\n", 1), // empty origin
            format!("{}ext\n\n{sigline}", cp().body()),  // extension line
            format!("{}\n- {NAME} AAAA\n", cp().body()), // not an em dash
            format!("{}\n\u{2014} {NAME}\n", cp().body()),
            format!("{}\n\u{2014} {NAME} !!!\n", cp().body()),
            format!("{}\n\u{2014} {NAME} AAAA\n", cp().body()), // too short
            format!("{}\n\u{2014} a+b {}\n", cp().body(), B64.encode([0u8; 68])),
            many,
            good.replacen(&B64.encode([9u8; 32]), &B64.encode([9u8; 31]), 1),
            good.replacen(
                &B64.encode([9u8; 32]),
                "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk",
                1,
            ),
        ];
        for c in &cases {
            assert!(Checkpoint::open(c, &vk, NAME).is_err(), "accepted {c:?}");
        }
        // Our own key with a wrong-length signature is a bad signature, not ignored.
        let mut blob = key_id(NAME, &vk).to_vec();
        blob.extend_from_slice(&[0u8; 10]);
        let short = format!("{}\n\u{2014} {NAME} {}\n", cp().body(), B64.encode(blob));
        assert_eq!(
            Checkpoint::open(&short, &vk, NAME),
            Err(AuditError::BadSignature)
        );
        assert!(sign_note("no newline", &key(), NAME).is_err());
        assert!(sign_note("x\n", &key(), "bad name").is_err());
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
