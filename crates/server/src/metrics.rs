//! Prometheus metrics through `prometheus-client`: counters for what the engine does and
//! histograms for the latencies a responder and an auditor care about (time to grant, expiry
//! lag, revocation lag, alert delivery latency). One registry per engine, so several engines in
//! one process (tests, benchmarks) never share counts.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// A monotonically increasing count.
#[derive(Default, Clone)]
pub struct Counter(PromCounter);

impl Counter {
    pub fn inc(&self) {
        self.0.inc();
    }
    /// Adds `n`, returning the previous value.
    pub fn add(&self, n: u64) -> u64 {
        self.0.inc_by(n)
    }
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// Bucket upper bounds in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

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
    pub recorded_sessions: Counter,
    pub recorded_chunks: Counter,
    pub recorded_bytes: Counter,
    time_to_grant: Histogram,
    expiry_lag: Histogram,
    revocation_lag: Histogram,
    alert_latency: Histogram,
    active: Gauge,
    /// Database clock minus this node's clock (ms), as last measured.
    clock_offset_ms: Gauge,
    /// Per audit stream or witness destination (label `stream`).
    stream_delivered: Family<Labels, PromCounter>,
    stream_failures: Family<Labels, PromCounter>,
    stream_lag: Family<Labels, Gauge>,
    /// Per drilled resource (label `resource`).
    drill_last_success: Family<Labels, Gauge>,
    drill_last_passed: Family<Labels, Gauge>,
    drill_duration_ms: Family<Labels, Gauge>,
    registry: Registry,
}

type Labels = Vec<(String, String)>;

fn stream_label(name: &str) -> Labels {
    vec![("stream".to_string(), name.to_string())]
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            activations: Counter::default(),
            pending: Counter::default(),
            refusals: Counter::default(),
            revocations: Counter::default(),
            expiries: Counter::default(),
            mfa_failures: Counter::default(),
            audit_events: Counter::default(),
            checkpoints: Counter::default(),
            policy_reload_failures: Counter::default(),
            anomalies: Counter::default(),
            logins_throttled: Counter::default(),
            logins_busy: Counter::default(),
            recorded_sessions: Counter::default(),
            recorded_chunks: Counter::default(),
            recorded_bytes: Counter::default(),
            time_to_grant: latency(),
            expiry_lag: latency(),
            revocation_lag: latency(),
            alert_latency: latency(),
            active: Gauge::default(),
            clock_offset_ms: Gauge::default(),
            stream_delivered: Family::default(),
            stream_failures: Family::default(),
            stream_lag: Family::default(),
            drill_last_success: Family::default(),
            drill_last_passed: Family::default(),
            drill_duration_ms: Family::default(),
            registry: Registry::default(),
        };
        let mut r = Registry::default();
        let counters: [(&str, &str, &Counter); 15] = [
            (
                "breakglass_recorded_sessions",
                "Recorded sessions opened.",
                &m.recorded_sessions,
            ),
            (
                "breakglass_recorded_chunks",
                "Recording chunks stored (each with its audit event).",
                &m.recorded_chunks,
            ),
            (
                "breakglass_recorded_bytes",
                "Bytes of recording chunks stored.",
                &m.recorded_bytes,
            ),
            (
                "breakglass_anomaly_flags",
                "Anomaly flags raised on grants.",
                &m.anomalies,
            ),
            (
                "breakglass_grants_activated",
                "Grants that became active.",
                &m.activations,
            ),
            (
                "breakglass_grants_pending",
                "Grants created pending approval.",
                &m.pending,
            ),
            (
                "breakglass_requests_refused",
                "Requests and actions refused (audited).",
                &m.refusals,
            ),
            (
                "breakglass_grants_revoked",
                "Grants revoked or cancelled early.",
                &m.revocations,
            ),
            (
                "breakglass_grants_expired",
                "Grants expired at their deadline.",
                &m.expiries,
            ),
            (
                "breakglass_mfa_failures",
                "Failed, replayed or locked-out MFA attempts.",
                &m.mfa_failures,
            ),
            (
                "breakglass_audit_events",
                "Audit events written by this process.",
                &m.audit_events,
            ),
            (
                "breakglass_checkpoints",
                "Signed audit checkpoints written.",
                &m.checkpoints,
            ),
            (
                "breakglass_logins_throttled",
                "Logins refused by the throttle after wrong passwords (no password checked).",
                &m.logins_throttled,
            ),
            (
                "breakglass_logins_busy",
                "Logins refused because every password-check slot and queue place was taken.",
                &m.logins_busy,
            ),
            (
                "breakglass_policy_reload_failures",
                "Policy reloads refused (old policy kept).",
                &m.policy_reload_failures,
            ),
        ];
        for (name, help, c) in counters {
            r.register(name, help, c.0.clone());
        }
        let histograms: [(&str, &str, &Histogram); 4] = [
            (
                "breakglass_time_to_grant",
                "From receiving a request to its grant (and credential) being recorded.",
                &m.time_to_grant,
            ),
            (
                "breakglass_expiry_lag",
                "Delay between a grant's deadline and its recorded expiry.",
                &m.expiry_lag,
            ),
            (
                "breakglass_revocation_lag",
                "From a grant's end to its credential confirmed revoked at the target.",
                &m.revocation_lag,
            ),
            (
                "breakglass_alert_delivery_latency",
                "From an alert being queued to its delivery.",
                &m.alert_latency,
            ),
        ];
        for (name, help, h) in histograms {
            r.register_with_unit(name, help, Unit::Seconds, h.clone());
        }
        r.register(
            "breakglass_grants_active",
            "Grants active now.",
            m.active.clone(),
        );
        r.register(
            "breakglass_clock_offset_milliseconds",
            "The database's clock minus this node's (ms), as last measured; every deadline is on the database's clock.",
            m.clock_offset_ms.clone(),
        );
        r.register(
            "breakglass_audit_stream_delivered",
            "Audit events delivered to a stream, or checkpoints copied to a witness (stream=\"witness:dir\" or \"witness:url\"), at least once.",
            m.stream_delivered.clone(),
        );
        r.register(
            "breakglass_audit_stream_failures",
            "Failed deliveries to an audit stream or witness (each is retried).",
            m.stream_failures.clone(),
        );
        r.register(
            "breakglass_audit_stream_lag",
            "Audit events committed but not yet delivered to a stream.",
            m.stream_lag.clone(),
        );
        r.register(
            "breakglass_drill_last_success_timestamp_seconds",
            "When the last drill of a resource passed (Unix seconds).",
            m.drill_last_success.clone(),
        );
        r.register(
            "breakglass_drill_last_passed",
            "1 if the last drill of a resource passed, 0 if it failed.",
            m.drill_last_passed.clone(),
        );
        r.register(
            "breakglass_drill_duration_milliseconds",
            "How long the last drill of a resource took, end to end.",
            m.drill_duration_ms.clone(),
        );
        Metrics { registry: r, ..m }
    }
}

fn secs(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

impl Metrics {
    pub fn observe_time_to_grant(&self, elapsed: std::time::Duration) {
        self.time_to_grant.observe(elapsed.as_secs_f64());
    }

    pub fn observe_expiry_lag(&self, ms: i64) {
        self.expiry_lag.observe(secs(ms));
    }

    pub fn observe_revocation_lag(&self, ms: i64) {
        self.revocation_lag.observe(secs(ms));
    }

    pub fn observe_alert_latency(&self, ms: i64) {
        self.alert_latency.observe(secs(ms));
    }

    pub fn clock_offset(&self, ms: i64) {
        self.clock_offset_ms.set(ms);
    }

    pub fn stream_delivered(&self, stream: &str, n: u64) {
        self.stream_delivered
            .get_or_create(&stream_label(stream))
            .inc_by(n);
    }

    pub fn stream_failed(&self, stream: &str) {
        self.stream_failures
            .get_or_create(&stream_label(stream))
            .inc();
    }

    pub fn stream_lag(&self, stream: &str, events: u64) {
        self.stream_lag
            .get_or_create(&stream_label(stream))
            .set(i64::try_from(events).unwrap_or(i64::MAX));
    }

    /// The last drill of `resource`: its verdict, duration and (if passed) when.
    pub fn drill_finished(&self, resource: &str, passed: Option<i64>, total_ms: u64) {
        let l = vec![("resource".to_string(), resource.to_string())];
        if let Some(at) = passed {
            self.drill_last_success.get_or_create(&l).set(at);
        }
        self.drill_last_passed
            .get_or_create(&l)
            .set(i64::from(passed.is_some()));
        self.drill_duration_ms
            .get_or_create(&l)
            .set(i64::try_from(total_ms).unwrap_or(i64::MAX));
    }

    /// The text exposition format; `active_grants` (read from the store) sets the gauge.
    pub fn render(&self, active_grants: Option<u64>) -> String {
        if let Some(n) = active_grants {
            self.active.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.activations.inc();
        assert_eq!(m.audit_events.add(3), 0);
        m.observe_time_to_grant(std::time::Duration::from_millis(2));
        m.observe_expiry_lag(1);
        let text = m.render(Some(4));
        assert!(
            text.contains("breakglass_grants_activated_total 1"),
            "{text}"
        );
        assert!(text.contains("breakglass_audit_events_total 3"), "{text}");
        assert!(text.contains("breakglass_grants_active 4"), "{text}");
        assert!(
            text.contains("breakglass_time_to_grant_seconds_bucket{le=\"0.0025\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("breakglass_expiry_lag_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("breakglass_revocation_lag_seconds_count 0"),
            "{text}"
        );
        m.stream_delivered("siem", 5);
        m.stream_failed("siem");
        m.stream_lag("siem", 2);
        let text = m.render(None);
        for line in [
            "breakglass_audit_stream_delivered_total{stream=\"siem\"} 5",
            "breakglass_audit_stream_failures_total{stream=\"siem\"} 1",
            "breakglass_audit_stream_lag{stream=\"siem\"} 2",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
    }
}
