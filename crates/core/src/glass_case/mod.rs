//! The offline glass case: what an admin seals while breakglass works, for the day it does not.
//!
//! A case holds, for each SSH resource, a ladder of future-dated certificates (one per day, each
//! valid at most 24 h, each with its own serial) for a key generated for the case, the sealed
//! secrets, and a per-case journal signing key. The payload is encrypted under a random data key
//! (XChaCha20-Poly1305, the header and every share as associated data); the data key is split
//! M-of-N with Shamir's scheme over GF(256) (vsss-rs) and each share is encrypted under a key
//! derived from its custodian's passphrase (Argon2id). Opening needs M custodians and no server;
//! it releases only the items valid now and writes a journal signed with the case's key, which
//! the server later verifies with the public half it kept ([`journal`]).
//!
//! Pure: no I/O, time and randomness (a seed) passed in. Format: `docs/GLASS-CASE.md`.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

pub mod bundle;
pub mod journal;

pub use bundle::{Bundle, Kdf, Share, decode, open_payload, seal, unlock_share};
pub use journal::{
    Journal, JournalBody, Release, peek_case_id, public_key_of, sign_journal, verify_journal,
};

pub const BUNDLE_FORMAT: &str = "breakglass-glass-case/1";
pub const JOURNAL_FORMAT: &str = "breakglass-glass-journal/1";
/// One rung of the ladder: no certificate in a case is valid longer than this.
pub const DAY_MS: i64 = 86_400_000;
pub const MAX_DAYS: u32 = 90;
pub const MAX_CUSTODIANS: usize = 32;
/// Largest bundle or journal text accepted (20 resources × 90 days is far below).
pub const MAX_TEXT: usize = 32 * 1024 * 1024;

/// Why a case cannot be sealed or opened; every message says what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GlassCaseError {
    #[error("{0}")]
    Input(String),
    #[error("the bundle is not a glass case: {0}")]
    Format(String),
    #[error(
        "the bundle was altered (or is damaged): its contents do not match what was sealed; use an untouched copy"
    )]
    Tampered,
    #[error(
        "custodian {0}'s passphrase is wrong, or their share in the bundle was altered; try again"
    )]
    WrongShare(String),
    #[error("this case needs {need} custodians' shares; only {got} were entered")]
    TooFewShares { need: usize, got: usize },
    #[error(
        "the journal's signature does not verify: it was not written by this case's bundle, or it was altered"
    )]
    BadSignature,
}

pub type Result<T> = std::result::Result<T, GlassCaseError>;

fn input(m: impl Into<String>) -> GlassCaseError {
    GlassCaseError::Input(m.into())
}

/// The audit chain head a case was sealed at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainHead {
    pub seq: u64,
    /// SHA-256 chain hash, hex.
    pub hash: String,
}

/// What a bundle says about itself in the clear (authenticated, not secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub case_id: String,
    /// The server that sealed it (its audit origin).
    pub origin: String,
    pub sealed_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub not_before: i64,
    pub expires_at: i64,
    pub threshold: u32,
    pub custodians: Vec<String>,
    pub chain_head: Option<ChainHead>,
    /// Resource names inside (what an opener can expect).
    pub resources: Vec<String>,
    /// Ed25519 public key of the journal signing key, base64.
    pub journal_public_key: String,
}

/// One future-dated certificate of the ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LadderCert {
    pub resource: String,
    pub serial: u64,
    /// Unix milliseconds, as in the certificate (which has seconds).
    pub valid_after: i64,
    pub valid_before: i64,
    /// The OpenSSH certificate line.
    pub certificate: String,
    pub principals: Vec<String>,
    pub host: Option<String>,
    pub port: u16,
}

/// A sealed secret copied into the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretItem {
    pub resource: String,
    pub version: i64,
    pub value: String,
}

/// An emergency PostgreSQL login for one day of the ladder: a role the server created at the
/// target when it sealed the case, `VALID UNTIL` the end of that day (PostgreSQL has no "valid
/// after": the opener releases only the day's item, and reconcile drops every role of the case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgItem {
    pub resource: String,
    pub role: String,
    /// Unix milliseconds: the day this login is for.
    pub valid_after: i64,
    pub valid_before: i64,
    /// `postgres://ROLE:PASSWORD@HOST:PORT/DB`, straight to the database (no gateway: the
    /// gateway is part of the server the case stands in for).
    pub url: String,
    /// The roles it is a member of.
    pub roles: Vec<String>,
}

/// The encrypted part of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// The case's own SSH key (OpenSSH private key), the subject of every certificate.
    pub ssh_private_key: String,
    pub certificates: Vec<LadderCert>,
    pub secrets: Vec<SecretItem>,
    /// Emergency PostgreSQL logins (resources with `glass_case: true`); absent in older bundles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub postgres: Vec<PgItem>,
    /// The journal signing key's 32-byte Ed25519 seed, base64.
    pub journal_key: String,
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.ssh_private_key.zeroize();
        self.journal_key.zeroize();
        for s in &mut self.secrets {
            s.value.zeroize();
        }
        for p in &mut self.postgres {
            p.url.zeroize();
        }
    }
}

impl Payload {
    /// The certificates valid at `now` (one per resource at most, the ladder does not overlap).
    pub fn valid_at(&self, now: Timestamp) -> Vec<&LadderCert> {
        self.certificates
            .iter()
            .filter(|c| c.valid_after <= now.0 && now.0 < c.valid_before)
            .collect()
    }

    /// The PostgreSQL logins for `now`'s day (one per resource at most).
    pub fn postgres_at(&self, now: Timestamp) -> Vec<&PgItem> {
        self.postgres
            .iter()
            .filter(|p| p.valid_after <= now.0 && now.0 < p.valid_before)
            .collect()
    }
}

/// The ladder: `days` consecutive windows of at most [`DAY_MS`] from `start`.
pub fn plan_ladder(start: Timestamp, days: u32) -> Vec<(Timestamp, Timestamp)> {
    (0..i64::from(days))
        .map(|i| {
            (
                Timestamp(start.0 + i * DAY_MS),
                Timestamp(start.0 + (i + 1) * DAY_MS),
            )
        })
        .collect()
}

/// A custodian name: what `admin user add` accepts (letters, digits, `._-`, ≤ 64).
fn valid_custodian(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Checks the custodian list, threshold and days of a case to seal.
pub fn check_plan(custodians: &[String], threshold: u32, days: u32) -> Result<()> {
    if custodians.len() < 2 || custodians.len() > MAX_CUSTODIANS {
        return Err(input(format!(
            "a glass case needs 2 to {MAX_CUSTODIANS} custodians (got {}): --custodians alice,bob,carol",
            custodians.len()
        )));
    }
    if let Some(bad) = custodians.iter().find(|c| !valid_custodian(c)) {
        return Err(input(format!(
            "custodian name {bad:.64?} is not a user name (letters, digits, . _ -, at most 64)"
        )));
    }
    let mut sorted: Vec<_> = custodians.iter().collect();
    sorted.sort();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(input(format!(
            "custodian {} is listed twice: each custodian holds one share",
            w[0]
        )));
    }
    let n = custodians.len() as u32;
    if threshold < 2 || threshold > n {
        return Err(input(format!(
            "--threshold must be between 2 and the number of custodians ({n}); got {threshold}"
        )));
    }
    if days == 0 || days > MAX_DAYS {
        return Err(input(format!(
            "--days must be 1 to {MAX_DAYS} (one certificate per day); got {days}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
