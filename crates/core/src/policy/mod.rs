//! Policies as code: which resources exist, who may break glass on which, under which
//! conditions, with which approval, for how long, and who reviews. Parsed from YAML with
//! line/column errors and hints, validated as a whole (every error reported at once), and
//! evaluated purely: `evaluate(request) → Decision | Refusal`.

pub mod drills;
pub mod streams;
mod validate;
mod yaml;

pub use drills::{DRILL_REASON, DrillSchedule, Drills};
pub use streams::{JsonlTarget, Stream, StreamStart, StreamTarget, SyslogTarget, Witness};
pub use validate::{DEFAULT_KEEP, DEFAULT_MAX_MESSAGE, DEFAULT_MAX_SIZE, parse_size};

use crate::time::{Timestamp, weekday_and_minute};
use regex::Regex;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// Policy files larger than this are refused.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;
/// No grant may be longer than a week, whatever a policy says.
pub const MAX_GRANT: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Postgres,
    Ssh,
    Secret,
    Exec,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Postgres => "postgres",
            ResourceKind::Ssh => "ssh",
            ResourceKind::Secret => "secret",
            ResourceKind::Exec => "exec",
        }
    }
}

/// A protected system. Connection details (`settings`) are interpreted by its connector.
#[derive(Debug, Clone)]
pub struct Resource {
    pub name: String,
    pub kind: ResourceKind,
    pub settings: Map<String, Value>,
}

#[derive(Debug, Clone, Default)]
pub struct Who {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

impl Who {
    pub fn matches(&self, user: &str, groups: &[String]) -> bool {
        self.users.iter().any(|u| u == user) || groups.iter().any(|g| self.groups.contains(g))
    }
}

/// Allowed UTC days and time of day.
#[derive(Debug, Clone)]
pub struct Hours {
    /// 0 = Monday … 6 = Sunday.
    pub days: Vec<u32>,
    /// Minutes since midnight UTC; `from < to`.
    pub from: u32,
    pub to: u32,
    /// As written, e.g. `mon,tue,wed,thu,fri 08:00-18:00`.
    pub source: String,
}

impl Hours {
    /// Whether `t` falls inside the window (UTC).
    pub fn contains(&self, t: Timestamp) -> bool {
        let (wd, minute) = weekday_and_minute(t);
        self.days.contains(&wd) && minute >= self.from && minute < self.to
    }

    fn hhmm(m: u32) -> String {
        format!("{:02}:{:02}", m / 60, m % 60)
    }
}

/// Thresholds for anomaly flags (top-level `anomalies:` in the policy file; these are the
/// defaults). The anomaly module applies them.
#[derive(Debug, Clone)]
pub struct AnomalyRules {
    /// More than `count` grants by one user within `within`.
    pub per_user: (u32, Duration),
    /// More than `count` grants on one resource within `within`.
    pub per_resource: (u32, Duration),
    /// Flag a user's first ever grant on a resource.
    pub first_grant: bool,
    /// More than this many extensions of one grant.
    pub max_extensions: u32,
    /// A grant within this long after the user's MFA was locked out.
    pub after_lockout: Duration,
    /// Normal working hours (UTC); use outside them is flagged.
    pub hours: Option<Hours>,
}

impl Default for AnomalyRules {
    fn default() -> Self {
        AnomalyRules {
            per_user: (3, Duration::from_secs(24 * 3600)),
            per_resource: (10, Duration::from_secs(3600)),
            first_grant: true,
            max_extensions: 2,
            after_lockout: Duration::from_secs(24 * 3600),
            hours: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Require {
    /// A fresh MFA verification is required (default true).
    pub mfa: bool,
    /// The ticket must match this pattern (anchored only as written); `ticket.as_str()` is
    /// the source. `None`: no ticket required.
    pub ticket: Option<Regex>,
    /// Minimum reason length in characters, after trimming (default 0).
    pub min_reason: usize,
    /// Requests are refused outside this UTC window.
    pub hours: Option<Hours>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    Deny,
    Auto,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    Auto,
    Quorum {
        count: u32,
        from: Vec<String>,
        timeout: Option<Duration>,
        on_timeout: OnTimeout,
    },
    Deny,
}

#[derive(Debug, Clone, Copy)]
pub struct Durations {
    pub default: Duration,
    pub max: Duration,
}

#[derive(Debug, Clone)]
pub struct Review {
    pub within: Duration,
    pub by: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub resources: Vec<String>,
    pub who: Who,
    pub require: Require,
    pub approval: Approval,
    pub duration: Durations,
    pub review: Option<Review>,
    pub notify: Vec<String>,
}

/// Who may revoke any grant and export the audit trail.
#[derive(Debug, Clone)]
pub struct Admins {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

impl Default for Admins {
    fn default() -> Self {
        Admins {
            users: vec![],
            groups: vec!["admin".into()],
        }
    }
}

#[derive(Debug, Clone)]
pub struct PolicySet {
    pub resources: Vec<Resource>,
    pub policies: Vec<Policy>,
    pub admins: Admins,
    /// Where alerts go, by name.
    pub sinks: Vec<Sink>,
    /// Sinks that receive every alert (security-wide events such as MFA lock-outs and policy
    /// reload failures, and every grant event), in addition to a policy's own `notify`.
    pub notify: Vec<String>,
    /// Thresholds for anomaly flags.
    pub anomalies: AnomalyRules,
    /// Destinations that receive every audit event as it is committed.
    pub streams: Vec<Stream>,
    /// Where every signed checkpoint is copied.
    pub witness: Option<Witness>,
    /// Scheduled drills (`drills:`), if any.
    pub drills: Option<Drills>,
    /// Offline glass cases (`glass_case:`).
    pub glass_case: GlassCaseRules,
}

/// `glass_case:` at the top level of the policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlassCaseRules {
    /// Alert (`glass_case.expiring`, once per case) when a sealed case has less than this left.
    pub warn_before: std::time::Duration,
}

impl Default for GlassCaseRules {
    fn default() -> Self {
        GlassCaseRules {
            warn_before: std::time::Duration::from_secs(3 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// Generic JSON webhook signed with HMAC-SHA256.
    Webhook,
    /// Slack incoming webhook.
    Slack,
    /// PagerDuty Events API v2.
    Pagerduty,
    /// Email over SMTP (STARTTLS required unless `tls: none`).
    Email,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
            SinkKind::Pagerduty => "pagerduty",
            SinkKind::Email => "email",
        }
    }
}

/// An alert destination. Secrets (URLs with tokens, HMAC keys, routing keys) are never in the
/// policy file: it names the environment variable or file that holds them.
#[derive(Debug, Clone)]
pub struct Sink {
    pub name: String,
    pub kind: SinkKind,
    pub settings: Map<String, Value>,
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: ")?,
            (Some(l), None) => write!(f, "line {l}: ")?,
            _ => {}
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// Every problem found in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors {
    pub errors: Vec<PolicyError>,
}

impl std::fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// What a responder asks for.
#[derive(Debug, Clone)]
pub struct AccessRequest<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
    pub resource: &'a str,
    pub reason: &'a str,
    pub ticket: Option<&'a str>,
    pub duration: Option<Duration>,
    pub now: Timestamp,
}

/// An allowed request and how to grant it.
#[derive(Debug, Clone)]
pub struct Decision {
    pub policy: String,
    /// The requested duration, or the policy default.
    pub duration: Duration,
    pub max: Duration,
    pub approval: Approval,
    pub mfa_required: bool,
    pub review: Option<Review>,
    pub notify: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCode {
    UnknownResource,
    NotAuthorised,
    TicketRequired,
    TicketMismatch,
    ReasonTooShort,
    DurationOverMax,
    OutsideHours,
    DeniedByPolicy,
}

impl RefusalCode {
    /// Stable name, used in API problem types and audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::UnknownResource => "unknown-resource",
            RefusalCode::NotAuthorised => "not-authorised",
            RefusalCode::TicketRequired => "ticket-required",
            RefusalCode::TicketMismatch => "ticket-mismatch",
            RefusalCode::ReasonTooShort => "reason-too-short",
            RefusalCode::DurationOverMax => "duration-over-max",
            RefusalCode::OutsideHours => "outside-hours",
            RefusalCode::DeniedByPolicy => "denied-by-policy",
        }
    }
}

/// Why a request is refused, precisely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: RefusalCode,
    pub message: String,
    pub hint: Option<String>,
}

fn refusal(code: RefusalCode, message: String, hint: Option<&str>) -> Refusal {
    Refusal {
        code,
        message,
        hint: hint.map(String::from),
    }
}

fn fmt_d(d: Duration) -> String {
    crate::duration::format(d)
}

impl PolicySet {
    /// Parses and validates a policy file, reporting every problem found.
    pub fn parse(yaml: &str) -> Result<PolicySet, PolicyErrors> {
        validate::parse(yaml)
    }

    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.name == name)
    }

    pub fn sink(&self, name: &str) -> Option<&Sink> {
        self.sinks.iter().find(|s| s.name == name)
    }

    /// The sinks an alert about a grant under `policy` goes to (policy `notify` ∪ top-level `notify`).
    pub fn sinks_for(&self, policy: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = self.notify.clone();
        if let Some(p) = policy.and_then(|n| self.policy(n)) {
            for s in &p.notify {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    pub fn stream(&self, name: &str) -> Option<&Stream> {
        self.streams.iter().find(|s| s.name == name)
    }

    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    pub fn is_admin(&self, user: &str, groups: &[String]) -> bool {
        self.admins.users.iter().any(|u| u == user)
            || groups.iter().any(|g| self.admins.groups.contains(g))
    }

    /// Decides a request: the first policy (in file order) covering the resource whose `who`
    /// matches and whose conditions all pass wins; otherwise the first matching policy's refusal.
    pub fn evaluate(&self, req: &AccessRequest<'_>) -> Result<Decision, Refusal> {
        if self.resource(req.resource).is_none() {
            let names: Vec<&str> = self.resources.iter().map(|r| r.name.as_str()).collect();
            let hint = match validate::did_you_mean(req.resource, &names) {
                Some(m) => format!("did you mean {m}?"),
                None => "check the name; GET /api/v1/policy lists the declared resources".into(),
            };
            return Err(Refusal {
                code: RefusalCode::UnknownResource,
                message: format!("there is no resource {:?} in the policy", req.resource),
                hint: Some(hint),
            });
        }
        let covering: Vec<&Policy> = self
            .policies
            .iter()
            .filter(|p| p.resources.iter().any(|r| r == req.resource))
            .collect();
        let matching: Vec<&Policy> = covering
            .iter()
            .copied()
            .filter(|p| p.who.matches(req.user, req.groups))
            .collect();
        if matching.is_empty() {
            if covering.is_empty() {
                return Err(refusal(
                    RefusalCode::NotAuthorised,
                    format!("no policy allows break-glass access to {}", req.resource),
                    Some("ask the security team to add a policy for this resource"),
                ));
            }
            let mut groups: Vec<&str> = covering
                .iter()
                .flat_map(|p| p.who.groups.iter().map(String::as_str))
                .collect();
            groups.sort_unstable();
            groups.dedup();
            let yours = if req.groups.is_empty() {
                "you are in no groups".to_string()
            } else {
                format!("your groups: {}", req.groups.join(", "))
            };
            return Err(refusal(
                RefusalCode::NotAuthorised,
                if groups.is_empty() {
                    format!(
                        "{} is not authorised to break glass on {}: only named users may",
                        req.user, req.resource
                    )
                } else {
                    format!(
                        "{} is not authorised to break glass on {}: it is reserved for groups {} ({yours})",
                        req.user,
                        req.resource,
                        groups.join(", ")
                    )
                },
                Some("ask the security team to add you to the policy or a group it names"),
            ));
        }
        let mut first_refusal = None;
        for p in matching {
            match check(p, req) {
                Ok(d) => return Ok(d),
                Err(r) => {
                    if first_refusal.is_none() {
                        first_refusal = Some(r);
                    }
                }
            }
        }
        Err(first_refusal.unwrap_or_else(|| {
            refusal(
                RefusalCode::NotAuthorised,
                "no policy allows this request".into(),
                None,
            )
        }))
    }

    /// Re-evaluates an extension against the *policy that granted it* (not any policy for the
    /// resource): that policy must still exist (after a reload), still cover the resource and
    /// the user, not deny, and the whole window (activation → new expiry) must stay within its
    /// `duration.max`. Binding to the granting policy keeps the approval, review and maximum
    /// the grant was issued under; switching to a laxer policy would need a new request.
    /// Ticket, reason and hours are not re-checked (they were checked at the request);
    /// `now` is accepted for future rules and currently unused.
    #[allow(clippy::too_many_arguments)]
    pub fn check_extension(
        &self,
        policy_name: &str,
        user: &str,
        groups: &[String],
        resource: &str,
        started_at: Timestamp,
        current_expiry: Timestamp,
        by: Duration,
        _now: Timestamp,
    ) -> Result<Timestamp, Refusal> {
        let Some(p) = self.policy(policy_name) else {
            return Err(refusal(
                RefusalCode::NotAuthorised,
                format!("policy {policy_name} no longer exists, so the grant cannot be extended"),
                Some("request a new grant"),
            ));
        };
        if !p.resources.iter().any(|r| r == resource) || !p.who.matches(user, groups) {
            return Err(refusal(
                RefusalCode::NotAuthorised,
                format!("policy {policy_name} no longer allows {user} on {resource}"),
                Some("request a new grant"),
            ));
        }
        if p.approval == Approval::Deny {
            return Err(refusal(
                RefusalCode::DeniedByPolicy,
                format!("policy {policy_name} now denies access to {resource}"),
                None,
            ));
        }
        let new_expiry = current_expiry.plus(by);
        let total = started_at.until(new_expiry);
        if total > p.duration.max {
            let left = p
                .duration
                .max
                .saturating_sub(started_at.until(current_expiry));
            return Err(refusal(
                RefusalCode::DurationOverMax,
                format!(
                    "extending by {} would make the grant {} long; policy {} allows at most {} (you can still add {})",
                    fmt_d(by),
                    fmt_d(Duration::from_secs(total.as_secs())),
                    p.name,
                    fmt_d(p.duration.max),
                    fmt_d(Duration::from_secs(left.as_secs()))
                ),
                Some("request a new grant if you need more time"),
            ));
        }
        Ok(new_expiry)
    }

    /// A JSON view for the API.
    pub fn to_json(&self) -> Value {
        let d = |d: Duration| json!({"secs": d.as_secs(), "human": fmt_d(d)});
        json!({
            "drills": self.drills.as_ref().map(|dr| json!({
                "identity": dr.identity, "notify": dr.notify,
                "resources": dr.runs.iter().map(|r| json!({
                    "resource": r.resource, "every": d(r.every), "at_minute": r.at_minute,
                    "verify_within": d(r.verify_within), "ticket": r.ticket,
                })).collect::<Vec<_>>(),
            })),
            "admins": {"users": self.admins.users, "groups": self.admins.groups},
            "notify": self.notify,
            "sinks": self.sinks.iter().map(|s| json!({"name": s.name, "kind": s.kind.as_str(), "settings": s.settings})).collect::<Vec<_>>(),
            "streams": self.streams.iter().map(Stream::to_json).collect::<Vec<_>>(),
            "witness": self.witness.as_ref().map(Witness::to_json),
            "resources": self.resources.iter().map(|r| json!({"name": r.name, "kind": r.kind.as_str(), "settings": r.settings})).collect::<Vec<_>>(),
            "policies": self.policies.iter().map(|p| json!({
                "name": p.name,
                "resources": p.resources,
                "who": {"users": p.who.users, "groups": p.who.groups},
                "require": {
                    "mfa": p.require.mfa,
                    "ticket": p.require.ticket.as_ref().map(|r| r.as_str()),
                    "min_reason": p.require.min_reason,
                    "hours": p.require.hours.as_ref().map(|h| json!({
                    "days": h.days.iter().map(|d| ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].get(*d as usize).copied().unwrap_or("?")).collect::<Vec<_>>(),
                    "from": Hours::hhmm(h.from),
                    "to": Hours::hhmm(h.to),
                    "text": h.source,
                })),
                },
                "approval": match &p.approval {
                    Approval::Auto => json!({"mode": "auto"}),
                    Approval::Deny => json!({"mode": "deny"}),
                    Approval::Quorum { count, from, timeout, on_timeout } => json!({
                        "mode": "quorum", "count": count, "from": from,
                        "timeout": timeout.map(d),
                        "on_timeout": match on_timeout { OnTimeout::Deny => "deny", OnTimeout::Auto => "auto" },
                    }),
                },
                "duration": {"default": d(p.duration.default), "max": d(p.duration.max)},
                "review": p.review.as_ref().map(|r| json!({"within": d(r.within), "by": r.by})),
                "notify": p.notify,
            })).collect::<Vec<_>>(),
        })
    }
}

fn check(p: &Policy, req: &AccessRequest<'_>) -> Result<Decision, Refusal> {
    if p.approval == Approval::Deny {
        return Err(refusal(
            RefusalCode::DeniedByPolicy,
            format!(
                "policy {} denies break-glass access to {}",
                p.name, req.resource
            ),
            Some("contact the security team"),
        ));
    }
    if let Some(re) = &p.require.ticket {
        let t = req.ticket.map(str::trim).unwrap_or("");
        if t.is_empty() {
            return Err(refusal(
                RefusalCode::TicketRequired,
                format!(
                    "policy {} requires an incident ticket matching {}",
                    p.name,
                    re.as_str()
                ),
                Some("pass --ticket with the incident id, e.g. --ticket INC-4711"),
            ));
        }
        if !re.is_match(t) {
            return Err(refusal(
                RefusalCode::TicketMismatch,
                format!(
                    "ticket {t:?} does not match the required pattern {} (policy {})",
                    re.as_str(),
                    p.name
                ),
                Some("use the incident ticket id exactly as your tracker shows it"),
            ));
        }
    }
    let reason_len = req.reason.trim().chars().count();
    if reason_len < p.require.min_reason {
        return Err(refusal(
            RefusalCode::ReasonTooShort,
            format!(
                "reason is {reason_len} characters; policy {} requires at least {}: say what is broken and why you need access",
                p.name, p.require.min_reason
            ),
            Some("e.g. --reason \"orders table locked, checkout down\""),
        ));
    }
    if let Some(h) = &p.require.hours
        && !h.contains(req.now)
    {
        let (wd, minute) = weekday_and_minute(req.now);
        const DAY: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        return Err(refusal(
            RefusalCode::OutsideHours,
            format!(
                "policy {} only allows requests {} UTC; it is now {} {} UTC",
                p.name,
                h.source,
                DAY.get(wd as usize).copied().unwrap_or("?"),
                Hours::hhmm(minute)
            ),
            Some("ask the security team which policy covers out-of-hours emergencies"),
        ));
    }
    let duration = req.duration.unwrap_or(p.duration.default);
    if duration > p.duration.max {
        return Err(refusal(
            RefusalCode::DurationOverMax,
            format!(
                "requested {} exceeds the maximum {} of policy {}",
                fmt_d(duration),
                fmt_d(p.duration.max),
                p.name
            ),
            Some("ask for less time; you can extend later up to the maximum"),
        ));
    }
    Ok(Decision {
        policy: p.name.clone(),
        duration,
        max: p.duration.max,
        approval: p.approval.clone(),
        mfa_required: p.require.mfa,
        review: p.review.clone(),
        notify: p.notify.clone(),
    })
}

#[cfg(test)]
mod tests;
