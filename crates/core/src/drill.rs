//! Drills, pure: the steps a drill walks, its verdict, and the schedule (which slot is due,
//! whether a resource is overdue) computed from `now` passed in.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The steps of one drill, in order. A drill fails at the first step that fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// The drill identity exists (created on first use) with its own TOTP authenticator.
    Identity,
    /// The policy decides the drill identity's request.
    Request,
    /// The server's code for the identity goes through the normal MFA check.
    Mfa,
    /// The grant is active and the target issued a credential.
    Credential,
    /// The credential works at the real target (ssh `id`, `SELECT current_user`, release).
    Use,
    /// The grant is revoked and the revoker confirms it at the target.
    Revoke,
    /// The target refuses the credential afterwards (KRL read, role gone).
    Verify,
    /// The audit chain verifies.
    Audit,
    /// Every sink received the DRILL-tagged alert.
    Alerts,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Identity => "identity",
            Step::Request => "request",
            Step::Mfa => "mfa",
            Step::Credential => "credential",
            Step::Use => "use",
            Step::Revoke => "revoke",
            Step::Verify => "verify",
            Step::Audit => "audit",
            Step::Alerts => "alerts",
        }
    }
}

/// The outcome of a drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    Passed,
    Failed { step: Step, error: String },
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed { .. } => "failed",
        }
    }
}

/// What a drill measured (milliseconds from its start unless said otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Start → active grant with its credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_glass_ms: Option<u64>,
    /// Start → the credential worked at the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_first_use_ms: Option<u64>,
    /// Revoke → the target refuses the credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_lag_ms: Option<u64>,
    /// Activation → the last sink confirmed delivery of the drill's alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<u64>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// The start of the slot `now` falls in: slots of `every` start at `at_minute` after midnight
/// UTC (1970-01-01 00:00 + `at_minute` + k·`every`).
pub fn slot_start(now: Timestamp, every: Duration, at_minute: u32) -> Timestamp {
    let every = ms(every);
    let offset = i64::from(at_minute) * 60_000;
    let k = (now.0 - offset).div_euclid(every);
    Timestamp(offset + k * every)
}

/// The start of the next slot after `now`.
pub fn next_due(now: Timestamp, every: Duration, at_minute: u32) -> Timestamp {
    Timestamp(slot_start(now, every, at_minute).0 + ms(every))
}

/// A resource is overdue when it has not passed a drill within two slots: its last success
/// (or, never having passed, its first attempt) is older than `2 × every`. A resource never
/// drilled at all is not overdue (the scheduler runs it at once).
pub fn overdue(
    last_success: Option<Timestamp>,
    first_attempt: Option<Timestamp>,
    now: Timestamp,
    every: Duration,
) -> bool {
    match last_success.or(first_attempt) {
        Some(t) => now.0 - t.0 > 2 * ms(every),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn slots_start_at_the_given_minute() {
        let day = Duration::from_secs(86_400);
        // 2 days + 05:00 → the slot started at 2 days + 03:00.
        let now = Timestamp(2 * 24 * H + 5 * H);
        assert_eq!(slot_start(now, day, 180), Timestamp(2 * 24 * H + 3 * H));
        // 02:00 is still in the previous day's 03:00 slot.
        let now = Timestamp(2 * 24 * H + 2 * H);
        assert_eq!(slot_start(now, day, 180), Timestamp(24 * H + 3 * H));
        assert_eq!(next_due(now, day, 180), Timestamp(2 * 24 * H + 3 * H));
        let hour = Duration::from_secs(3600);
        assert_eq!(slot_start(Timestamp(5 * H + 1), hour, 0), Timestamp(5 * H));
    }

    #[test]
    fn overdue_after_two_slots_without_success() {
        let every = Duration::from_secs(3600);
        let now = Timestamp(10 * H);
        assert!(!overdue(None, None, now, every));
        assert!(!overdue(Some(Timestamp(9 * H)), None, now, every));
        assert!(overdue(Some(Timestamp(7 * H)), None, now, every));
        assert!(overdue(None, Some(Timestamp(7 * H)), now, every));
        assert!(!overdue(
            Some(Timestamp(9 * H)),
            Some(Timestamp(H)),
            now,
            every
        ));
    }
}
