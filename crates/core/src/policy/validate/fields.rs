//! The fields each mapping of a policy file accepts.

use super::super::SinkKind;

pub(super) const TOP_FIELDS: &[&str] = &[
    "resources",
    "policies",
    "admins",
    "sinks",
    "notify",
    "anomalies",
    "streams",
    "witness",
    "drills",
    "glass_case",
];
pub(super) const GLASS_CASE_FIELDS: &[&str] = &["warn_before"];
pub(super) const POLICY_FIELDS: &[&str] = &[
    "name",
    "resources",
    "who",
    "require",
    "approval",
    "duration",
    "review",
    "notify",
];
pub(super) const WHO_FIELDS: &[&str] = &["users", "groups"];
pub(super) const REQUIRE_FIELDS: &[&str] = &["mfa", "ticket", "min_reason", "hours"];
pub(super) const HOURS_FIELDS: &[&str] = &["days", "from", "to"];
pub(super) const APPROVAL_FIELDS: &[&str] = &["mode", "count", "from", "timeout", "on_timeout"];
pub(super) const DURATION_FIELDS: &[&str] = &["default", "max"];
pub(super) const REVIEW_FIELDS: &[&str] = &["within", "by"];
pub(super) const ADMINS_FIELDS: &[&str] = &["users", "groups"];
pub(super) const ANOMALY_FIELDS: &[&str] = &[
    "max_grants_per_user",
    "max_grants_per_resource",
    "first_grant_on_resource",
    "max_extensions",
    "after_mfa_lockout",
    "hours",
];
pub(super) const SYSLOG_FIELDS: &[&str] = &[
    "name",
    "kind",
    "host",
    "port",
    "tls",
    "ca_file",
    "server_name",
    "hostname",
    "facility",
    "timeout",
    "max_message",
    "start",
];
pub(super) const JSONL_FIELDS: &[&str] = &["name", "kind", "path", "max_size", "keep", "start"];
pub(super) const WITNESS_FIELDS: &[&str] = &["dir", "url", "secret_env", "secret_file", "timeout"];
pub(super) const DRILLS_FIELDS: &[&str] = &["identity", "notify", "resources"];
pub(super) const DRILL_RUN_FIELDS: &[&str] =
    &["resource", "every", "at", "verify_within", "ticket"];
pub(super) const WINDOW_FIELDS: &[&str] = &["count", "within"];

/// Settings each sink kind accepts; `*_env` / `*_file` name where a secret lives.
pub(super) fn sink_fields(kind: SinkKind) -> &'static [&'static str] {
    match kind {
        SinkKind::Webhook => &[
            "name",
            "kind",
            "url",
            "url_env",
            "secret_env",
            "secret_file",
            "timeout",
        ],
        SinkKind::Slack => &["name", "kind", "url_env", "url_file", "timeout"],
        SinkKind::Pagerduty => &[
            "name",
            "kind",
            "url",
            "routing_key_env",
            "routing_key_file",
            "timeout",
        ],
        SinkKind::Email => &[
            "name",
            "kind",
            "host",
            "port",
            "tls",
            "ca_file",
            "from",
            "to",
            "username_env",
            "password_env",
            "timeout",
        ],
    }
}
