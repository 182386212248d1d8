//! Prometheus counters, rendered by hand in the text exposition format (a handful of atomics
//! needs no metrics framework).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`, returning the previous value.
    pub fn add(&self, n: u64) -> u64 {
        self.0.fetch_add(n, Ordering::Relaxed)
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (ms) of the expiry-lag histogram buckets.
const LAG_BUCKETS: [i64; 8] = [1, 5, 10, 50, 100, 250, 500, 1000];

#[derive(Default)]
pub struct Metrics {
    pub activations: Counter,
    pub pending: Counter,
    pub refusals: Counter,
    pub revocations: Counter,
    pub expiries: Counter,
    pub mfa_failures: Counter,
    pub audit_events: Counter,
    pub checkpoints: Counter,
    pub policy_reload_failures: Counter,
    pub anomalies: Counter,
    pub logins_throttled: Counter,
    pub logins_busy: Counter,
    lag_buckets: [Counter; 8],
    lag_sum_ms: Counter,
    lag_count: Counter,
}

impl Metrics {
    pub fn observe_expiry_lag(&self, ms: i64) {
        for (i, b) in LAG_BUCKETS.iter().enumerate() {
            if ms <= *b {
                self.lag_buckets[i].inc();
            }
        }
        self.lag_sum_ms.add(u64::try_from(ms).unwrap_or(0));
        self.lag_count.inc();
    }

    pub fn render(&self, active_grants: Option<u64>) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &Counter); 12] = [
            (
                "breakglass_anomaly_flags_total",
                "Anomaly flags raised on grants.",
                &self.anomalies,
            ),
            (
                "breakglass_grants_activated_total",
                "Grants that became active.",
                &self.activations,
            ),
            (
                "breakglass_grants_pending_total",
                "Grants created pending approval.",
                &self.pending,
            ),
            (
                "breakglass_requests_refused_total",
                "Requests and actions refused (audited).",
                &self.refusals,
            ),
            (
                "breakglass_grants_revoked_total",
                "Grants revoked or cancelled early.",
                &self.revocations,
            ),
            (
                "breakglass_grants_expired_total",
                "Grants expired at their deadline.",
                &self.expiries,
            ),
            (
                "breakglass_mfa_failures_total",
                "Failed, replayed or locked-out MFA attempts.",
                &self.mfa_failures,
            ),
            (
                "breakglass_audit_events_total",
                "Audit events written by this process.",
                &self.audit_events,
            ),
            (
                "breakglass_checkpoints_total",
                "Signed audit checkpoints written.",
                &self.checkpoints,
            ),
            (
                "breakglass_logins_throttled_total",
                "Logins refused by the throttle after wrong passwords (no password checked).",
                &self.logins_throttled,
            ),
            (
                "breakglass_logins_busy_total",
                "Logins refused because every password-check slot and queue place was taken.",
                &self.logins_busy,
            ),
            (
                "breakglass_policy_reload_failures_total",
                "Policy reloads refused (old policy kept).",
                &self.policy_reload_failures,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.get()
            );
        }
        if let Some(n) = active_grants {
            let _ = writeln!(
                out,
                "# HELP breakglass_grants_active Grants active now.\n# TYPE breakglass_grants_active gauge\nbreakglass_grants_active {n}"
            );
        }
        let name = "breakglass_expiry_lag_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Delay between a grant's deadline and its recorded expiry.\n# TYPE {name} histogram"
        );
        for (i, b) in LAG_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {}",
                *b as f64 / 1000.0,
                self.lag_buckets[i].get()
            );
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.lag_count.get());
        let _ = writeln!(out, "{name}_sum {}", self.lag_sum_ms.get() as f64 / 1000.0);
        let _ = writeln!(out, "{name}_count {}", self.lag_count.get());
        out
    }
}
