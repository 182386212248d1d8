//! The bundle file: header, one encrypted share per custodian, the encrypted payload.
//!
//! The file is pretty-printed JSON and must be byte for byte what [`Bundle::encode`] writes
//! ([`decode`] re-encodes and compares), so every byte counts: a changed byte is a parse
//! error, a non-canonical file, or a changed value — and every value is authenticated (the
//! payload's associated data is a hash over the header and all shares).

use super::{BUNDLE_FORMAT, GlassCaseError, Header, MAX_CUSTODIANS, MAX_TEXT, Result, input};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload as Aad};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vsss_rs::Gf256;
use zeroize::Zeroizing;

/// Argon2id cost of one custodian's key (recorded per share).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kdf {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Kdf {
    /// 64 MiB, 3 passes: a fraction of a second per custodian on a laptop, costly to guess.
    pub const DEFAULT: Kdf = Kdf {
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
    };

    /// A hostile bundle must not make the opener's machine spend unbounded memory or time.
    fn check(&self) -> Result<()> {
        if !(8..=512 * 1024).contains(&self.m_kib) || !(1..=10).contains(&self.t) || self.p != 1 {
            return Err(GlassCaseError::Format(format!(
                "its key derivation asks for m={} KiB, t={}, p={} (allowed: 8 KiB–512 MiB, t 1–10, p 1)",
                self.m_kib, self.t, self.p
            )));
        }
        Ok(())
    }

    fn derive(&self, passphrase: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        self.check()?;
        let params = Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| GlassCaseError::Format(format!("bad key derivation parameters: {e}")))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase, salt, key.as_mut())
            .map_err(|e| input(format!("cannot derive the custodian's key: {e}")))?;
        Ok(key)
    }
}

mod b64_field {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// One custodian's share of the data key, encrypted under their passphrase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    pub custodian: String,
    pub kdf: Kdf,
    #[serde(with = "b64_field")]
    pub salt: Vec<u8>,
    #[serde(with = "b64_field")]
    pub nonce: Vec<u8>,
    #[serde(with = "b64_field")]
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub header: Header,
    pub shares: Vec<Share>,
    #[serde(with = "b64_field")]
    pub nonce: Vec<u8>,
    #[serde(with = "b64_field")]
    pub ciphertext: Vec<u8>,
}

impl Bundle {
    /// The file text (the one accepted form).
    pub fn encode(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// What the payload's tag covers: the header and every share, so no byte of the file can
    /// change without the case refusing to open.
    fn payload_aad(&self) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(b"breakglass glass-case payload v1\n");
        h.update(serde_json::to_vec(&self.header).unwrap_or_default());
        for s in &self.shares {
            h.update(b"\n");
            h.update(serde_json::to_vec(s).unwrap_or_default());
        }
        h.finalize().to_vec()
    }

    pub fn share_of(&self, custodian: &str) -> Option<&Share> {
        self.shares.iter().find(|s| s.custodian == custodian)
    }
}

fn share_aad(case_id: &str, custodian: &str) -> Vec<u8> {
    format!("breakglass glass-case share v1\n{case_id}\n{custodian}").into_bytes()
}

fn nonce(b: &[u8]) -> Result<&XNonce> {
    if b.len() != 24 {
        return Err(GlassCaseError::Format("a nonce is not 24 bytes".into()));
    }
    Ok(XNonce::from_slice(b))
}

/// Seals `payload` for the header's custodians: `passphrases` in the header's custodian order;
/// `seed` (32 bytes from the OS) drives every random choice.
pub fn seal(
    header: Header,
    payload: &[u8],
    passphrases: &[Zeroizing<String>],
    kdf: Kdf,
    seed: [u8; 32],
) -> Result<Bundle> {
    super::check_plan(&header.custodians, header.threshold, 1)?;
    if passphrases.len() != header.custodians.len() {
        return Err(input(format!(
            "{} custodians but {} passphrases",
            header.custodians.len(),
            passphrases.len()
        )));
    }
    if let Some(i) = passphrases.iter().position(|p| p.chars().count() < 8) {
        return Err(input(format!(
            "custodian {}'s passphrase is shorter than 8 characters: choose a longer one",
            header.custodians[i]
        )));
    }
    kdf.check()?;
    let mut rng = ChaCha20Rng::from_seed(seed);
    let mut data_key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(data_key.as_mut());
    let n = header.custodians.len();
    let parts = Gf256::split_bytes(header.threshold as usize, n, data_key.as_ref(), &mut rng)
        .map_err(|e| input(format!("cannot split the data key: {e:?}")))?;
    let mut shares = Vec::with_capacity(n);
    for ((name, pass), part) in header.custodians.iter().zip(passphrases).zip(parts) {
        let part = Zeroizing::new(part);
        let mut salt = vec![0u8; 16];
        rng.fill_bytes(&mut salt);
        let mut nonce = vec![0u8; 24];
        rng.fill_bytes(&mut nonce);
        let key = kdf.derive(pass.as_bytes(), &salt)?;
        let aad = share_aad(&header.case_id, name);
        let ciphertext = XChaCha20Poly1305::new(key.as_ref().into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Aad {
                    msg: &part,
                    aad: &aad,
                },
            )
            .map_err(|_| input("cannot encrypt a share"))?;
        shares.push(Share {
            custodian: name.clone(),
            kdf,
            salt,
            nonce,
            ciphertext,
        });
    }
    let mut nonce = vec![0u8; 24];
    rng.fill_bytes(&mut nonce);
    let mut b = Bundle {
        header,
        shares,
        nonce,
        ciphertext: vec![],
    };
    let aad = b.payload_aad();
    b.ciphertext = XChaCha20Poly1305::new(data_key.as_ref().into())
        .encrypt(
            XNonce::from_slice(&b.nonce),
            Aad {
                msg: payload,
                aad: &aad,
            },
        )
        .map_err(|_| input("cannot encrypt the payload"))?;
    Ok(b)
}

/// Reads a bundle file, strictly: bounded, known fields only, in the one canonical form.
pub fn decode(text: &[u8]) -> Result<Bundle> {
    if text.len() > MAX_TEXT {
        return Err(GlassCaseError::Format(format!(
            "it is larger than {} MiB",
            MAX_TEXT >> 20
        )));
    }
    let b: Bundle =
        serde_json::from_slice(text).map_err(|e| GlassCaseError::Format(e.to_string()))?;
    if b.header.format != BUNDLE_FORMAT {
        return Err(GlassCaseError::Format(format!(
            "format {:.40?} (this breakglass reads {BUNDLE_FORMAT})",
            b.header.format
        )));
    }
    if b.encode().as_bytes() != text {
        return Err(GlassCaseError::Tampered);
    }
    let h = &b.header;
    if h.custodians.is_empty()
        || h.custodians.len() > MAX_CUSTODIANS
        || h.threshold < 2
        || h.threshold as usize > h.custodians.len()
        || b.shares.len() != h.custodians.len()
        || b.shares
            .iter()
            .zip(&h.custodians)
            .any(|(s, c)| &s.custodian != c)
    {
        return Err(GlassCaseError::Tampered);
    }
    for s in &b.shares {
        s.kdf.check()?;
        nonce(&s.nonce)?;
    }
    nonce(&b.nonce)?;
    Ok(b)
}

/// Decrypts one custodian's share with their passphrase.
pub fn unlock_share(b: &Bundle, custodian: &str, passphrase: &str) -> Result<Zeroizing<Vec<u8>>> {
    let Some(s) = b.share_of(custodian) else {
        return Err(input(format!(
            "{custodian:.64} is not a custodian of this case (custodians: {})",
            b.header.custodians.join(", ")
        )));
    };
    let key = s.kdf.derive(passphrase.as_bytes(), &s.salt)?;
    let aad = share_aad(&b.header.case_id, custodian);
    XChaCha20Poly1305::new(key.as_ref().into())
        .decrypt(
            nonce(&s.nonce)?,
            Aad {
                msg: &s.ciphertext,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| GlassCaseError::WrongShare(custodian.to_string()))
}

/// Combines at least the threshold of unlocked shares and decrypts the payload.
pub fn open_payload(b: &Bundle, shares: &[Zeroizing<Vec<u8>>]) -> Result<Zeroizing<Vec<u8>>> {
    let need = b.header.threshold as usize;
    if shares.len() < need {
        return Err(GlassCaseError::TooFewShares {
            need,
            got: shares.len(),
        });
    }
    let parts: Vec<Vec<u8>> = shares.iter().map(|s| s.to_vec()).collect();
    let key = Gf256::combine_bytes(&parts).map(Zeroizing::new);
    for mut p in parts {
        zeroize::Zeroize::zeroize(&mut p);
    }
    let key = key.map_err(|_| GlassCaseError::Tampered)?;
    if key.len() != 32 {
        return Err(GlassCaseError::Tampered);
    }
    let aad = b.payload_aad();
    XChaCha20Poly1305::new(key.as_slice().into())
        .decrypt(
            nonce(&b.nonce)?,
            Aad {
                msg: &b.ciphertext,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| GlassCaseError::Tampered)
}

/// Base64 of bytes, as the formats write them.
pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Bytes of strict base64.
pub fn unb64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s).ok()
}
