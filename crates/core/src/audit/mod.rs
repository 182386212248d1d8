//! Audit-chain mathematics: canonical event encoding, the hash chain, the RFC 6962 Merkle tree,
//! signed checkpoints (C2SP signed-note format, Ed25519), the verifier and the export format.
//! Specified for third parties in `docs/AUDIT-FORMAT.md`.

pub mod export;
pub mod merkle;
mod note;
mod verify;

pub use note::{Checkpoint, key_id, public_key_pem};
pub use verify::{Verifier, VerifyError, VerifyErrorKind, VerifyReport};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Version of the canonical body encoding.
pub const BODY_VERSION: u64 = 1;

/// An event the engine wants recorded (before it gets a sequence number).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Unix milliseconds.
    pub ts_ms: i64,
    /// e.g. `grant.requested`, `grant.refused`, `mfa.locked`.
    pub kind: String,
    /// User name, `system` or `operator:<login>`.
    pub actor: Option<String>,
    pub grant_id: Option<String>,
    pub resource: Option<String>,
    /// Event details: objects, strings, integers, booleans (no floats).
    pub data: serde_json::Value,
}

/// A sealed, durable record as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// 1-based, contiguous.
    pub seq: u64,
    /// Canonical JSON bytes of the event (includes `seq`).
    pub body: Vec<u8>,
    /// RFC 6962 leaf hash: SHA-256(0x00 ‖ body).
    pub leaf_hash: [u8; 32],
    /// SHA-256(previous chain hash ‖ leaf hash); the previous of event 1 is 32 zero bytes.
    pub chain_hash: [u8; 32],
}

/// The head of the log after some record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub chain_hash: [u8; 32],
}

/// A body decoded back into its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodedEvent {
    pub seq: u64,
    pub ts_ms: i64,
    pub kind: String,
    pub actor: Option<String>,
    pub grant_id: Option<String>,
    pub resource: Option<String>,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuditError {
    #[error("audit body is not canonical JSON: {0}")]
    Body(String),
    #[error("checkpoint note: {0}")]
    Note(String),
}

/// The canonical JSON value of an event: keys sorted (serde_json's map is a BTreeMap), compact.
pub fn canonical_value(seq: u64, ev: &NewEvent) -> serde_json::Value {
    serde_json::json!({
        "v": BODY_VERSION,
        "seq": seq,
        "ts": ev.ts_ms,
        "kind": ev.kind,
        "actor": ev.actor,
        "grant": ev.grant_id,
        "resource": ev.resource,
        "data": ev.data,
    })
}

/// Canonical bytes of a JSON value: compact, object keys sorted by code point.
pub fn canonical_bytes(v: &serde_json::Value) -> Vec<u8> {
    // serde_json::Value's objects are BTreeMaps (no `preserve_order` feature), so keys are sorted;
    // to_vec writes no whitespace. Serialising a Value cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// SHA-256(prev ‖ leaf).
pub fn chain_hash(prev: &[u8; 32], leaf: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(leaf);
    h.finalize().into()
}

/// Seals an event after `prev` (None for the first record).
pub fn seal(prev: Option<Head>, ev: &NewEvent) -> AuditRecord {
    let seq = prev.map(|h| h.seq + 1).unwrap_or(1);
    let prev_chain = prev.map(|h| h.chain_hash).unwrap_or([0u8; 32]);
    let body = canonical_bytes(&canonical_value(seq, ev));
    let leaf_hash = merkle::leaf_hash(&body);
    AuditRecord {
        seq,
        chain_hash: chain_hash(&prev_chain, &leaf_hash),
        leaf_hash,
        body,
    }
}

/// Parses a stored body back into its fields.
pub fn decode_body(body: &[u8]) -> Result<DecodedEvent, AuditError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        v: u64,
        seq: u64,
        ts: i64,
        kind: String,
        actor: Option<String>,
        grant: Option<String>,
        resource: Option<String>,
        data: serde_json::Value,
    }
    let r: Raw = serde_json::from_slice(body).map_err(|e| AuditError::Body(e.to_string()))?;
    if r.v != BODY_VERSION {
        return Err(AuditError::Body(format!("unknown body version {}", r.v)));
    }
    Ok(DecodedEvent {
        seq: r.seq,
        ts_ms: r.ts,
        kind: r.kind,
        actor: r.actor,
        grant_id: r.grant,
        resource: r.resource,
        data: r.data,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ev(kind: &str) -> NewEvent {
        NewEvent {
            ts_ms: 1_700_000_000_000,
            kind: kind.into(),
            actor: Some("alice".into()),
            grant_id: Some("g-1".into()),
            resource: Some("prod-db".into()),
            data: serde_json::json!({"z": 1, "a": "é\"\n"}),
        }
    }

    #[test]
    fn body_is_canonical_and_round_trips() {
        let r = seal(None, &ev("grant.requested"));
        assert_eq!(r.seq, 1);
        let text = String::from_utf8(r.body.clone()).unwrap();
        assert_eq!(
            text,
            r#"{"actor":"alice","data":{"a":"é\"\n","z":1},"grant":"g-1","kind":"grant.requested","resource":"prod-db","seq":1,"ts":1700000000000,"v":1}"#
        );
        let d = decode_body(&r.body).unwrap();
        assert_eq!(d.kind, "grant.requested");
        assert_eq!(d.seq, 1);
        // Re-canonicalising the parsed value gives the same bytes.
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(canonical_bytes(&v), r.body);
    }

    #[test]
    fn chain_links() {
        let a = seal(None, &ev("a"));
        let b = seal(
            Some(Head {
                seq: 1,
                chain_hash: a.chain_hash,
            }),
            &ev("b"),
        );
        assert_eq!(b.seq, 2);
        assert_eq!(b.chain_hash, chain_hash(&a.chain_hash, &b.leaf_hash));
        assert_eq!(a.chain_hash, chain_hash(&[0; 32], &a.leaf_hash));
    }
}
