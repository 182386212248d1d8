//! MFA rules: TOTP (RFC 6238: SHA-1, 30 s steps, 6 digits, ±1 step), single use of each code,
//! and lock-out after repeated wrong codes. Pure: the caller loads the user's [`MfaState`],
//! calls [`check_totp`] with the current time, and durably stores the returned state together
//! with the audit event for the outcome.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

/// Length of a TOTP step in seconds.
pub const STEP_SECS: u64 = 30;
/// Digits in a TOTP code.
pub const DIGITS: usize = 6;
/// Bytes of a freshly generated TOTP secret (160 bits, as RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;

/// Tunables for guessing protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaRules {
    /// Wrong codes in a row that lock the user's MFA.
    pub max_failures: u32,
    /// How long a lock-out lasts.
    pub lockout: Duration,
    /// Steps of clock skew accepted on each side.
    pub skew_steps: u64,
}

impl Default for MfaRules {
    fn default() -> Self {
        MfaRules {
            max_failures: 5,
            lockout: Duration::from_secs(15 * 60),
            skew_steps: 1,
        }
    }
}

/// Per-user MFA guessing state, persisted by the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MfaState {
    /// Consecutive wrong codes since the last success or lock-out.
    pub failures: u32,
    /// While set and in the future, every code is refused.
    pub locked_until: Option<Timestamp>,
    /// The highest TOTP step ever accepted: codes for this step or earlier are replays.
    pub last_step: Option<u64>,
    /// When the most recent lock-out ends (kept after it ends, for anomaly flags).
    pub last_lockout: Option<Timestamp>,
}

/// What happened to one code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TotpOutcome {
    /// Accepted; the step is now used up.
    Accepted { step: u64 },
    /// Not six digits: refused without counting as a guess, state unchanged.
    Malformed,
    /// The user's MFA is locked; nothing was checked.
    Locked { until: Timestamp },
    /// Wrong code; `remaining` tries before lock-out.
    Wrong { remaining: u32 },
    /// The code was right but already used (or older than one already used).
    Replayed { remaining: u32 },
    /// This wrong code locked the user's MFA.
    LockedNow { until: Timestamp },
}

impl TotpOutcome {
    pub fn is_accepted(&self) -> bool {
        matches!(self, TotpOutcome::Accepted { .. })
    }

    /// Whether the returned state differs from the input and must be persisted.
    pub fn changes_state(&self) -> bool {
        !matches!(self, TotpOutcome::Malformed | TotpOutcome::Locked { .. })
    }
}

/// The TOTP step containing `now`.
pub fn step_at(now: Timestamp) -> u64 {
    u64::try_from(now.unix_secs()).unwrap_or(0) / STEP_SECS
}

/// The code for a given step (used by tests and by enrolment confirmation).
pub fn code_for_step(secret: &[u8], step: u64) -> String {
    match totp(secret) {
        Some(t) => t.generate(step * STEP_SECS),
        None => String::new(),
    }
}

fn totp(secret: &[u8]) -> Option<TOTP> {
    // `new_unchecked` accepts any secret length; ours are always SECRET_LEN bytes.
    Some(TOTP::new_unchecked(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP_SECS,
        secret.to_vec(),
    ))
}

/// Checks `code` against `secret` at `now`, applying replay protection and lock-out.
/// Returns the outcome and the state to persist.
pub fn check_totp(
    secret: &[u8],
    code: &str,
    now: Timestamp,
    state: &MfaState,
    rules: &MfaRules,
) -> (TotpOutcome, MfaState) {
    let mut next = state.clone();
    if let Some(until) = state.locked_until {
        if now < until {
            return (TotpOutcome::Locked { until }, next);
        }
        // The lock-out has run out: start afresh.
        next.locked_until = None;
        next.failures = 0;
    }
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return (TotpOutcome::Malformed, state.clone());
    }
    let now_step = step_at(now);
    let mut matched: Option<u64> = None;
    let lo = now_step.saturating_sub(rules.skew_steps);
    let hi = now_step.saturating_add(rules.skew_steps);
    for step in lo..=hi {
        let expected = code_for_step(secret, step);
        // Constant-time comparison; keep looping so timing does not reveal which step matched.
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && matched.is_none() {
            matched = Some(step);
        }
    }
    match matched {
        Some(step) if state.last_step.is_none_or(|last| step > last) => {
            next.failures = 0;
            next.last_step = Some(step);
            (TotpOutcome::Accepted { step }, next)
        }
        Some(_) => fail(next, now, rules, true),
        None => fail(next, now, rules, false),
    }
}

/// Judges a factor checked elsewhere (a passkey assertion, a recovery code) under the same
/// lock-out as TOTP codes: refused while locked, a failure counts, a success clears the count.
pub fn check_factor(
    ok: bool,
    now: Timestamp,
    state: &MfaState,
    rules: &MfaRules,
) -> (TotpOutcome, MfaState) {
    let mut next = state.clone();
    if let Some(until) = state.locked_until {
        if now < until {
            return (TotpOutcome::Locked { until }, next);
        }
        next.locked_until = None;
        next.failures = 0;
    }
    if ok {
        next.failures = 0;
        (TotpOutcome::Accepted { step: 0 }, next)
    } else {
        fail(next, now, rules, false)
    }
}

fn fail(
    mut next: MfaState,
    now: Timestamp,
    rules: &MfaRules,
    replay: bool,
) -> (TotpOutcome, MfaState) {
    next.failures = next.failures.saturating_add(1);
    if next.failures >= rules.max_failures {
        let until = now.plus(rules.lockout);
        next.locked_until = Some(until);
        next.last_lockout = Some(until);
        next.failures = 0;
        return (TotpOutcome::LockedNow { until }, next);
    }
    let remaining = rules.max_failures - next.failures;
    if replay {
        (TotpOutcome::Replayed { remaining }, next)
    } else {
        (TotpOutcome::Wrong { remaining }, next)
    }
}

/// Base32 (RFC 4648, no padding) of a secret, as authenticator apps expect.
pub fn secret_base32(secret: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in secret {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` URI to show as a QR code or paste into an authenticator app.
pub fn otpauth_uri(issuer: &str, user: &str, secret: &[u8]) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        url_escape(issuer),
        url_escape(user),
        secret_base32(secret),
        url_escape(issuer)
    )
}

fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Another factor's failures share the TOTP lock-out; a success clears the count.
    #[test]
    fn other_factors_share_the_lock_out() {
        let rules = MfaRules::default();
        let now = Timestamp(1_000_000);
        let mut state = MfaState::default();
        for _ in 1..rules.max_failures {
            let (o, s) = check_factor(false, now, &state, &rules);
            assert!(matches!(o, TotpOutcome::Wrong { .. }), "{o:?}");
            state = s;
        }
        let (o, locked) = check_factor(false, now, &state, &rules);
        assert!(matches!(o, TotpOutcome::LockedNow { .. }), "{o:?}");
        // Locked: even a good proof is refused, and nothing changes.
        let (o, same) = check_factor(true, now, &locked, &rules);
        assert!(matches!(o, TotpOutcome::Locked { .. }) && same == locked);
        let (o, s) = check_factor(true, now, &state, &rules);
        assert!(o.is_accepted() && s.failures == 0);
    }

    // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", truncated to 6 digits.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_vectors() {
        for (t, code) in [
            (59u64, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_for_step(RFC_SECRET, t / STEP_SECS), code, "t={t}");
        }
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(secret_base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(
            secret_base32(RFC_SECRET),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp(secs * 1000)
    }

    #[test]
    fn accepts_skew_and_refuses_replay() {
        let rules = MfaRules::default();
        let now = at(1_234_567_890);
        let step = step_at(now);
        let s0 = MfaState::default();
        let prev = code_for_step(RFC_SECRET, step - 1);
        let (o, s1) = check_totp(RFC_SECRET, &prev, now, &s0, &rules);
        assert_eq!(o, TotpOutcome::Accepted { step: step - 1 });
        let (o, s2) = check_totp(RFC_SECRET, &prev, now, &s1, &rules);
        assert_eq!(o, TotpOutcome::Replayed { remaining: 4 });
        let cur = code_for_step(RFC_SECRET, step);
        let (o, s3) = check_totp(RFC_SECRET, &cur, now, &s2, &rules);
        assert!(o.is_accepted());
        assert_eq!(s3.failures, 0);
        let far = code_for_step(RFC_SECRET, step + 2);
        let (o, _) = check_totp(RFC_SECRET, &far, now, &s3, &rules);
        assert!(matches!(o, TotpOutcome::Wrong { .. }));
    }

    #[test]
    fn malformed_changes_nothing() {
        let s = MfaState {
            failures: 2,
            ..Default::default()
        };
        for bad in ["", "12345", "1234567", "abcdef", "12 456"] {
            let (o, n) = check_totp(RFC_SECRET, bad, at(100), &s, &MfaRules::default());
            assert_eq!(o, TotpOutcome::Malformed);
            assert_eq!(n, s);
        }
    }

    #[test]
    fn five_wrong_codes_lock_for_fifteen_minutes() {
        let rules = MfaRules::default();
        let now = at(1_000_000);
        let good = code_for_step(RFC_SECRET, step_at(now));
        let wrong = if good == "000000" { "111111" } else { "000000" };
        let mut s = MfaState::default();
        for i in 0..4 {
            let (o, n) = check_totp(RFC_SECRET, wrong, now, &s, &rules);
            assert_eq!(o, TotpOutcome::Wrong { remaining: 4 - i });
            s = n;
        }
        let (o, s) = check_totp(RFC_SECRET, wrong, now, &s, &rules);
        let until = now.plus(Duration::from_secs(900));
        assert_eq!(o, TotpOutcome::LockedNow { until });
        // Even the right code is refused while locked.
        let (o, s2) = check_totp(RFC_SECRET, &good, at(1_000_899), &s, &rules);
        assert_eq!(o, TotpOutcome::Locked { until });
        assert_eq!(s2, s);
        // After the lock-out a fresh code works.
        let later = at(1_000_900);
        let code = code_for_step(RFC_SECRET, step_at(later));
        let (o, s3) = check_totp(RFC_SECRET, &code, later, &s, &rules);
        assert!(o.is_accepted());
        assert_eq!(s3.locked_until, None);
    }

    #[test]
    fn uri() {
        let u = otpauth_uri("breakglass", "alice", RFC_SECRET);
        assert!(u.starts_with("otpauth://totp/breakglass:alice?secret=GEZDGNBV"));
        assert!(u.contains("period=30"));
    }
}
