//! Audit-chain mathematics: canonical event encoding, the hash chain, the RFC 6962 Merkle tree,
//! signed checkpoints (C2SP signed-note format, Ed25519), the verifier and the export format.
//! Specified for third parties in `docs/AUDIT-FORMAT.md`.

mod columns;
pub mod export;
pub mod merkle;
pub mod note;
pub mod syslog;
mod verify;
pub mod witness;

pub use columns::check_columns;
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

/// The copies of body fields a store keeps in columns of its own, for indexed reads (SQLite:
/// `ts`, `kind`, `grant_id`). They are outside the hashed body, so a verifier of a store checks
/// them against it ([`Verifier::push_stored`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexColumns {
    pub ts_ms: i64,
    pub kind: String,
    pub grant_id: Option<String>,
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
    /// The note or checkpoint is malformed.
    #[error("malformed note: {0}")]
    Note(String),
    /// Well-formed, but no signature line by the expected key (name and key id).
    #[error("not signed by the expected key {key_name} (key id {key_id})")]
    NoSignature { key_name: String, key_id: String },
    /// A signature by the expected key that does not verify.
    #[error("signature invalid")]
    BadSignature,
}

/// The canonical JSON value of an event: keys sorted (serde_json's map is a BTreeMap), compact.
///
/// `data` is normalised so every body can be re-encoded byte for byte by any JSON library:
/// `null` becomes `{}`, any other non-object `x` becomes `{"value": x}`, and floating-point
/// numbers (never produced by the engine) become strings of their JSON text.
pub fn canonical_value(seq: u64, ev: &NewEvent) -> serde_json::Value {
    let data = match no_floats(ev.data.clone()) {
        serde_json::Value::Null => serde_json::Value::Object(serde_json::Map::new()),
        o @ serde_json::Value::Object(_) => o,
        other => serde_json::json!({ "value": other }),
    };
    serde_json::json!({
        "v": BODY_VERSION,
        "seq": seq,
        "ts": ev.ts_ms,
        "kind": ev.kind,
        "actor": ev.actor,
        "grant": ev.grant_id,
        "resource": ev.resource,
        "data": data,
    })
}

fn no_floats(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => Value::String(n.to_string()),
        Value::Array(a) => Value::Array(a.into_iter().map(no_floats).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, no_floats(v))).collect()),
        other => other,
    }
}

/// The top-level `seq` of a canonical version-1 body, read from its fixed tail
/// `,"seq":<n>,"ts":<n>,"v":1}` without parsing the JSON (the keys are sorted and `seq`, `ts`
/// and `v` are the last three). `None` if the body does not end that way.
pub fn body_seq(body: &[u8]) -> Option<u64> {
    /// Splits `s` into (rest, trailing decimal digits with an optional leading minus).
    fn trailing_int(s: &[u8], signed: bool) -> Option<(&[u8], &[u8])> {
        let digits = s.iter().rev().take_while(|b| b.is_ascii_digit()).count();
        let (mut rest, num) = s.split_at(s.len() - digits);
        if digits == 0 || digits > 20 || (digits > 1 && num.first() == Some(&b'0')) {
            return None;
        }
        if signed && let Some(r) = rest.strip_suffix(b"-") {
            rest = r;
        }
        Some((rest, num))
    }
    let rest = body.strip_suffix(br#","v":1}"#)?;
    let (rest, _ts) = trailing_int(rest, true)?;
    let rest = rest.strip_suffix(br#","ts":"#)?;
    let (rest, seq) = trailing_int(rest, false)?;
    rest.strip_suffix(br#","seq":"#)?;
    std::str::from_utf8(seq).ok()?.parse().ok()
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

/// Marks event data as a drill's (`"drill": true`) or a people drill's (`"training": <window>`)
/// when `grant` is one (for events written before the grant they belong to was built).
pub fn mark_practice(data: &mut serde_json::Value, grant: &crate::grant::GrantInfo) {
    let Some(o) = data.as_object_mut() else {
        return;
    };
    if grant.drill {
        o.insert("drill".into(), serde_json::Value::Bool(true));
    }
    if let Some(w) = &grant.training {
        o.insert("training".into(), serde_json::Value::String(w.clone()));
    }
}

/// An event at `now` of `kind` by `actor`, about `grant` (its id and resource) if any. Every
/// event of a drill grant carries `"drill": true` in its data, and
/// every event of a people-drill grant `"training": <window id>`.
pub fn event(
    now: crate::time::Timestamp,
    kind: &str,
    actor: Option<&str>,
    grant: Option<&crate::grant::GrantInfo>,
    mut data: serde_json::Value,
) -> NewEvent {
    if let Some(g) = grant {
        mark_practice(&mut data, g);
    }
    NewEvent {
        ts_ms: now.0,
        kind: kind.to_string(),
        actor: actor.map(String::from),
        grant_id: grant.map(|g| g.id.clone()),
        resource: grant.map(|g| g.resource.clone()),
        data,
    }
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

    #[test]
    fn data_is_normalised() {
        let mut e = ev("x");
        e.data = serde_json::Value::Null;
        assert!(
            String::from_utf8(seal(None, &e).body)
                .unwrap()
                .contains(r#""data":{}"#)
        );
        e.data = serde_json::json!([1, 2.5]);
        let body = String::from_utf8(seal(None, &e).body).unwrap();
        assert!(body.contains(r#""data":{"value":[1,"2.5"]}"#), "{body}");
        e.data = serde_json::json!({"f": 1.0, "n": -3});
        let body = String::from_utf8(seal(None, &e).body).unwrap();
        assert!(body.contains(r#""data":{"f":"1.0","n":-3}"#), "{body}");
    }

    #[test]
    fn body_seq_reads_the_tail() {
        for (body, want) in [
            (&br#"{"seq":5,"ts":1,"v":1}"#[..], None), // no comma before "seq": not ours
            (br#"{"resource":null,"seq":5,"ts":-1,"v":1}"#, Some(5)),
            (br#"{"a":1,"seq":0,"ts":0,"v":1}"#, Some(0)),
            (
                br#"{"a":1,"seq":18446744073709551615,"ts":0,"v":1}"#,
                Some(u64::MAX),
            ),
            (br#"{"a":1,"seq":18446744073709551616,"ts":0,"v":1}"#, None),
            (br#"{"a":1,"seq":05,"ts":0,"v":1}"#, None),
            (br#"{"a":1,"seq":5,"ts":01,"v":1}"#, None),
            (br#"{"a":1,"seq":-5,"ts":1,"v":1}"#, None),
            (br#"{"a":1,"seq":5,"ts":1,"v":2}"#, None),
            (br#"{"a":1,"seq":5,"ts":,"v":1}"#, None),
            (br#"{"a":1,"seq":5,"ts":1,"v":1} "#, None),
            (b"", None),
        ] {
            assert_eq!(body_seq(body), want, "{}", String::from_utf8_lossy(body));
        }
    }

    proptest::proptest! {
        #[test]
        fn body_seq_agrees_with_decode(seq in 1u64.., ts: i64, s in ".*", k in "[a-z]{0,8}", n: i64) {
            let e = NewEvent {
                ts_ms: ts,
                kind: s.clone(),
                actor: Some(s.clone()),
                grant_id: None,
                resource: Some(format!(",\"seq\":{n},\"ts\":1,\"v\":1}}")),
                data: serde_json::json!({ k: s, "seq": n, "v": [n] }),
            };
            let r = seal(Some(Head { seq: seq - 1, chain_hash: [0; 32] }), &e);
            proptest::prop_assert_eq!(body_seq(&r.body), Some(seq));
            let d = decode_body(&r.body).unwrap();
            proptest::prop_assert_eq!((d.seq, d.ts_ms, d.kind), (seq, ts, s));
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            proptest::prop_assert_eq!(canonical_bytes(&v), r.body);
        }
    }
}
