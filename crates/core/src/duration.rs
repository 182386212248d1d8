//! Human durations: `90s`, `30m`, `2h`, `3d`, and sums such as `1h30m`.

use std::time::Duration;
use thiserror::Error;

/// The longest duration we accept anywhere (one year); longer values are almost always typos.
pub const MAX: Duration = Duration::from_secs(366 * 86_400);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("empty duration: write a number followed by s, m, h or d, e.g. 30m")]
    Empty,
    #[error(
        "bad duration {0:?}: write a number followed by s, m, h or d, e.g. 90s, 30m, 2h or 1h30m"
    )]
    Syntax(String),
    #[error("duration {0:?} is zero: give a positive duration such as 30m")]
    Zero(String),
    #[error("duration {0:?} is longer than one year")]
    TooLong(String),
}

/// Parses `90s`, `30m`, `2h`, `3d` or a concatenation such as `1h30m`.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.len() > 32 {
        return Err(DurationError::Syntax(truncate(s)));
    }
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            let n = num.unwrap_or(0);
            num = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or_else(|| DurationError::TooLong(s.to_string()))?,
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(DurationError::Syntax(truncate(s))),
        };
        let n = num
            .take()
            .ok_or_else(|| DurationError::Syntax(truncate(s)))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| DurationError::TooLong(s.to_string()))?;
    }
    if num.is_some() {
        return Err(DurationError::Syntax(truncate(s)));
    }
    let d = Duration::from_secs(total);
    if d.is_zero() {
        return Err(DurationError::Zero(s.to_string()));
    }
    if d > MAX {
        return Err(DurationError::TooLong(s.to_string()));
    }
    Ok(d)
}

/// Formats a duration compactly: `1h30m`, `45s`, `2d`.
pub fn format(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, name) in [(86_400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
        if s >= unit {
            out.push_str(&(s / unit).to_string());
            out.push(name);
            s %= unit;
        }
    }
    out
}

fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("72h"), Ok(Duration::from_secs(72 * 3600)));
        assert_eq!(parse("3d"), Ok(Duration::from_secs(3 * 86_400)));
    }

    #[test]
    fn refuses() {
        for bad in [
            "",
            "30",
            "m",
            "30x",
            "-5m",
            "1.5h",
            "30 m",
            "h30",
            "99999999999999999999s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(matches!(parse("0s"), Err(DurationError::Zero(_))));
        assert!(matches!(parse("400d"), Err(DurationError::TooLong(_))));
    }

    #[test]
    fn formats() {
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_secs(45)), "45s");
        assert_eq!(format(Duration::from_secs(86_400)), "1d");
    }
}
