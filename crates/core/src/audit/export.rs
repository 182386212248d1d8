//! The export format: JSON lines, one object per line, `type` first among equals:
//!
//! ```text
//! {"type":"header","version":1,"origin":"breakglass/…","key_name":"breakglass/…","public_key":"<base64 32 bytes>"}
//! {"type":"event","seq":1,"event":{…canonical body…},"leaf":"<hex>","chain":"<hex>"}
//! {"type":"checkpoint","size":5,"note":"<signed note text>"}
//! ```
//! A checkpoint line follows the event whose seq equals its size. The verifier re-canonicalises
//! `event` (sorted keys, compact) to get back the exact bytes that were hashed.

use super::verify::{Verifier, VerifyError, VerifyErrorKind, VerifyReport};
use super::{AuditError, AuditRecord, canonical_bytes};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::BufRead;

/// Longest line accepted by the verifier.
pub const MAX_LINE: usize = 1024 * 1024;

pub fn header_line(origin: &str, key: &VerifyingKey) -> String {
    json!({"type": "header", "version": 1, "origin": origin, "key_name": origin, "public_key": B64.encode(key.as_bytes())}).to_string()
}

pub fn event_line(r: &AuditRecord) -> Result<String, AuditError> {
    let ev: Value = serde_json::from_slice(&r.body).map_err(|e| AuditError::Body(e.to_string()))?;
    Ok(json!({"type": "event", "seq": r.seq, "event": ev, "leaf": hex::encode(r.leaf_hash), "chain": hex::encode(r.chain_hash)}).to_string())
}

pub fn checkpoint_line(size: u64, note: &str) -> String {
    json!({"type": "checkpoint", "size": size, "note": note}).to_string()
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum Line {
    Header {
        version: u64,
        origin: String,
        key_name: String,
        public_key: String,
    },
    Event {
        seq: u64,
        event: Value,
        leaf: String,
        chain: String,
    },
    Checkpoint {
        size: u64,
        note: String,
    },
}

fn malformed(line_no: usize, msg: impl std::fmt::Display) -> VerifyError {
    VerifyError::new(
        None,
        VerifyErrorKind::Malformed,
        format!("export line {line_no}: {msg}"),
    )
}

fn hash32(s: &str, line_no: usize, what: &str) -> Result<[u8; 32], VerifyError> {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| malformed(line_no, format!("{what} is not 32 bytes of hex")))
}

/// Verifies an export. With `key` None, the header's own key is trusted (the caller should warn).
pub fn verify_export<R: BufRead>(
    mut input: R,
    key: Option<&VerifyingKey>,
) -> Result<VerifyReport, VerifyError> {
    let mut verifier: Option<Verifier> = None;
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        let n = std::io::Read::take(&mut input, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| malformed(line_no + 1, format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.len() > MAX_LINE {
            return Err(malformed(line_no, "line longer than 1 MiB"));
        }
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line: Line = serde_json::from_slice(text).map_err(|e| malformed(line_no, e))?;
        match (line, verifier.as_mut()) {
            (
                Line::Header {
                    version,
                    origin,
                    key_name,
                    public_key,
                },
                None,
            ) => {
                if version != 1 {
                    return Err(malformed(
                        line_no,
                        format!("unsupported export version {version}"),
                    ));
                }
                let embedded = B64
                    .decode(public_key)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                    .ok_or_else(|| malformed(line_no, "header public_key is not an Ed25519 key"))?;
                let k = key.copied().unwrap_or(embedded);
                verifier = Some(Verifier::new(k, key_name, origin));
            }
            (Line::Header { .. }, Some(_)) => return Err(malformed(line_no, "a second header")),
            (_, None) => {
                return Err(malformed(
                    line_no,
                    "the export must start with a header line",
                ));
            }
            (
                Line::Event {
                    seq,
                    event,
                    leaf,
                    chain,
                },
                Some(v),
            ) => {
                if !event.is_object() {
                    return Err(malformed(line_no, "event is not an object"));
                }
                let body = canonical_bytes(&event);
                let leaf = hash32(&leaf, line_no, "leaf")?;
                let chain = hash32(&chain, line_no, "chain")?;
                v.push(seq, &body, &leaf, &chain)?;
            }
            (Line::Checkpoint { size, note }, Some(v)) => {
                v.checkpoint(&note)?;
                if size != v.size() {
                    return Err(malformed(
                        line_no,
                        format!(
                            "checkpoint line says size {size} but its note covers {}",
                            v.size()
                        ),
                    ));
                }
            }
        }
    }
    match verifier {
        Some(v) => v.finish(),
        None => Err(malformed(0, "empty export: no header line")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Checkpoint, Head, NewEvent, merkle, seal};
    use super::*;
    use ed25519_dalek::SigningKey;

    fn export(n: u64) -> (String, VerifyingKey) {
        let sk = SigningKey::from_bytes(&[5; 32]);
        let mut out = header_line("o", &sk.verifying_key()) + "\n";
        let mut prev: Option<Head> = None;
        let mut leaves = Vec::new();
        for i in 0..n {
            let r = seal(
                prev,
                &NewEvent {
                    ts_ms: 1,
                    kind: "k".into(),
                    actor: Some("a".into()),
                    grant_id: None,
                    resource: None,
                    data: json!({"i": i, "s": "INC-1 ünïcode \"q\""}),
                },
            );
            prev = Some(Head {
                seq: r.seq,
                chain_hash: r.chain_hash,
            });
            leaves.push(r.leaf_hash);
            out += &(event_line(&r).unwrap() + "\n");
        }
        let cp = Checkpoint {
            origin: "o".into(),
            size: n,
            root: merkle::root(&leaves),
        }
        .sign(&sk, "o");
        out += &(checkpoint_line(n, &cp) + "\n");
        (out, sk.verifying_key())
    }

    #[test]
    fn round_trip_and_one_character_change() {
        let (text, key) = export(5);
        let r = verify_export(text.as_bytes(), Some(&key)).unwrap();
        assert_eq!((r.events, r.checkpoints), (5, 1));
        let bad = text.replacen("\"i\":2", "\"i\":7", 1);
        let e = verify_export(bad.as_bytes(), Some(&key)).unwrap_err();
        assert_eq!(e.seq, Some(3));
        let other = SigningKey::from_bytes(&[6; 32]).verifying_key();
        assert!(verify_export(text.as_bytes(), Some(&other)).is_err());
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let (text, key) = export(2);
        let body = text.lines().nth(1).unwrap().to_string();
        for junk in [
            String::new(),
            "garbage".into(),
            body.clone(),
            format!(
                "{}\n{}",
                text.lines().next().unwrap(),
                "{\"type\":\"event\"}"
            ),
            format!(
                "{}\n{}",
                text.lines().next().unwrap(),
                "{\"type\":\"event\",\"seq\":1,\"event\":[],\"leaf\":\"00\",\"chain\":\"00\"}"
            ),
            format!(
                "{}\n{}",
                text.lines().next().unwrap(),
                "{\"type\":\"checkpoint\",\"size\":1,\"note\":\"x\"}"
            ),
            "x".repeat(MAX_LINE + 10),
            format!(
                "{}\n{}",
                text.lines().next().unwrap(),
                text.lines().next().unwrap()
            ),
        ] {
            assert!(verify_export(junk.as_bytes(), Some(&key)).is_err());
        }
    }
}
