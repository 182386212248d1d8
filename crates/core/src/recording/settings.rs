//! A resource's recording settings (`recording`, `recording_max_bytes`, `on_recording_cap`,
//! `recording_ack_timeout`, `recording_retention` in its `settings`).

use serde_json::{Map, Value};
use std::time::Duration;

/// Whether sessions are recorded, and what happens when recording fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No recording: no session starts, or a live one pauses then ends, without the server.
    Required,
    /// Record, but keep the session when recording fails (the gap is audited and alerted).
    BestEffort,
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Required => "required",
            Mode::BestEffort => "best_effort",
            Mode::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "required" => Mode::Required,
            "best_effort" => Mode::BestEffort,
            "off" => Mode::Off,
            _ => return None,
        })
    }
}

/// What happens when a session reaches `recording_max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapAction {
    /// The session ends (audited).
    End,
    /// The session goes on; nothing more is recorded but a marker (audited).
    Continue,
}

impl CapAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CapAction::End => "end",
            CapAction::Continue => "continue",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSettings {
    pub mode: Mode,
    pub max_bytes: u64,
    pub on_cap: CapAction,
    /// No acknowledgement for this long: the session pauses; for twice as long: it ends.
    pub ack_timeout: Duration,
    /// Chunk payloads older than this are deleted (their digests stay).
    pub retention: Option<Duration>,
}

pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

impl Default for RecordingSettings {
    fn default() -> Self {
        RecordingSettings {
            mode: Mode::Required,
            max_bytes: DEFAULT_MAX_BYTES,
            on_cap: CapAction::End,
            ack_timeout: Duration::from_secs(5),
            retention: None,
        }
    }
}

impl RecordingSettings {
    /// Reads the settings of a resource; the error says which key is wrong and how to fix it.
    pub fn from_settings(s: &Map<String, Value>) -> Result<Self, String> {
        let mut r = RecordingSettings::default();
        if let Some(v) = s.get("recording") {
            r.mode = match v {
                // YAML 1.1 readers turn a bare `off` into false.
                Value::Bool(false) => Some(Mode::Off),
                Value::Bool(true) => Some(Mode::Required),
                v => v.as_str().and_then(Mode::parse),
            }
            .ok_or_else(|| "`recording` must be one of required, best_effort, off".to_string())?;
        }
        if let Some(v) = s.get("recording_max_bytes") {
            r.max_bytes = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(t) => parse_bytes(t),
                _ => None,
            }
            .filter(|n| *n >= 4096)
            .ok_or_else(|| {
                "`recording_max_bytes` must be a size of at least 4 KiB, e.g. 512MiB or 1GiB"
                    .to_string()
            })?;
        }
        if let Some(v) = s.get("on_recording_cap") {
            r.on_cap = match v.as_str() {
                Some("end") => CapAction::End,
                Some("continue") => CapAction::Continue,
                _ => return Err("`on_recording_cap` must be end or continue".into()),
            };
        }
        let dur = |k: &str| -> Result<Option<Duration>, String> {
            match s.get(k) {
                None => Ok(None),
                Some(v) => v
                    .as_str()
                    .and_then(|t| crate::duration::parse(t).ok())
                    .filter(|d| !d.is_zero())
                    .map(Some)
                    .ok_or_else(|| format!("`{k}` must be a duration such as 5s, 90d")),
            }
        };
        if let Some(d) = dur("recording_ack_timeout")? {
            if d > Duration::from_secs(300) {
                return Err("`recording_ack_timeout` must be at most 300s".into());
            }
            r.ack_timeout = d;
        }
        r.retention = dur("recording_retention")?;
        Ok(r)
    }
}

/// `1048576`, `512KiB`, `100MiB`, `2GiB` (also KB/MB/GB as powers of 1024).
fn parse_bytes(t: &str) -> Option<u64> {
    let t = t.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "KB" | "K" => 1 << 10,
        "MiB" | "MB" | "M" => 1 << 20,
        "GiB" | "GB" | "G" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(v: Value) -> Result<RecordingSettings, String> {
        RecordingSettings::from_settings(v.as_object().unwrap())
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(s(json!({})).unwrap(), RecordingSettings::default());
        let r = s(json!({"recording": "best_effort", "recording_max_bytes": "10MiB",
            "on_recording_cap": "continue", "recording_ack_timeout": "2s", "recording_retention": "90d"}))
        .unwrap();
        assert_eq!(r.mode, Mode::BestEffort);
        assert_eq!(r.max_bytes, 10 << 20);
        assert_eq!(r.on_cap, CapAction::Continue);
        assert_eq!(r.ack_timeout, Duration::from_secs(2));
        assert_eq!(r.retention, Some(Duration::from_secs(90 * 86400)));
        assert_eq!(s(json!({"recording": false})).unwrap().mode, Mode::Off);
        assert_eq!(s(json!({"recording": "off"})).unwrap().mode, Mode::Off);
        for bad in [
            json!({"recording": "yes"}),
            json!({"recording_max_bytes": "lots"}),
            json!({"recording_max_bytes": 10}),
            json!({"on_recording_cap": "stop"}),
            json!({"recording_ack_timeout": "0s"}),
            json!({"recording_ack_timeout": "1h"}),
            json!({"recording_retention": 5}),
        ] {
            assert!(s(bad.clone()).is_err(), "{bad}");
        }
    }
}
