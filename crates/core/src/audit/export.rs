//! The export format: JSON lines, one object per line, told apart by `"type"`:
//!
//! ```text
//! {"type":"header","version":1,"origin":"breakglass/…","key_name":"breakglass/…","public_key":"<base64 32 bytes>"}
//! {"type":"event","seq":1,"event":{…canonical body…},"leaf":"<hex>","chain":"<hex>"}
//! {"type":"checkpoint","size":5,"note":"<signed note text>"}
//! ```
//! The header comes first; a checkpoint line follows the event whose seq equals its size, or
//! comes after all events when it covers more (which means the log was truncated). The
//! verifier re-canonicalises `event` (sorted keys, compact) to get back the exact bytes that
//! were hashed.

use super::verify::{Verifier, VerifyError, VerifyErrorKind, VerifyReport};
use super::{AuditError, AuditRecord, BODY_VERSION, canonical_bytes};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{BufRead, Read};

/// Longest line accepted by the verifier (without its newline).
pub const MAX_LINE: usize = 1024 * 1024;
/// Version of the export format.
pub const EXPORT_VERSION: u64 = 1;

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ExportLine {
    Header {
        /// Always [`EXPORT_VERSION`].
        version: u64,
        origin: String,
        key_name: String,
        /// Base64 of the raw 32-byte Ed25519 public key.
        public_key: String,
    },
    Event {
        seq: u64,
        /// The canonical body, as a JSON object.
        event: Value,
        /// Hex leaf hash.
        leaf: String,
        /// Hex chain hash.
        chain: String,
    },
    Checkpoint {
        size: u64,
        /// The signed note text.
        note: String,
    },
}

impl ExportLine {
    pub fn header(origin: &str, key_name: &str, key: &VerifyingKey) -> Self {
        ExportLine::Header {
            version: EXPORT_VERSION,
            origin: origin.to_string(),
            key_name: key_name.to_string(),
            public_key: B64.encode(key.as_bytes()),
        }
    }

    pub fn event(r: &AuditRecord) -> Result<Self, AuditError> {
        let event: Value =
            serde_json::from_slice(&r.body).map_err(|e| AuditError::Body(e.to_string()))?;
        Ok(ExportLine::Event {
            seq: r.seq,
            event,
            leaf: hex::encode(r.leaf_hash),
            chain: hex::encode(r.chain_hash),
        })
    }

    pub fn checkpoint(size: u64, note: &str) -> Self {
        ExportLine::Checkpoint {
            size,
            note: note.to_string(),
        }
    }
}

/// One line of JSON, without the newline.
pub fn export_line(line: &ExportLine) -> String {
    // Serialising strings, integers and a JSON value cannot fail.
    serde_json::to_string(line).unwrap_or_default()
}

/// The header line; the key name is the origin (as the server signs).
pub fn header_line(origin: &str, key: &VerifyingKey) -> String {
    export_line(&ExportLine::header(origin, origin, key))
}

pub fn event_line(r: &AuditRecord) -> Result<String, AuditError> {
    Ok(export_line(&ExportLine::event(r)?))
}

pub fn checkpoint_line(size: u64, note: &str) -> String {
    export_line(&ExportLine::checkpoint(size, note))
}

fn malformed(line_no: u64, seq: Option<u64>, msg: impl std::fmt::Display) -> VerifyError {
    let at = match seq {
        Some(s) => format!("export line {line_no} (event {s})"),
        None => format!("export line {line_no}"),
    };
    VerifyError::new(seq, VerifyErrorKind::Malformed, format!("{at}: {msg}"))
}

fn hash32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(s).ok()?.try_into().ok()
}

/// The first floating-point number in `v`, as a JSON path.
fn find_float(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::Number(n) if n.is_f64() => Some(path.to_string()),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| find_float(x, &format!("{path}[{i}]"))),
        Value::Object(o) => o
            .iter()
            .find_map(|(k, x)| find_float(x, &format!("{path}.{k}"))),
        _ => None,
    }
}

/// Checks an exported event object has exactly the fields and types of a version-1 body.
fn check_event(ev: &Value) -> Result<(), String> {
    let Value::Object(o) = ev else {
        return Err("\"event\" is not a JSON object".into());
    };
    const KEYS: [&str; 8] = [
        "actor", "data", "grant", "kind", "resource", "seq", "ts", "v",
    ];
    if let Some(k) = o.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("event has an unknown field {k:?}"));
    }
    if let Some(k) = KEYS.iter().find(|k| !o.contains_key(**k)) {
        return Err(format!("event has no {k:?} field"));
    }
    let field = |k: &str| o.get(k).unwrap_or(&Value::Null);
    if field("v").as_u64() != Some(BODY_VERSION) {
        return Err(format!("event \"v\" is not {BODY_VERSION}"));
    }
    if field("seq").as_u64().is_none() {
        return Err("event \"seq\" is not a non-negative integer".into());
    }
    if field("ts").as_i64().is_none() {
        return Err("event \"ts\" is not an integer".into());
    }
    if !field("kind").is_string() {
        return Err("event \"kind\" is not a string".into());
    }
    for k in ["actor", "grant", "resource"] {
        if !(field(k).is_string() || field(k).is_null()) {
            return Err(format!("event {k:?} is neither a string nor null"));
        }
    }
    if !field("data").is_object() {
        return Err("event \"data\" is not an object".into());
    }
    if let Some(p) = find_float(ev, "event") {
        return Err(format!(
            "{p} is a floating-point number (only integers are allowed)"
        ));
    }
    Ok(())
}

/// Verifies an export. With `key` None, the header's own key is trusted (the caller should
/// warn: that only proves the export is self-consistent). With a key, the header must name it.
pub fn verify_export<R: BufRead>(
    input: R,
    key: Option<&VerifyingKey>,
) -> Result<VerifyReport, VerifyError> {
    verify_export_inner(input, key, None).map(|(r, _)| r)
}

/// [`verify_export`], also returning the export's origin and the leaf hashes of its events
/// (verified), for checking it against witnessed checkpoints ([`super::witness`]).
pub fn verify_export_leaves<R: BufRead>(
    input: R,
    key: &VerifyingKey,
) -> Result<(VerifyReport, String, Vec<super::merkle::Hash>), VerifyError> {
    let mut leaves = Vec::new();
    let (report, origin) = verify_export_inner(input, Some(key), Some(&mut leaves))?;
    Ok((report, origin, leaves))
}

fn verify_export_inner<R: BufRead>(
    mut input: R,
    key: Option<&VerifyingKey>,
    mut leaves: Option<&mut Vec<super::merkle::Hash>>,
) -> Result<(VerifyReport, String), VerifyError> {
    let mut verifier: Option<Verifier> = None;
    let mut export_origin = String::new();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = (&mut input)
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut buf)
            .map_err(|e| malformed(line_no + 1, None, format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.len() > MAX_LINE {
            return Err(malformed(line_no, None, "line longer than 1 MiB"));
        }
        if text.is_empty() {
            continue;
        }
        let line: ExportLine = serde_json::from_slice(text).map_err(|e| {
            malformed(
                line_no,
                None,
                format!("not a header, event or checkpoint line: {e}"),
            )
        })?;
        match (line, verifier.as_mut()) {
            (
                ExportLine::Header {
                    version,
                    origin,
                    key_name,
                    public_key,
                },
                None,
            ) => {
                if version != EXPORT_VERSION {
                    return Err(malformed(
                        line_no,
                        None,
                        format!("unsupported export version {version}"),
                    ));
                }
                let embedded = B64
                    .decode(public_key)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                    .ok_or_else(|| {
                        malformed(line_no, None, "header public_key is not an Ed25519 key")
                    })?;
                if let Some(k) = key
                    && *k != embedded
                {
                    return Err(VerifyError::new(
                        None,
                        VerifyErrorKind::BadSignature,
                        "export header: its public key is not the trusted key given (the export was not signed by it)",
                    ));
                }
                export_origin.clone_from(&origin);
                verifier = Some(Verifier::new(
                    key.copied().unwrap_or(embedded),
                    key_name,
                    origin,
                ));
            }
            (ExportLine::Header { .. }, Some(_)) => {
                return Err(malformed(line_no, None, "a second header line"));
            }
            (_, None) => {
                return Err(malformed(
                    line_no,
                    None,
                    "the export must start with a header line",
                ));
            }
            (
                ExportLine::Event {
                    seq,
                    event,
                    leaf,
                    chain,
                },
                Some(v),
            ) => {
                check_event(&event).map_err(|m| malformed(line_no, Some(seq), m))?;
                let leaf = hash32(&leaf).ok_or_else(|| {
                    malformed(line_no, Some(seq), "leaf is not 64 lowercase hex digits")
                })?;
                let chain = hash32(&chain).ok_or_else(|| {
                    malformed(line_no, Some(seq), "chain is not 64 lowercase hex digits")
                })?;
                v.push(seq, &canonical_bytes(&event), &leaf, &chain)?;
                if let Some(l) = leaves.as_deref_mut() {
                    l.push(leaf);
                }
            }
            (ExportLine::Checkpoint { size, note }, Some(v)) => {
                v.checkpoint(&note)?;
                if size != v.size() {
                    return Err(malformed(
                        line_no,
                        None,
                        format!(
                            "checkpoint line says size {size} but its signed note covers {}",
                            v.size()
                        ),
                    ));
                }
            }
        }
    }
    match verifier {
        Some(v) => v.finish().map(|r| (r, export_origin)),
        None => Err(malformed(
            line_no.max(1),
            None,
            "empty export: no header line",
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::super::{Checkpoint, Head, NewEvent, merkle, seal};
    use super::*;
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    fn sk() -> SigningKey {
        SigningKey::from_bytes(&[5; 32])
    }

    /// An export of `n` events with checkpoints at every size in `cps`.
    fn export(n: u64, cps: &[u64]) -> String {
        let mut out = header_line("o", &sk().verifying_key()) + "\n";
        let mut prev: Option<Head> = None;
        let mut leaves = Vec::new();
        let cp_line = |leaves: &[merkle::Hash], size: u64| {
            let note = Checkpoint {
                origin: "o".into(),
                size,
                root: merkle::root(&leaves[..size as usize]),
            }
            .sign(&sk(), "o");
            checkpoint_line(size, &note) + "\n"
        };
        for i in 0..n {
            let r = seal(
                prev,
                &NewEvent {
                    ts_ms: -5,
                    kind: "k".into(),
                    actor: Some("a".into()),
                    grant_id: None,
                    resource: None,
                    data: json!({"i": i, "s": "INC-1 ünïcode \"q\" \u{1} /", "big": u64::MAX, "neg": i64::MIN, "nested": {"z": [1, true, null], "a": {}}}),
                },
            );
            prev = Some(Head {
                seq: r.seq,
                chain_hash: r.chain_hash,
            });
            leaves.push(r.leaf_hash);
            out += &(event_line(&r).unwrap() + "\n");
            if cps.contains(&r.seq) {
                out += &cp_line(&leaves, r.seq);
            }
        }
        out
    }

    fn verify(text: &str) -> Result<VerifyReport, VerifyError> {
        verify_export(text.as_bytes(), Some(&sk().verifying_key()))
    }

    #[test]
    fn lines_have_the_documented_shape() {
        let text = export(1, &[1]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with(
            r#"{"type":"header","version":1,"origin":"o","key_name":"o","public_key":""#
        ));
        assert!(lines[1].starts_with(r#"{"type":"event","seq":1,"event":{"actor":"a","data":"#));
        assert!(lines[2].starts_with(r#"{"type":"checkpoint","size":1,"note":"o\n1\n"#));
        for l in &lines {
            let back: ExportLine = serde_json::from_str(l).unwrap();
            assert_eq!(export_line(&back), *l);
        }
    }

    #[test]
    fn round_trip_and_one_character_change() {
        let text = export(5, &[3, 5]);
        let r = verify(&text).unwrap();
        assert_eq!((r.events, r.checkpoints, r.unsigned_tail), (5, 2, 0));
        // CRLF line ends and a trailing blank line are fine.
        assert!(verify(&(text.replace('\n', "\r\n") + "\n")).is_ok());
        // Without a trusted key the header's key is used.
        assert!(verify_export(text.as_bytes(), None).is_ok());
        let bad = text.replacen("\"i\":2", "\"i\":7", 1);
        let e = verify(&bad).unwrap_err();
        assert_eq!((e.seq, e.kind), (Some(3), VerifyErrorKind::Modified));
        // A different trusted key: refused up front.
        let other = SigningKey::from_bytes(&[6; 32]).verifying_key();
        let e = verify_export(text.as_bytes(), Some(&other)).unwrap_err();
        assert_eq!(e.kind, VerifyErrorKind::BadSignature);
    }

    #[test]
    fn deleted_reordered_and_truncated_exports() {
        let text = export(6, &[2, 6]);
        let lines: Vec<&str> = text.lines().collect();
        // header, e1, e2, cp2, e3, e4, e5, e6, cp6
        let join = |idx: &[usize]| idx.iter().map(|&i| lines[i]).collect::<Vec<_>>().join("\n");
        let e = verify(&join(&[0, 1, 2, 3, 4, 6, 7, 8])).unwrap_err();
        assert_eq!((e.seq, e.kind), (Some(4), VerifyErrorKind::Missing));
        let e = verify(&join(&[0, 1, 2, 3, 5, 4, 6, 7, 8])).unwrap_err();
        assert_eq!((e.seq, e.kind), (Some(3), VerifyErrorKind::Missing));
        let e = verify(&join(&[0, 1, 2, 3, 4, 5, 8])).unwrap_err();
        assert_eq!((e.seq, e.kind), (Some(5), VerifyErrorKind::Truncated));
        // A checkpoint line moved later than its event.
        let e = verify(&join(&[0, 1, 2, 4, 3, 5, 6, 7, 8])).unwrap_err();
        assert_eq!(e.kind, VerifyErrorKind::BadCheckpoint);
        // A checkpoint line whose size field disagrees with its note.
        let wrong = text.replacen("\"size\":2,", "\"size\":3,", 1);
        assert_eq!(verify(&wrong).unwrap_err().kind, VerifyErrorKind::Malformed);
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let text = export(2, &[2]);
        let header = text.lines().next().unwrap();
        let ev1 = text.lines().nth(1).unwrap();
        let with = |l: &str| format!("{header}\n{l}\n");
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty export"),
            ("garbage".into(), "not a header"),
            ("\u{0}\u{ff}\n".into(), "not a header"),
            (ev1.to_string(), "must start with a header"),
            (with("{\"type\":\"event\"}"), "not a header"),
            (with("{\"type\":\"nope\"}"), "not a header"),
            (with("[]"), "not a header"),
            (
                with(&ev1.replacen("\"seq\":1,", "\"seq\":\"1\",", 1)),
                "not a header",
            ),
            (
                with(&ev1.replacen("\"type\":\"event\",", "\"type\":\"event\",\"x\":1,", 1)),
                "unknown field",
            ),
            (
                with(
                    "{\"type\":\"event\",\"seq\":1,\"event\":[],\"leaf\":\"00\",\"chain\":\"00\"}",
                ),
                "not a JSON object",
            ),
            (
                with(&ev1.replacen("\"i\":0", "\"i\":0.5", 1)),
                "floating-point",
            ),
            (
                with(&ev1.replacen("\"i\":0", "\"i\":1e3", 1)),
                "floating-point",
            ),
            (
                with(&ev1.replacen("\"i\":0", "\"i\":99999999999999999999999", 1)),
                "floating-point",
            ),
            (
                with(&ev1.replacen("\"ts\":-5", "\"ts\":\"-5\"", 1)),
                "\"ts\"",
            ),
            (with(&ev1.replacen("\"v\":1", "\"v\":2", 1)), "\"v\""),
            (with(&ev1.replacen("\"kind\":\"k\",", "", 1)), "no \"kind\""),
            (
                with(&ev1.replacen("\"kind\":\"k\",", "\"kind\":\"k\",\"extra\":1,", 1)),
                "unknown field \"extra\"",
            ),
            (
                with(&ev1.replacen("\"leaf\":\"", "\"leaf\":\"zz", 1)),
                "leaf",
            ),
            (
                with(&ev1.to_uppercase().replacen("\"TYPE\"", "\"type\"", 1)),
                "not a header",
            ),
            (
                with("{\"type\":\"checkpoint\",\"size\":1,\"note\":\"x\"}"),
                "checkpoint",
            ),
            (with(&"[".repeat(100_000)), "not a header"),
            (
                with(&format!("\"{}\"", "x".repeat(MAX_LINE + 10))),
                "longer than 1 MiB",
            ),
            (format!("{header}\n{header}\n"), "second header"),
            (
                header.replacen("\"version\":1", "\"version\":2", 1),
                "unsupported export version",
            ),
            (
                header.replacen("\"public_key\":\"", "\"public_key\":\"AA", 1),
                "not an Ed25519 key",
            ),
        ];
        for (input, want) in cases {
            let e = verify(&input).unwrap_err();
            assert!(
                e.to_string().contains(want),
                "input {:.200?}: got {e}, wanted {want:?}",
                input
            );
        }
        // A single line over the limit without any newline at all.
        let huge = "x".repeat(3 * MAX_LINE);
        assert!(verify(&huge).unwrap_err().to_string().contains("1 MiB"));
    }
}
