//! Audit events as RFC 5424 syslog messages, framed for a TCP stream by octet counting
//! (RFC 5425 §4.3, RFC 6587 §3.4.1), and as inert JSON lines for a file.
//!
//! ```text
//! 412 <109>1 2026-11-22T02:17:00.123Z bg-prod-1 breakglass - grant.activated [breakglass@32473 seq="42" leaf="…" chain="…" origin="breakglass/3f9a…" actor="bob" grant="g-9f2c…" resource="prod-db"] BOM{…the event body…}
//! ```
//!
//! - PRI = facility × 8 + severity: warning (4) for refusals, failures, lock-outs and anomalies,
//!   notice (5) for everything else.
//! - MSGID is the event kind; the structured data carries the audit `seq` (to de-duplicate an
//!   at-least-once delivery and to spot gaps), the event's `leaf` hash and `chain` hash
//!   (AUDIT-FORMAT §2, to cross-check against an export or the store), and its origin.
//! - MSG is the UTF-8 BOM then the canonical body ([`inert_json`]: the same JSON value, with
//!   every control, line-separator and bidi character written as a `\uXXXX` escape), so a SIEM
//!   can parse it, and re-encoding it canonically gives back the bytes the leaf hash covers.
//!   No raw newline or control character is ever in a message: requester text is inert.
//! - SD-PARAM values escape `"`, `\` and `]` (RFC 5424 §6.3.3); header fields are printable
//!   US-ASCII without spaces, or `-`.

use super::{AuditError, AuditRecord, decode_body};
use crate::time::{Timestamp, rfc3339};
use std::fmt::Write as _;

/// The SD-ID of our structured data: name@<the RFC 5612 documentation enterprise number>.
pub const SD_ID: &str = "breakglass@32473";
/// APP-NAME.
pub const APP_NAME: &str = "breakglass";
const BOM: &str = "\u{FEFF}";

/// What a message needs besides the event.
#[derive(Debug, Clone)]
pub struct Format<'a> {
    /// RFC 5424 facility code (0–23).
    pub facility: u8,
    /// HOSTNAME field.
    pub hostname: &'a str,
    /// The log's origin (`breakglass/<install id>`).
    pub origin: &'a str,
    /// Longest SYSLOG-MSG in bytes; the MSG of a longer one is cut (at a character boundary)
    /// and the structured data says `truncated="<MSG bytes before the cut>"`.
    pub max_message: usize,
}

/// Severity of an event kind: warning for what a security team must look at, else notice.
pub fn severity(kind: &str) -> u8 {
    const WARN: &[&str] = &[
        "fail",
        "refused",
        "locked",
        "dead_lettered",
        "gap",
        "capped",
        "burst",
        "overdue",
        "anomaly",
        "must_rotate",
        "orphan",
    ];
    if WARN.iter().any(|w| kind.contains(w)) {
        4
    } else {
        5
    }
}

/// Whether `c` must not appear raw in anything a SIEM or a terminal shows: control characters
/// (C0, DEL, C1: ANSI escapes start with ESC or CSI), line and paragraph separators, and the
/// invisible and bidirectional formatting characters that make text read differently.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
}

/// Compact JSON text with every [`is_unsafe_char`] written as a `\uXXXX` escape: the same
/// JSON value, safe to print. (In compact JSON such characters can only be inside strings.)
pub fn inert_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if is_unsafe_char(c) {
            // Every unsafe character is in the Basic Multilingual Plane: one escape each.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// An SD-PARAM value: `"`, `\` and `]` escaped with a backslash; unsafe characters written as
/// `\\uXXXX` (a literal backslash, then `uXXXX`).
pub fn sd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c if is_unsafe_char(c) => {
                let _ = write!(out, "\\\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// A header field (HOSTNAME, MSGID): printable US-ASCII without spaces, at most `max`
/// characters; anything else becomes `_`; empty is the NILVALUE `-`.
pub fn header_field(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if out.is_empty() { "-".into() } else { out }
}

/// The SYSLOG-MSG of one stored event.
pub fn message(f: &Format<'_>, r: &AuditRecord) -> Result<String, AuditError> {
    let ev = decode_body(&r.body)?;
    let body = std::str::from_utf8(&r.body).map_err(|e| AuditError::Body(e.to_string()))?;
    let pri = u32::from(f.facility.min(23)) * 8 + u32::from(severity(&ev.kind));
    let mut out = format!(
        "<{pri}>1 {} {} {APP_NAME} - {} [{SD_ID} seq=\"{}\" leaf=\"{}\" chain=\"{}\" origin=\"{}\"",
        rfc3339(Timestamp(ev.ts_ms)),
        header_field(f.hostname, 255),
        header_field(&ev.kind, 32),
        r.seq,
        hex::encode(r.leaf_hash),
        hex::encode(r.chain_hash),
        sd_escape(f.origin),
    );
    for (name, value) in [
        ("actor", &ev.actor),
        ("grant", &ev.grant_id),
        ("resource", &ev.resource),
    ] {
        if let Some(v) = value {
            let _ = write!(out, " {name}=\"{}\"", sd_escape(v));
        }
    }
    let msg = inert_json(body);
    // "] " + BOM + MSG must fit.
    let room = f.max_message.saturating_sub(out.len() + 2 + BOM.len());
    if msg.len() <= room {
        out.push_str("] ");
        out.push_str(BOM);
        out.push_str(&msg);
    } else {
        let note = format!(" truncated=\"{}\"", msg.len());
        let mut cut = room.saturating_sub(note.len());
        while cut > 0 && !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&note);
        out.push_str("] ");
        out.push_str(BOM);
        out.push_str(msg.get(..cut).unwrap_or(""));
    }
    Ok(out)
}

/// One octet-counted frame: `MSG-LEN SP SYSLOG-MSG`.
pub fn frame(f: &Format<'_>, r: &AuditRecord) -> Result<Vec<u8>, AuditError> {
    let msg = message(f, r)?;
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg.as_bytes());
    Ok(out)
}

/// One line of a JSON-lines stream (with its `\n`): the export's event line (AUDIT-FORMAT §4:
/// `seq`, `event`, `leaf`, `chain`), made inert ([`inert_json`]).
pub fn jsonl_line(r: &AuditRecord) -> Result<String, AuditError> {
    let mut line = inert_json(&super::export::event_line(r)?);
    line.push('\n');
    Ok(line)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::super::{NewEvent, seal};
    use super::*;
    use serde_json::{Value, json};

    fn rec(reason: &str, actor: Option<&str>) -> AuditRecord {
        seal(
            None,
            &NewEvent {
                ts_ms: 1_795_313_820_123,
                kind: "grant.requested".into(),
                actor: actor.map(String::from),
                grant_id: Some("g-1".into()),
                resource: Some("prod-db".into()),
                data: json!({"reason": reason}),
            },
        )
    }

    const F: Format<'static> = Format {
        facility: 13,
        hostname: "bg-1",
        origin: "breakglass/t",
        max_message: 65_536,
    };

    /// A strict reader of what we write: header, SD params (unescaped), MSG.
    fn parse(frame: &[u8]) -> (Vec<String>, Vec<(String, String)>, String) {
        let text = std::str::from_utf8(frame).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        let mut parts = msg.splitn(7, ' ');
        let header: Vec<String> = (0..6).map(|_| parts.next().unwrap().to_string()).collect();
        let rest = parts.next().unwrap();
        let rest = rest.strip_prefix('[').unwrap();
        let (id, mut rest) = rest.split_once(' ').unwrap();
        assert_eq!(id, SD_ID);
        let mut params = Vec::new();
        loop {
            let (name, after) = rest.split_once("=\"").unwrap();
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next().unwrap();
                match c {
                    '\\' => {
                        let (_, n) = chars.next().unwrap();
                        if !matches!(n, '"' | '\\' | ']') {
                            value.push('\\');
                        }
                        value.push(n);
                    }
                    '"' => break i,
                    ']' => panic!("unescaped ] in {after}"),
                    c => value.push(c),
                }
            };
            params.push((name.to_string(), value));
            rest = &after[end + 1..];
            if let Some(r) = rest.strip_prefix(' ') {
                rest = r;
            } else {
                rest = rest.strip_prefix("] ").unwrap();
                break;
            }
        }
        let msg = rest.strip_prefix(BOM).unwrap().to_string();
        (header, params, msg)
    }

    #[test]
    fn a_message_names_the_event_and_carries_its_body() {
        let r = rec("orders table locked", Some("bob"));
        let (h, p, msg) = parse(&frame(&F, &r).unwrap());
        assert_eq!(
            h,
            [
                "<109>1",
                "2026-11-22T02:17:00.123Z",
                "bg-1",
                "breakglass",
                "-",
                "grant.requested"
            ]
        );
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("seq").as_deref(), Some("1"));
        assert_eq!(get("leaf").unwrap(), hex::encode(r.leaf_hash));
        assert_eq!(get("chain").unwrap(), hex::encode(r.chain_hash));
        assert_eq!(get("origin").as_deref(), Some("breakglass/t"));
        assert_eq!(get("actor").as_deref(), Some("bob"));
        assert_eq!(get("grant").as_deref(), Some("g-1"));
        // The MSG re-encodes to the hashed body.
        let v: Value = serde_json::from_str(&msg).unwrap();
        assert_eq!(super::super::canonical_bytes(&v), r.body);
        assert_eq!(severity("grant.refused"), 4);
        assert_eq!(severity("grant.activated"), 5);
    }

    #[test]
    fn hostile_text_arrives_inert() {
        let hostile =
            "x\"] [evil@1 a=\"b\"]\n<13>1 - fake\r\u{1b}[31mred\u{9b}2J\u{7f}\u{202e}txt\\";
        let r = rec(hostile, Some(hostile));
        let f = frame(&F, &r).unwrap();
        // Nothing unsafe but the one BOM that starts the MSG (RFC 5424 §6.4).
        let text = std::str::from_utf8(&f).unwrap().replacen(BOM, "", 1);
        assert!(!text.chars().any(is_unsafe_char), "{text:?}");
        let (_, p, msg) = parse(&f);
        // The actor SD value reads back as the text, unsafe characters as \uXXXX.
        let actor = &p.iter().find(|(n, _)| n == "actor").unwrap().1;
        assert_eq!(
            actor,
            "x\"] [evil@1 a=\"b\"]\\u000a<13>1 - fake\\u000d\\u001b[31mred\\u009b2J\\u007f\\u202etxt\\"
        );
        assert_eq!(p.len(), 7, "no parameter injected: {p:?}");
        // The MSG is the same JSON value: the reason reads back exactly.
        let v: Value = serde_json::from_str(&msg).unwrap();
        assert_eq!(v["data"]["reason"], hostile);
        assert_eq!(super::super::canonical_bytes(&v), r.body);
        // The JSON line too.
        let line = jsonl_line(&r).unwrap();
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        assert!(!line.trim_end().chars().any(is_unsafe_char));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"]["data"]["reason"], hostile);
        assert_eq!(v["seq"], 1);
        assert_eq!(v["leaf"], hex::encode(r.leaf_hash));
    }

    #[test]
    fn header_fields_are_printable_ascii() {
        assert_eq!(header_field("", 10), "-");
        assert_eq!(header_field("a b\nc", 10), "a_b_c");
        assert_eq!(header_field("é", 10), "_");
        assert_eq!(header_field(&"k".repeat(40), 32).len(), 32);
    }

    #[test]
    fn a_long_message_is_cut_and_says_so() {
        let r = rec(&"é".repeat(5000), None);
        let f = Format {
            max_message: 2048,
            ..F
        };
        let m = message(&f, &r).unwrap();
        assert!(m.len() <= 2048, "{}", m.len());
        let fr = frame(&f, &r).unwrap();
        let (_, p, msg) = parse(&fr);
        let full = inert_json(std::str::from_utf8(&r.body).unwrap()).len();
        assert!(
            p.contains(&("truncated".to_string(), full.to_string())),
            "{p:?}"
        );
        assert!(full > msg.len() && msg.starts_with("{\"actor\":null"));
        // Small enough: whole, not marked.
        let (_, p, _) = parse(&frame(&F, &r).unwrap());
        assert!(p.iter().all(|(n, _)| n != "truncated"));
    }
}
