//! The offline journal: what an opening released and when, signed with the case's journal key
//! (Ed25519; the seed is inside the sealed payload, the server keeps the public half).
//!
//! File: `{"format", "case_id", "body" (base64 of the body's JSON), "signature" (base64)}`; the
//! signature covers `"breakglass glass-case journal v1\n" || body bytes`, so the body is
//! verified before it is parsed.

use super::bundle::{b64, unb64};
use super::{GlassCaseError, JOURNAL_FORMAT, MAX_TEXT, Result};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

const DOMAIN: &[u8] = b"breakglass glass-case journal v1\n";
/// Most releases one journal may list.
pub const MAX_RELEASES: usize = 10_000;

/// One item released by an opening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// `ssh-certificate`, `secret` or `postgres-role`.
    pub kind: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_before: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// The PostgreSQL role released (`postgres-role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Unix milliseconds on the opener's clock.
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalBody {
    pub case_id: String,
    pub opened_at: i64,
    /// The custodians whose shares opened it.
    pub custodians: Vec<String>,
    /// The opener's host name and free text, as typed (shown escaped).
    pub host: String,
    pub releases: Vec<Release>,
}

/// The journal file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    pub format: String,
    pub case_id: String,
    pub body: String,
    pub signature: String,
}

/// The journal text for `body`, signed with the 32-byte seed from the payload.
pub fn sign_journal(body: &JournalBody, seed: &[u8; 32]) -> String {
    let key = SigningKey::from_bytes(seed);
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut msg = DOMAIN.to_vec();
    msg.extend_from_slice(&bytes);
    let j = Journal {
        format: JOURNAL_FORMAT.into(),
        case_id: body.case_id.clone(),
        body: b64(&bytes),
        signature: b64(&key.sign(&msg).to_bytes()),
    };
    let mut s = serde_json::to_string_pretty(&j).unwrap_or_default();
    s.push('\n');
    s
}

fn parse(text: &[u8]) -> Result<Journal> {
    if text.len() > MAX_TEXT {
        return Err(GlassCaseError::Format("the journal is too large".into()));
    }
    let j: Journal = serde_json::from_slice(text)
        .map_err(|e| GlassCaseError::Format(format!("not a glass-case journal: {e}")))?;
    if j.format != JOURNAL_FORMAT {
        return Err(GlassCaseError::Format(format!(
            "journal format {:.40?} (this breakglass reads {JOURNAL_FORMAT})",
            j.format
        )));
    }
    Ok(j)
}

/// The case a journal claims to be from (unverified: only to find the key to verify it with).
pub fn peek_case_id(text: &[u8]) -> Result<String> {
    Ok(parse(text)?.case_id)
}

/// Verifies a journal against the case's public key and returns its body.
pub fn verify_journal(text: &[u8], public_key: &[u8; 32]) -> Result<JournalBody> {
    let j = parse(text)?;
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| GlassCaseError::BadSignature)?;
    let bytes = unb64(&j.body).ok_or(GlassCaseError::BadSignature)?;
    let sig = unb64(&j.signature)
        .and_then(|s| <[u8; 64]>::try_from(s).ok())
        .map(|s| Signature::from_bytes(&s))
        .ok_or(GlassCaseError::BadSignature)?;
    let mut msg = DOMAIN.to_vec();
    msg.extend_from_slice(&bytes);
    key.verify_strict(&msg, &sig)
        .map_err(|_| GlassCaseError::BadSignature)?;
    let body: JournalBody = serde_json::from_slice(&bytes)
        .map_err(|e| GlassCaseError::Format(format!("the journal body is not valid: {e}")))?;
    if body.case_id != j.case_id {
        return Err(GlassCaseError::BadSignature);
    }
    if body.releases.len() > MAX_RELEASES {
        return Err(GlassCaseError::Format(format!(
            "the journal lists more than {MAX_RELEASES} releases"
        )));
    }
    Ok(body)
}

/// The public half of a journal seed, as stored by the server.
pub fn public_key_of(seed: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(seed).verifying_key().to_bytes()
}
