//! The YAML shape of a policy file and its validation into a [`PolicySet`].

use super::*;
use regex::RegexBuilder;
use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    admins: Option<RawAdmins>,
    #[serde(default)]
    resources: Vec<Spanned<Value>>,
    #[serde(default)]
    policies: Vec<RawPolicy>,
    #[serde(default)]
    sinks: Vec<Spanned<Value>>,
    #[serde(default)]
    notify: Vec<Spanned<String>>,
    #[serde(default)]
    anomalies: Option<RawAnomalies>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    count: u32,
    within: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnomalies {
    #[serde(default)]
    max_grants_per_user: Option<RawWindow>,
    #[serde(default)]
    max_grants_per_resource: Option<RawWindow>,
    #[serde(default)]
    first_grant_on_resource: Option<bool>,
    #[serde(default)]
    max_extensions: Option<u32>,
    #[serde(default)]
    after_mfa_lockout: Option<Spanned<String>>,
    #[serde(default)]
    hours: Option<Spanned<RawHours>>,
}

/// Settings each sink kind accepts; `*_env` / `*_file` name where a secret lives.
fn sink_fields(kind: SinkKind) -> &'static [&'static str] {
    match kind {
        SinkKind::Webhook => &["url", "url_env", "secret_env", "secret_file", "timeout"],
        SinkKind::Slack => &["url_env", "url_file", "timeout"],
        SinkKind::Pagerduty => &["url", "routing_key_env", "routing_key_file", "timeout"],
        SinkKind::Email => &[
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmins {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: Spanned<String>,
    #[serde(default)]
    resources: Vec<Spanned<String>>,
    who: Spanned<RawWho>,
    #[serde(default)]
    require: Option<RawRequire>,
    approval: Spanned<RawApproval>,
    duration: Spanned<RawDurations>,
    #[serde(default)]
    review: Option<Spanned<RawReview>>,
    #[serde(default)]
    notify: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWho {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequire {
    #[serde(default)]
    mfa: Option<bool>,
    #[serde(default)]
    ticket: Option<Spanned<String>>,
    #[serde(default)]
    min_reason: Option<u32>,
    #[serde(default)]
    hours: Option<Spanned<RawHours>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHours {
    days: Vec<String>,
    from: String,
    to: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    mode: Spanned<String>,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    from: Vec<String>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    on_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDurations {
    default: Spanned<String>,
    max: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReview {
    within: Spanned<String>,
    by: Vec<String>,
}

struct Errors(Vec<PolicyError>);

impl Errors {
    fn at<T>(&mut self, s: &Spanned<T>, message: impl Into<String>, hint: Option<&str>) {
        self.0.push(PolicyError {
            line: usize::try_from(s.referenced.line()).ok().filter(|l| *l > 0),
            column: usize::try_from(s.referenced.column())
                .ok()
                .filter(|c| *c > 0),
            message: message.into(),
            hint: hint.map(String::from),
        });
    }
}

/// Names of resources, policies, users and groups.
pub(crate) fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().enumerate().all(|(i, c)| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || (i > 0 && matches!(c, b'.' | b'_' | b'-'))
        })
}

const NAME_HINT: &str = "names use lower-case letters, digits, '.', '_' and '-', start with a letter or digit, at most 63 characters";

fn duration(errs: &mut Errors, s: &Spanned<String>, what: &str) -> Option<Duration> {
    match crate::duration::parse(&s.value) {
        Ok(d) => Some(d),
        Err(e) => {
            errs.at(
                s,
                format!("{what}: {e}"),
                Some("durations look like 90s, 30m, 2h, 3d or 1h30m"),
            );
            None
        }
    }
}

fn hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
}

fn hours(errs: &mut Errors, h: &Spanned<RawHours>, ctx: &str) -> Option<Hours> {
    let mut days = Vec::new();
    for d in &h.value.days {
        match ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .position(|x| *x == d.to_ascii_lowercase())
        {
            Some(i) => days.push(i as u32),
            None => errs.at(
                h,
                format!("{ctx}: unknown day {d:?}"),
                Some("days are mon, tue, wed, thu, fri, sat, sun"),
            ),
        }
    }
    match (hhmm(&h.value.from), hhmm(&h.value.to)) {
        (Some(from), Some(to)) if from < to => Some(Hours {
            days,
            from,
            to,
            source: format!("{} {}-{}", h.value.days.join(","), h.value.from, h.value.to),
        }),
        _ => {
            errs.at(
                h,
                format!("{ctx}: hours need from < to as HH:MM"),
                Some("e.g. hours: { days: [mon,tue,wed,thu,fri], from: \"08:00\", to: \"18:00\" }"),
            );
            None
        }
    }
}

fn yaml_error(e: &serde_saphyr::Error) -> PolicyError {
    let loc = e.location();
    let text = e.to_string();
    let message = text.lines().next().unwrap_or(&text).to_string();
    let hint = if message.contains("unknown field") {
        Some("remove the field or fix its spelling".to_string())
    } else if message.contains("missing field") {
        Some("add the field; see examples/demo-policy.yaml".to_string())
    } else {
        None
    };
    PolicyError {
        line: loc
            .and_then(|l| usize::try_from(l.line()).ok())
            .filter(|l| *l > 0),
        column: loc
            .and_then(|l| usize::try_from(l.column()).ok())
            .filter(|c| *c > 0),
        message,
        hint,
    }
}

pub(super) fn parse(yaml: &str) -> Result<PolicySet, PolicyErrors> {
    if yaml.len() > MAX_POLICY_BYTES {
        return Err(PolicyErrors {
            errors: vec![PolicyError {
                line: None,
                column: None,
                message: format!("policy file is {} bytes; the limit is 1 MiB", yaml.len()),
                hint: None,
            }],
        });
    }
    let raw: RawFile = match serde_saphyr::from_str(yaml) {
        Ok(r) => r,
        Err(e) => {
            return Err(PolicyErrors {
                errors: vec![yaml_error(&e)],
            });
        }
    };
    let mut errs = Errors(Vec::new());

    let mut resources: Vec<Resource> = Vec::new();
    for r in &raw.resources {
        let Some(map) = r.value.as_object() else {
            errs.at(
                r,
                "a resource must be a mapping with `name` and `kind`",
                None,
            );
            continue;
        };
        let name = match map.get("name").and_then(Value::as_str) {
            Some(n) if valid_name(n) => n.to_string(),
            Some(n) => {
                errs.at(r, format!("bad resource name {n:?}"), Some(NAME_HINT));
                continue;
            }
            None => {
                errs.at(r, "resource without a `name`", None);
                continue;
            }
        };
        let kind = match map.get("kind").and_then(Value::as_str) {
            Some("postgres") => ResourceKind::Postgres,
            Some("ssh") => ResourceKind::Ssh,
            Some("secret") => ResourceKind::Secret,
            Some("exec") => ResourceKind::Exec,
            Some(k) => {
                errs.at(
                    r,
                    format!("resource {name}: unknown kind {k:?}"),
                    Some("kind is one of postgres, ssh, secret, exec"),
                );
                continue;
            }
            None => {
                errs.at(
                    r,
                    format!("resource {name} has no `kind`"),
                    Some("kind is one of postgres, ssh, secret, exec"),
                );
                continue;
            }
        };
        if resources.iter().any(|x| x.name == name) {
            errs.at(r, format!("resource {name} is declared twice"), None);
            continue;
        }
        let mut settings = map.clone();
        settings.remove("name");
        settings.remove("kind");
        resources.push(Resource {
            name,
            kind,
            settings,
        });
    }

    let mut sinks: Vec<Sink> = Vec::new();
    for r in &raw.sinks {
        let Some(map) = r.value.as_object() else {
            errs.at(r, "a sink must be a mapping with `name` and `kind`", None);
            continue;
        };
        let Some(name) = map
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| valid_name(n))
        else {
            errs.at(r, "sink without a valid `name`", Some(NAME_HINT));
            continue;
        };
        let kind = match map.get("kind").and_then(Value::as_str) {
            Some("webhook") => SinkKind::Webhook,
            Some("slack") => SinkKind::Slack,
            Some("email") => SinkKind::Email,
            Some("pagerduty") => SinkKind::Pagerduty,
            other => {
                errs.at(
                    r,
                    format!("sink {name}: unknown kind {other:?}"),
                    Some("kind is one of webhook, slack, pagerduty, email"),
                );
                continue;
            }
        };
        let allowed = sink_fields(kind);
        for k in map.keys().filter(|k| *k != "name" && *k != "kind") {
            if !allowed.contains(&k.as_str()) {
                errs.at(
                    r,
                    format!(
                        "unknown field `{k}` in {} sink {name}, expected one of {}",
                        kind.as_str(),
                        allowed.join(", ")
                    ),
                    Some("secrets go in the environment or a file: use *_env or *_file"),
                );
            }
        }
        let has = |k: &str| {
            map.get(k)
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty())
        };
        let ok = match kind {
            SinkKind::Webhook => {
                (has("url") || has("url_env")) && (has("secret_env") || has("secret_file"))
            }
            SinkKind::Slack => has("url_env") || has("url_file"),
            SinkKind::Pagerduty => has("routing_key_env") || has("routing_key_file"),
            SinkKind::Email => {
                has("host")
                    && has("from")
                    && (has("to")
                        || map
                            .get("to")
                            .and_then(Value::as_array)
                            .is_some_and(|a| !a.is_empty()))
                    && map
                        .get("tls")
                        .and_then(Value::as_str)
                        .is_none_or(|t| t == "starttls" || t == "none")
            }
        };
        if !ok {
            errs.at(r, format!("{} sink {name} is missing its destination or secret", kind.as_str()), Some(match kind {
                SinkKind::Webhook => "webhook sinks need url (or url_env) and secret_env (or secret_file) for the HMAC signature",
                SinkKind::Slack => "slack sinks need url_env or url_file (the incoming-webhook URL is a secret)",
                SinkKind::Pagerduty => "pagerduty sinks need routing_key_env or routing_key_file",
                SinkKind::Email => "email sinks need host, from and to (tls is starttls or none)",
            }));
        }
        if let Some(t) = map.get("timeout").and_then(Value::as_str)
            && crate::duration::parse(t).is_err()
        {
            errs.at(
                r,
                format!("sink {name}: bad timeout {t:?}"),
                Some("e.g. timeout: 10s"),
            );
        }
        if sinks.iter().any(|x| x.name == name) {
            errs.at(r, format!("sink {name} is declared twice"), None);
            continue;
        }
        let mut settings = map.clone();
        settings.remove("name");
        settings.remove("kind");
        sinks.push(Sink {
            name: name.to_string(),
            kind,
            settings,
        });
    }
    let sink_declared = |n: &str| {
        raw.sinks
            .iter()
            .any(|x| x.value.get("name").and_then(Value::as_str) == Some(n))
    };
    for n in &raw.notify {
        if !sink_declared(&n.value) {
            errs.at(
                n,
                format!("notify refers to undeclared sink {:?}", n.value),
                Some("declare it under sinks:"),
            );
        }
    }

    let mut policies: Vec<Policy> = Vec::new();
    for p in &raw.policies {
        let name = p.name.value.clone();
        if !valid_name(&name) {
            errs.at(
                &p.name,
                format!("bad policy name {name:?}"),
                Some(NAME_HINT),
            );
        }
        if policies.iter().any(|x| x.name == name) {
            errs.at(
                &p.name,
                format!("policy {name} is declared twice"),
                Some("policy names must be unique"),
            );
        }
        if p.resources.is_empty() {
            errs.at(
                &p.name,
                format!("policy {name} lists no resources"),
                Some("add resources: [NAME, ...]"),
            );
        }
        for r in &p.resources {
            if !resources.iter().any(|x| x.name == r.value)
                && !raw
                    .resources
                    .iter()
                    .any(|x| x.value.get("name").and_then(Value::as_str) == Some(r.value.as_str()))
            {
                errs.at(
                    r,
                    format!("policy {name} refers to undeclared resource {:?}", r.value),
                    Some("declare it under resources:"),
                );
            }
        }
        if p.who.value.users.is_empty() && p.who.value.groups.is_empty() {
            errs.at(
                &p.who,
                format!("policy {name}: `who` names no users or groups"),
                Some("who: { groups: [oncall] }"),
            );
        }
        for n in p.who.value.users.iter().chain(&p.who.value.groups) {
            if !valid_name(n) {
                errs.at(
                    &p.who,
                    format!("policy {name}: bad user or group name {n:?}"),
                    Some(NAME_HINT),
                );
            }
        }
        let mut require = Require {
            mfa: true,
            ticket: None,
            min_reason: 0,
            hours: None,
        };
        if let Some(rq) = &p.require {
            require.mfa = rq.mfa.unwrap_or(true);
            require.min_reason = rq.min_reason.unwrap_or(0) as usize;
            if require.min_reason > 2000 {
                errs.at(
                    &p.name,
                    format!(
                        "policy {name}: min_reason {} is above the 2000-character reason limit",
                        require.min_reason
                    ),
                    None,
                );
            }
            if let Some(t) = &rq.ticket {
                match RegexBuilder::new(&t.value)
                    .size_limit(1 << 20)
                    .dfa_size_limit(1 << 20)
                    .build()
                {
                    Ok(re) => require.ticket = Some(re),
                    Err(e) => errs.at(
                        t,
                        format!("policy {name}: bad ticket pattern {:?}: {e}", t.value),
                        Some("use a regular expression such as ^INC-[0-9]+$"),
                    ),
                }
            }
            if let Some(h) = &rq.hours {
                require.hours = hours(&mut errs, h, &format!("policy {name}"));
            }
        }
        let a = &p.approval.value;
        let approval = match a.mode.value.as_str() {
            "auto" => Approval::Auto,
            "deny" => Approval::Deny,
            "quorum" => {
                let count = a.count.unwrap_or(0);
                if count == 0 {
                    errs.at(
                        &p.approval,
                        format!("policy {name}: quorum needs count ≥ 1"),
                        Some("approval: { mode: quorum, count: 1, from: [security] }"),
                    );
                }
                if count > 100 {
                    errs.at(
                        &p.approval,
                        format!("policy {name}: approval count {count} is above 100"),
                        None,
                    );
                }
                if a.from.is_empty() {
                    errs.at(
                        &p.approval,
                        format!("policy {name}: quorum needs `from` groups"),
                        Some("approval: { mode: quorum, count: 1, from: [security] }"),
                    );
                }
                let timeout = a.timeout.as_ref().and_then(|t| {
                    duration(&mut errs, t, &format!("policy {name}: approval timeout"))
                });
                let on_timeout = match a.on_timeout.as_ref().map(|o| (o, o.value.as_str())) {
                    None | Some((_, "deny")) => OnTimeout::Deny,
                    Some((_, "auto")) => OnTimeout::Auto,
                    Some((o, other)) => {
                        errs.at(
                            o,
                            format!("policy {name}: on_timeout {other:?}"),
                            Some("on_timeout is deny or auto"),
                        );
                        OnTimeout::Deny
                    }
                };
                Approval::Quorum {
                    count,
                    from: a.from.clone(),
                    timeout,
                    on_timeout,
                }
            }
            other => {
                errs.at(
                    &a.mode,
                    format!("policy {name}: unknown approval mode {other:?}"),
                    Some("mode is auto, quorum or deny"),
                );
                Approval::Deny
            }
        };
        let d = &p.duration.value;
        let default = duration(
            &mut errs,
            &d.default,
            &format!("policy {name}: duration.default"),
        );
        let max = duration(&mut errs, &d.max, &format!("policy {name}: duration.max"));
        let durations = match (default, max) {
            (Some(default), Some(max)) => {
                if max < default {
                    errs.at(
                        &d.max,
                        format!(
                            "policy {name}: duration.max {} is less than duration.default {}",
                            d.max.value, d.default.value
                        ),
                        Some("max must be at least default"),
                    );
                }
                if max > MAX_GRANT {
                    errs.at(
                        &d.max,
                        format!(
                            "policy {name}: duration.max {} is longer than 7 days",
                            d.max.value
                        ),
                        Some("break-glass access is for emergencies; keep it short"),
                    );
                }
                Durations { default, max }
            }
            _ => Durations {
                default: Duration::from_secs(60),
                max: Duration::from_secs(60),
            },
        };
        let review = match &p.review {
            None => None,
            Some(r) => {
                if r.value.by.is_empty() {
                    errs.at(
                        r,
                        format!("policy {name}: review.by names no groups"),
                        Some("review: { within: 72h, by: [security] }"),
                    );
                }
                duration(
                    &mut errs,
                    &r.value.within,
                    &format!("policy {name}: review.within"),
                )
                .map(|within| Review {
                    within,
                    by: r.value.by.clone(),
                })
            }
        };
        policies.push(Policy {
            name,
            resources: p.resources.iter().map(|r| r.value.clone()).collect(),
            who: Who {
                users: p.who.value.users.clone(),
                groups: p.who.value.groups.clone(),
            },
            require,
            approval,
            duration: durations,
            review,
            notify: p.notify.iter().map(|n| n.value.clone()).collect(),
        });
        for n in &p.notify {
            if !sink_declared(&n.value) {
                errs.at(
                    n,
                    format!(
                        "policy {}: notify refers to undeclared sink {:?}",
                        p.name.value, n.value
                    ),
                    Some("declare it under sinks:"),
                );
            }
        }
    }
    if !errs.0.is_empty() {
        return Err(PolicyErrors { errors: errs.0 });
    }
    let mut anomalies = crate::anomaly::AnomalyRules::default();
    if let Some(a) = &raw.anomalies {
        if let Some(w) = &a.max_grants_per_user
            && let Some(d) = duration(&mut errs, &w.within, "anomalies.max_grants_per_user.within")
        {
            anomalies.per_user = (w.count, d);
        }
        if let Some(w) = &a.max_grants_per_resource
            && let Some(d) = duration(
                &mut errs,
                &w.within,
                "anomalies.max_grants_per_resource.within",
            )
        {
            anomalies.per_resource = (w.count, d);
        }
        if let Some(f) = a.first_grant_on_resource {
            anomalies.first_grant = f;
        }
        if let Some(m) = a.max_extensions {
            anomalies.max_extensions = m;
        }
        if let Some(l) = &a.after_mfa_lockout
            && let Some(d) = duration(&mut errs, l, "anomalies.after_mfa_lockout")
        {
            anomalies.after_lockout = d;
        }
        if let Some(h) = &a.hours {
            anomalies.hours = hours(&mut errs, h, "anomalies");
        }
    }
    if !errs.0.is_empty() {
        return Err(PolicyErrors { errors: errs.0 });
    }
    let admins = raw
        .admins
        .map(|a| Admins {
            users: a.users,
            groups: a.groups,
        })
        .unwrap_or_default();
    Ok(PolicySet {
        resources,
        policies,
        admins,
        sinks,
        notify: raw.notify.into_iter().map(|n| n.value).collect(),
        anomalies,
    })
}
