//! What a reviewer reads: asciicast v2 (`asciinema play`/`cat`) and a plain-text transcript.
//! Both are fed records in order, chunk after chunk, and keep UTF-8 sequences split across
//! records intact.

use super::frames::{Kind, Record};
use serde_json::json;

/// The facts a rendering starts with.
#[derive(Debug, Clone)]
pub struct SessionMeta {
    pub session: String,
    pub grant: String,
    pub host: String,
    pub cols: u16,
    pub rows: u16,
    /// Unix seconds.
    pub started: i64,
    pub command: Option<String>,
}

/// Decodes a byte stream as UTF-8 across record boundaries (invalid bytes become U+FFFD).
#[derive(Default)]
struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, data: &[u8]) -> String {
        self.pending.extend_from_slice(data);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (ok, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(ok).unwrap_or(""));
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &bad[n..];
                        }
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// The human text of a recorder's note records (never terminal bytes).
pub fn note(r: &Record) -> Option<String> {
    let text = String::from_utf8_lossy(&r.data);
    Some(match r.kind {
        Kind::HiddenInput => {
            format!("{text} keystroke byte(s) typed with echo off (not recorded)")
        }
        Kind::Marker => text.into_owned(),
        Kind::Exit => format!("exit status {text}"),
        Kind::SqlStatement => sql_statement(&text),
        _ => return None,
    })
}

/// One recorded statement on one line group: `SQL <text> [params] → outcome (time)`.
fn sql_statement(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default();
    let n = |k: &str| v.get(k).and_then(|x| x.as_u64());
    let mut out = format!("SQL {}", s("text"));
    if let Some(p) = v
        .get("params")
        .and_then(|p| p.as_array())
        .filter(|p| !p.is_empty())
    {
        let shown: Vec<String> = p
            .iter()
            .map(|x| x.as_str().map_or("NULL".to_string(), |t| format!("{t:?}")))
            .collect();
        out.push_str(&format!(" params [{}]", shown.join(", ")));
    }
    let outcome = match s("outcome") {
        "ok" => match (s("tag"), n("rows")) {
            (t, Some(r)) => format!("{t} ({r} rows)"),
            (t, None) => t.to_string(),
        },
        "error" => format!("ERROR {} {}", s("sqlstate"), s("message")),
        "suspended" => format!("suspended after {} rows", n("rows").unwrap_or(0)),
        other => other.to_string(),
    };
    let ms = n("ended_at")
        .zip(n("started_at"))
        .map(|(e, b)| e.saturating_sub(b))
        .unwrap_or(0);
    out.push_str(&format!(" → {outcome} in {ms} ms"));
    if v.get("redacted").and_then(|r| r.as_bool()) == Some(true) {
        out.push_str(" [secret redacted]");
    }
    if let Some(c) = v.get("caveat").and_then(|c| c.as_str()) {
        out.push_str(&format!(" [caveat: {c}]"));
    }
    out
}

/// asciicast v2 lines.
pub struct Asciicast {
    out: Utf8Stream,
    input: Utf8Stream,
}

impl Asciicast {
    /// The header line.
    pub fn start(meta: &SessionMeta) -> (Asciicast, String) {
        let mut h = json!({
            "version": 2, "width": meta.cols.max(1), "height": meta.rows.max(1),
            "timestamp": meta.started,
            "title": format!("breakglass grant {} on {} (session {})", meta.grant, meta.host, meta.session),
        });
        if let Some(c) = &meta.command {
            h["command"] = json!(c);
        }
        (
            Asciicast {
                out: Utf8Stream::default(),
                input: Utf8Stream::default(),
            },
            h.to_string(),
        )
    }

    /// The line for one record, if it makes one.
    pub fn line(&mut self, r: &Record) -> Option<String> {
        let t = f64::from(r.ms) / 1000.0;
        let (code, data) = match r.kind {
            Kind::Output | Kind::Stderr => ("o", self.out.push(&r.data)),
            Kind::Input => ("i", self.input.push(&r.data)),
            Kind::Resize => ("r", String::from_utf8_lossy(&r.data).into_owned()),
            _ => ("m", note(r)?),
        };
        if data.is_empty() {
            return None;
        }
        Some(json!([t, code, data]).to_string())
    }

    /// What is left of a split sequence at the end.
    pub fn finish(&mut self, last_ms: u32) -> Option<String> {
        let s = self.out.finish();
        (!s.is_empty()).then(|| json!([f64::from(last_ms) / 1000.0, "o", s]).to_string())
    }
}

/// A plain transcript: output with terminal escapes removed, and the recorder's notes on their
/// own lines.
pub struct Transcript {
    out: Utf8Stream,
    at_line_start: bool,
}

impl Transcript {
    pub fn start(meta: &SessionMeta) -> (Transcript, String) {
        let cmd = meta
            .command
            .as_deref()
            .map(|c| format!(", command {c:?}"))
            .unwrap_or_default();
        (
            Transcript {
                out: Utf8Stream::default(),
                at_line_start: true,
            },
            format!(
                "# breakglass session {} of grant {} on {} (started at unix {}{cmd})\n",
                meta.session, meta.grant, meta.host, meta.started
            ),
        )
    }

    pub fn text(&mut self, r: &Record) -> String {
        match r.kind {
            Kind::Output | Kind::Stderr => {
                let s = self.out.push(&r.data);
                let clean = plain(&s);
                if let Some(c) = clean.chars().last() {
                    self.at_line_start = c == '\n';
                }
                clean
            }
            Kind::Input | Kind::Resize => String::new(),
            _ => match note(r) {
                Some(n) => {
                    let lead = if self.at_line_start { "" } else { "\n" };
                    self.at_line_start = true;
                    let secs = r.ms / 1000;
                    format!(
                        "{lead}[breakglass +{:02}:{:02}:{:02}] {}\n",
                        secs / 3600,
                        secs / 60 % 60,
                        secs % 60,
                        plain(&n)
                    )
                }
                None => String::new(),
            },
        }
    }
}

/// Recorded output made safe for a watcher's terminal: control strings (OSC, DCS, APC, PM, SOS —
/// clipboard writes, window titles, hyperlinks, terminal-specific commands) are dropped; colours
/// and cursor movement (CSI) pass. A recording is the grant holder's text and must not command
/// the security team's terminal.
#[derive(Default)]
pub struct SafeTerminal {
    state: Safe,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Safe {
    #[default]
    Normal,
    Esc,
    Str,
    StrEsc,
}

impl SafeTerminal {
    pub fn filter(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            self.state = match (self.state, b) {
                (Safe::Normal, 0x1b) => Safe::Esc,
                (Safe::Normal, _) => {
                    out.push(b);
                    Safe::Normal
                }
                (Safe::Esc, b']' | b'P' | b'_' | b'^' | b'X') => Safe::Str,
                (Safe::Esc, 0x1b) => {
                    out.push(0x1b);
                    Safe::Esc
                }
                (Safe::Esc, _) => {
                    out.extend_from_slice(&[0x1b, b]);
                    Safe::Normal
                }
                (Safe::Str, 0x07) => Safe::Normal,
                (Safe::Str, 0x1b) => Safe::StrEsc,
                (Safe::Str, _) => Safe::Str,
                (Safe::StrEsc, b'\\') => Safe::Normal,
                (Safe::StrEsc, 0x1b) => Safe::StrEsc,
                (Safe::StrEsc, _) => Safe::Str,
            };
        }
        out
    }
}

/// Terminal text without escape sequences or control characters other than newline and tab.
pub fn plain(s: &str) -> String {
    let stripped = strip_ansi_escapes::strip_str(s);
    stripped
        .chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(kind: Kind, ms: u32, data: &[u8]) -> Record {
        Record {
            kind,
            ms,
            data: data.to_vec(),
        }
    }

    fn meta() -> SessionMeta {
        SessionMeta {
            session: "s".into(),
            grant: "g".into(),
            host: "h".into(),
            cols: 80,
            rows: 24,
            started: 1,
            command: None,
        }
    }

    #[test]
    fn asciicast_keeps_split_utf8_and_json_escapes() {
        let (mut a, head) = Asciicast::start(&meta());
        let h: serde_json::Value = serde_json::from_str(&head).unwrap();
        assert_eq!(h["version"], 2);
        let e = "é".as_bytes();
        assert_eq!(a.line(&rec(Kind::Output, 1000, &e[..1])), None);
        let l = a.line(&rec(Kind::Output, 1500, &[e[1], b'"'])).unwrap();
        assert_eq!(l, r#"[1.5,"o","é\""]"#);
        let l = a.line(&rec(Kind::HiddenInput, 2000, b"6")).unwrap();
        assert!(l.contains("\"m\"") && l.contains("6 keystroke"));
        assert!(
            a.line(&rec(Kind::Output, 2100, &[0xff]))
                .unwrap()
                .contains('\u{FFFD}')
        );
    }

    #[test]
    fn control_strings_never_reach_the_watcher() {
        let mut f = SafeTerminal::default();
        // OSC 52 (clipboard write) split across reads, a title, a DCS; colours stay.
        let mut out = f.filter(b"a\x1b]52;c;ZWNobyBwd24=");
        out.extend(f.filter(b"\x07b\x1b[31mred\x1b[0m\x1b]0;title\x1b\\c\x1bPq#0\x1b\\d"));
        assert_eq!(out, b"ab\x1b[31mred\x1b[0mcd");
    }

    #[test]
    fn transcript_strips_escapes() {
        let (mut t, _) = Transcript::start(&meta());
        let s = t.text(&rec(Kind::Output, 0, b"\x1b[1;31mred\x1b[0m\r\nok\x07"));
        assert_eq!(s, "red\nok");
        let n = t.text(&rec(Kind::Exit, 65_000, b"0"));
        assert_eq!(n, "\n[breakglass +00:01:05] exit status 0\n");
        assert_eq!(plain("a\x1b]0;title\x07b"), "ab");
    }
}
