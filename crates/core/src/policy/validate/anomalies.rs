//! The `anomalies` section: thresholds for the anomaly flags.

use super::super::AnomalyRules;
use super::fields::{ANOMALY_FIELDS, WINDOW_FIELDS};
use super::hours::hours;
use super::walker::{N, V};
use std::time::Duration;

pub(super) fn anomalies(v: &mut V, n: &N) -> AnomalyRules {
    let mut rules = AnomalyRules::default();
    let Some(o) = v.obj(n, "`anomalies`", ANOMALY_FIELDS) else {
        return rules;
    };
    let window = |v: &mut V, key: &str| -> Option<(u32, Duration)> {
        let n = o.get(key)?;
        let what = format!("`anomalies.{key}`");
        let w = v.obj(n, &what, WINDOW_FIELDS)?;
        const EXAMPLE: &str = "{ count: 3, within: 24h }";
        let count = v
            .req(&w, "count", &what, EXAMPLE)
            .and_then(|c| v.uint(c, &format!("`count` of {what}"), u64::from(u32::MAX)));
        let within = v
            .req(&w, "within", &what, EXAMPLE)
            .and_then(|d| v.duration(d, &format!("`within` of {what}")));
        Some((u32::try_from(count?).ok()?, within?))
    };
    if let Some(w) = window(v, "max_grants_per_user") {
        rules.per_user = w;
    }
    if let Some(w) = window(v, "max_grants_per_resource") {
        rules.per_resource = w;
    }
    if let Some(b) = o.get("first_grant_on_resource")
        && let Some(b) = v.boolean(b, "`anomalies.first_grant_on_resource`")
    {
        rules.first_grant = b;
    }
    if let Some(m) = o.get("max_extensions")
        && let Some(m) = v.uint(m, "`anomalies.max_extensions`", 1000)
    {
        rules.max_extensions = u32::try_from(m).unwrap_or(u32::MAX);
    }
    if let Some(d) = o.get("after_mfa_lockout")
        && let Some(d) = v.duration(d, "`anomalies.after_mfa_lockout`")
    {
        rules.after_lockout = d;
    }
    if let Some(h) = o.get("hours") {
        rules.hours = hours(v, h, "`anomalies.hours`");
    }
    rules
}
