//! Validation of a policy file's YAML tree into a [`PolicySet`].
//!
//! The file is first parsed into a positioned tree ([`super::yaml`]); this module walks it by
//! hand so that it can go on after a problem and report every problem of the file at once, each
//! at the line and column of the offending key or value.

use super::yaml::{self, Node, position};
use super::*;
use regex::RegexBuilder;
use serde_saphyr::{Location, Spanned};
use std::collections::HashMap;

type N = Spanned<Node>;

const TOP_FIELDS: &[&str] = &[
    "resources",
    "policies",
    "admins",
    "sinks",
    "notify",
    "anomalies",
];
const POLICY_FIELDS: &[&str] = &[
    "name",
    "resources",
    "who",
    "require",
    "approval",
    "duration",
    "review",
    "notify",
];
const WHO_FIELDS: &[&str] = &["users", "groups"];
const REQUIRE_FIELDS: &[&str] = &["mfa", "ticket", "min_reason", "hours"];
const HOURS_FIELDS: &[&str] = &["days", "from", "to"];
const APPROVAL_FIELDS: &[&str] = &["mode", "count", "from", "timeout", "on_timeout"];
const DURATION_FIELDS: &[&str] = &["default", "max"];
const REVIEW_FIELDS: &[&str] = &["within", "by"];
const ADMINS_FIELDS: &[&str] = &["users", "groups"];
const ANOMALY_FIELDS: &[&str] = &[
    "max_grants_per_user",
    "max_grants_per_resource",
    "first_grant_on_resource",
    "max_extensions",
    "after_mfa_lockout",
    "hours",
];
const WINDOW_FIELDS: &[&str] = &["count", "within"];
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Longest accepted ticket pattern, in bytes.
const MAX_PATTERN: usize = 512;
/// The server refuses reasons longer than this, so a higher minimum could never be met.
const MAX_REASON: u64 = 2000;
/// Largest approval quorum.
const MAX_QUORUM: u64 = 100;

const NAME_HINT: &str = "names use lower-case letters, digits, '.', '_' and '-', start with a letter or digit, at most 63 characters";
const DURATION_HINT: &str = "durations look like 90s, 30m, 2h, 3d or 1h30m";

/// Names of resources, policies, sinks, users and groups: `^[a-z0-9][a-z0-9._-]{0,62}$`.
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

/// The entries of a mapping whose keys were all checked against the expected fields.
struct Obj<'a> {
    loc: Location,
    entries: Vec<(&'a str, &'a N, &'a N)>,
    /// Expected fields that an unknown key was reported as a likely misspelling of.
    suggested: Vec<&'static str>,
}

impl<'a> Obj<'a> {
    /// The value of a field; an explicit null (`field:` with nothing after) counts as absent.
    fn get(&self, key: &str) -> Option<&'a N> {
        self.entries
            .iter()
            .find(|(k, _, v)| *k == key && v.value != Node::Null)
            .map(|(_, _, v)| *v)
    }
    /// The key node of a field (for errors about the field itself).
    fn key(&self, key: &str) -> Option<&'a N> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, k, _)| *k)
    }
}

/// Declared names and where each was first declared.
type Names = HashMap<String, Location>;

fn sorted_names(names: &Names) -> Vec<&str> {
    let mut v: Vec<&str> = names.keys().map(String::as_str).collect();
    v.sort_unstable();
    v
}

/// At most this many problems are listed; the rest are counted.
const MAX_ERRORS: usize = 100;

struct V {
    errs: Vec<PolicyError>,
    /// Problems found beyond [`MAX_ERRORS`].
    more: usize,
}

impl V {
    fn err(&mut self, loc: &Location, message: impl Into<String>, hint: Option<String>) {
        if self.errs.len() >= MAX_ERRORS {
            self.more += 1;
            return;
        }
        let (line, column) = position(loc);
        self.errs.push(PolicyError {
            line,
            column,
            message: message.into(),
            hint,
        });
    }

    fn err_h(&mut self, loc: &Location, message: impl Into<String>, hint: &str) {
        self.err(loc, message, Some(hint.to_string()));
    }

    /// Checks that `n` is a mapping whose keys are all among `allowed`.
    fn obj<'a>(&mut self, n: &'a N, what: &str, allowed: &[&'static str]) -> Option<Obj<'a>> {
        let Node::Map(entries) = &n.value else {
            self.err(
                &n.referenced,
                format!("{what} must be a mapping, found {}", n.value.describe()),
                Some(format!("expected fields: {}", allowed.join(", "))),
            );
            return None;
        };
        let mut out = Obj {
            loc: n.referenced,
            entries: Vec::with_capacity(entries.len()),
            suggested: Vec::new(),
        };
        for (k, v) in entries {
            let Node::Str(key) = &k.value else {
                self.err(
                    &k.referenced,
                    format!(
                        "keys in {what} must be field names, found {}",
                        k.value.describe()
                    ),
                    Some(format!("expected one of {}", allowed.join(", "))),
                );
                continue;
            };
            if allowed.contains(&key.as_str()) {
                out.entries.push((key.as_str(), k, v));
            } else {
                if let Some(s) = did_you_mean(key, allowed) {
                    out.suggested.push(s);
                }
                self.err(
                    &k.referenced,
                    format!(
                        "unknown field `{}` in {what}, expected one of {}",
                        clip(key),
                        allowed.join(", ")
                    ),
                    Some(unknown_field_hint(key, allowed)),
                );
            }
        }
        Some(out)
    }

    /// A required field; reports its absence at the mapping.
    fn req<'a>(&mut self, o: &Obj<'a>, key: &str, what: &str, hint: &str) -> Option<&'a N> {
        let v = o.get(key);
        // A misspelt key was already reported with "did you mean `key`?".
        if v.is_none() && !o.suggested.contains(&key) {
            let at = o.key(key).map(|k| k.referenced).unwrap_or(o.loc);
            self.err_h(&at, format!("{what} has no `{key}`"), hint);
        }
        v
    }

    fn string<'a>(&mut self, n: &'a N, what: &str) -> Option<&'a str> {
        match &n.value {
            Node::Str(s) => Some(s.as_str()),
            Node::Int(_) | Node::Float(_) | Node::Bool(_) => {
                self.err_h(
                    &n.referenced,
                    format!("{what} must be a string, found {}", n.value.describe()),
                    "put it in quotes",
                );
                None
            }
            other => {
                self.err(
                    &n.referenced,
                    format!("{what} must be a string, found {}", other.describe()),
                    None,
                );
                None
            }
        }
    }

    fn boolean(&mut self, n: &N, what: &str) -> Option<bool> {
        match n.value {
            Node::Bool(b) => Some(b),
            _ => {
                self.err_h(
                    &n.referenced,
                    format!("{what} must be true or false, found {}", n.value.describe()),
                    "write true or false",
                );
                None
            }
        }
    }

    fn uint(&mut self, n: &N, what: &str, max: u64) -> Option<u64> {
        match n.value {
            Node::Int(i) if i >= 0 && i <= i128::from(max) => u64::try_from(i).ok(),
            Node::Int(i) => {
                self.err(
                    &n.referenced,
                    format!("{what} is {i}; it must be between 0 and {max}"),
                    None,
                );
                None
            }
            _ => {
                self.err(
                    &n.referenced,
                    format!(
                        "{what} must be a whole number, found {}",
                        n.value.describe()
                    ),
                    None,
                );
                None
            }
        }
    }

    fn list<'a>(&mut self, n: &'a N, what: &str, example: &str) -> Option<&'a [N]> {
        match &n.value {
            Node::Seq(items) => Some(items),
            other => {
                self.err(
                    &n.referenced,
                    format!("{what} must be a list, found {}", other.describe()),
                    Some(format!("write it as a list, e.g. {example}")),
                );
                None
            }
        }
    }

    /// A list of strings, each with its position.
    fn strings<'a>(&mut self, n: &'a N, what: &str, example: &str) -> Vec<(&'a str, &'a N)> {
        let Some(items) = self.list(n, what, example) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(s) = self.string(item, &format!("each item of {what}")) {
                out.push((s, item));
            }
        }
        out
    }

    /// A list of user, group or sink names.
    fn names(&mut self, n: &N, what: &str, example: &str) -> Vec<String> {
        let items = self.strings(n, what, example);
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for (s, item) in items {
            if !valid_name(s) {
                self.err_h(
                    &item.referenced,
                    format!("bad name {:?} in {what}", clip(s)),
                    NAME_HINT,
                );
            } else if !out.iter().any(|x| x == s) {
                out.push(s.to_string());
            }
        }
        out
    }

    fn duration(&mut self, n: &N, what: &str) -> Option<Duration> {
        let s = match &n.value {
            Node::Str(s) => s,
            Node::Int(i) => {
                self.err_h(
                    &n.referenced,
                    format!("{what} is a bare number ({i}); a duration needs a unit"),
                    &format!("write e.g. {i}m or {i}s"),
                );
                return None;
            }
            other => {
                self.err_h(
                    &n.referenced,
                    format!("{what} must be a duration, found {}", other.describe()),
                    DURATION_HINT,
                );
                return None;
            }
        };
        match crate::duration::parse(s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err_h(&n.referenced, format!("{what}: {e}"), DURATION_HINT);
                None
            }
        }
    }
}

/// Clips user text quoted back in messages.
fn clip(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(61).collect();
        c.push_str("...");
        c
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest expected field, if the unknown one looks like a typo of it.
pub(super) fn did_you_mean<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    // Bounded work: no suggestions for very long keys or very many candidates.
    if key.len() > 64 || allowed.len() > 1000 {
        return None;
    }
    let lower = key.to_ascii_lowercase();
    let underscored = lower.replace('-', "_");
    let close = allowed
        .iter()
        .map(|a| {
            let d = edit_distance(&lower, a).min(edit_distance(&underscored, a));
            (d, *a)
        })
        .filter(|(d, a)| *d <= if a.len() <= 4 { 1 } else { 2 })
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a);
    // Otherwise a longer or shorter form: `automatic` → `auto`, `principal` → `principals`.
    close.or_else(|| {
        allowed.iter().copied().find(|a| {
            a.len() >= 3
                && lower.len() >= 3
                && (lower.starts_with(a) || a.starts_with(lower.as_str()))
        })
    })
}

/// Where a field belongs when it was written one level too high in a policy.
fn belongs_under(key: &str) -> Option<&'static str> {
    [
        ("who", WHO_FIELDS),
        ("require", REQUIRE_FIELDS),
        ("approval", APPROVAL_FIELDS),
        ("duration", DURATION_FIELDS),
        ("review", REVIEW_FIELDS),
    ]
    .into_iter()
    .find(|(_, fields)| fields.contains(&key))
    .map(|(parent, _)| parent)
}

fn unknown_field_hint(key: &str, allowed: &[&str]) -> String {
    if let Some(s) = did_you_mean(key, allowed) {
        return format!("did you mean `{s}`?");
    }
    if allowed == POLICY_FIELDS
        && let Some(parent) = belongs_under(key)
    {
        return format!("`{key}` belongs under `{parent}:`");
    }
    "remove it or fix its spelling".to_string()
}

/// `HH:MM` as minutes since midnight (`24:00` allowed as an end).
fn hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
}

/// The name of a mapping entry, if it is a string, without reporting anything.
fn peek_name(n: &N) -> Option<&str> {
    let Node::Map(entries) = &n.value else {
        return None;
    };
    entries
        .iter()
        .find_map(|(k, v)| match (&k.value, &v.value) {
            (Node::Str(k), Node::Str(v)) if k == "name" => Some(v.as_str()),
            _ => None,
        })
}

/// Settings each sink kind accepts; `*_env` / `*_file` name where a secret lives.
fn sink_fields(kind: SinkKind) -> &'static [&'static str] {
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

fn yaml_error(e: yaml::YamlError) -> PolicyError {
    let (message, hint) = if e.budget {
        let detail = e
            .message
            .strip_prefix("budget breached: ")
            .unwrap_or(&e.message);
        let detail = detail.split(" at line ").next().unwrap_or(detail);
        let what = match detail.split([' ', '{']).next().unwrap_or("") {
            "Depth" => "nesting deeper than 32 levels".to_string(),
            "Documents" => "more than one YAML document (---)".to_string(),
            "Aliases"
            | "Anchors"
            | "RecordedAnchorEvents"
            | "RecordedAnchorBytes"
            | "AliasReplayLimitExceeded" => {
                format!("anchors and aliases expand to too much data ({detail})")
            }
            _ => detail.to_string(),
        };
        (
            format!("YAML refused by the parser's safety limits: {what}"),
            Some(
                "policy files must be plain: at most one document, nesting under 32 levels, few anchors and aliases"
                    .to_string(),
            ),
        )
    } else if let Some(rest) = e.message.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        (
            format!("duplicate key `{}`", clip(key)),
            Some("each key may appear only once in a mapping".to_string()),
        )
    } else {
        (
            format!("invalid YAML: {}", e.message),
            Some("check indentation, brackets and quotes around this position".to_string()),
        )
    };
    PolicyError {
        line: e.line,
        column: e.column,
        message,
        hint,
    }
}

fn one_error(message: String, hint: Option<&str>) -> PolicyErrors {
    PolicyErrors {
        errors: vec![PolicyError {
            line: None,
            column: None,
            message,
            hint: hint.map(String::from),
        }],
    }
}

pub(super) fn parse(text: &str) -> Result<PolicySet, PolicyErrors> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(one_error(
            format!(
                "policy file is {} bytes; the limit is 1 MiB ({MAX_POLICY_BYTES} bytes)",
                text.len()
            ),
            Some("split it or remove unused policies"),
        ));
    }
    let root = yaml::parse(text).map_err(|e| PolicyErrors {
        errors: vec![yaml_error(e)],
    })?;
    if root.value == Node::Null {
        return Err(one_error(
            "the policy file is empty".into(),
            Some("declare resources: and policies:, see examples/demo-policy.yaml"),
        ));
    }
    let mut v = V {
        errs: Vec::new(),
        more: 0,
    };
    let set = file(&mut v, &root);
    if v.errs.is_empty()
        && let Some(set) = set
    {
        return Ok(set);
    }
    let mut errors = v.errs;
    // File order; errors without a position last.
    errors.sort_by_key(|e| (e.line.is_none(), e.line, e.column));
    if v.more > 0 {
        errors.push(PolicyError {
            line: None,
            column: None,
            message: format!("... and {} more problems", v.more),
            hint: Some("fix the problems above first".into()),
        });
    }
    if errors.is_empty() {
        errors.push(PolicyError {
            line: None,
            column: None,
            message: "the policy file is invalid".into(),
            hint: None,
        });
    }
    Err(PolicyErrors { errors })
}

fn file(v: &mut V, root: &N) -> Option<PolicySet> {
    let top = v.obj(root, "the policy file", TOP_FIELDS)?;

    // Resources.
    let mut resources: Vec<Resource> = Vec::new();
    let mut declared = Names::new();
    if let Some(list) = top.get("resources").and_then(|n| {
        v.list(
            n,
            "`resources`",
            "resources: [{ name: prod-db, kind: postgres }]",
        )
    }) {
        for (i, r) in list.iter().enumerate() {
            if let Some(r) = resource(v, r, i, &mut declared) {
                resources.push(r);
            }
        }
    }

    // Sinks and the top-level notify.
    let mut sinks: Vec<Sink> = Vec::new();
    let mut sink_names = Names::new();
    if let Some(list) = top.get("sinks").and_then(|n| {
        v.list(
            n,
            "`sinks`",
            "sinks: [{ name: sec-hook, kind: webhook, url: ..., secret_env: ... }]",
        )
    }) {
        for (i, s) in list.iter().enumerate() {
            if let Some(s) = sink(v, s, i, &mut sink_names) {
                sinks.push(s);
            }
        }
    }
    let notify = top
        .get("notify")
        .map(|n| notify_list(v, n, "top-level `notify`", &sink_names))
        .unwrap_or_default();

    // Admins.
    let admins = match top.get("admins") {
        None => Admins::default(),
        Some(n) => admins(v, n).unwrap_or_default(),
    };

    // Policies.
    let mut policies: Vec<Policy> = Vec::new();
    let mut policy_names = Names::new();
    if let Some(list) = top.get("policies").and_then(|n| {
        v.list(
            n,
            "`policies`",
            "policies: [{ name: dba-emergency, resources: [prod-db], ... }]",
        )
    }) {
        for (i, p) in list.iter().enumerate() {
            if let Some(p) = policy(v, p, i, &declared, &sink_names, &mut policy_names) {
                policies.push(p);
            }
        }
    }

    let anomalies = match top.get("anomalies") {
        None => AnomalyRules::default(),
        Some(n) => anomalies(v, n),
    };

    Some(PolicySet {
        resources,
        policies,
        admins,
        sinks,
        notify,
        anomalies,
    })
}

/// Checks a `name`, records it, and reports duplicates. Returns the name if valid and new.
fn name_of(v: &mut V, o: &Obj<'_>, what: &str, index: usize, seen: &mut Names) -> Option<String> {
    let n = v.req(
        o,
        "name",
        &format!("{what} #{}", index + 1),
        &format!("give every {what} a unique name, e.g. name: prod-db"),
    )?;
    let name = v.string(n, &format!("the name of {what} #{}", index + 1))?;
    if !valid_name(name) {
        v.err_h(
            &n.referenced,
            format!("bad {what} name {:?}", clip(name)),
            NAME_HINT,
        );
        // Still record it so references to it do not produce a second, confusing error.
        seen.entry(name.to_string()).or_insert(n.referenced);
        return None;
    }
    if let Some(first) = seen.get(name) {
        let first = position(first).0;
        v.err_h(
            &n.referenced,
            match first {
                Some(l) => format!("{what} `{name}` is declared twice (first at line {l})"),
                None => format!("{what} `{name}` is declared twice"),
            },
            &format!("{what} names must be unique"),
        );
        return None;
    }
    seen.insert(name.to_string(), n.referenced);
    Some(name.to_string())
}

fn resource(v: &mut V, n: &N, index: usize, declared: &mut Names) -> Option<Resource> {
    let Node::Map(entries) = &n.value else {
        v.err_h(
            &n.referenced,
            format!(
                "resource #{} must be a mapping with `name` and `kind`, found {}",
                index + 1,
                n.value.describe()
            ),
            "- name: prod-db\n    kind: postgres",
        );
        return None;
    };
    // Resources keep every other field as connector settings: accept any string key here.
    let mut o = Obj {
        loc: n.referenced,
        entries: Vec::with_capacity(entries.len()),
        suggested: Vec::new(),
    };
    for (k, val) in entries {
        match &k.value {
            Node::Str(key) => o.entries.push((key.as_str(), k, val)),
            other => v.err(
                &k.referenced,
                format!(
                    "keys in resource #{} must be field names, found {}",
                    index + 1,
                    other.describe()
                ),
                None,
            ),
        }
    }
    let name = name_of(v, &o, "resource", index, declared);
    let label = match &name {
        Some(n) => format!("resource `{n}`"),
        None => format!("resource #{}", index + 1),
    };
    const KIND_HINT: &str = "kind is one of postgres, ssh, secret, exec";
    let kind = v.req(&o, "kind", &label, KIND_HINT).and_then(|k| {
        let s = v.string(k, &format!("the kind of {label}"))?;
        match s {
            "postgres" => Some(ResourceKind::Postgres),
            "ssh" => Some(ResourceKind::Ssh),
            "secret" => Some(ResourceKind::Secret),
            "exec" => Some(ResourceKind::Exec),
            other => {
                let hint = match did_you_mean(other, &["postgres", "ssh", "secret", "exec"]) {
                    Some(s) => format!("did you mean `{s}`? {KIND_HINT}"),
                    None => KIND_HINT.to_string(),
                };
                v.err(
                    &k.referenced,
                    format!("{label} has unknown kind {:?}", clip(other)),
                    Some(hint),
                );
                None
            }
        }
    });
    if let Some(kind) = kind {
        resource_settings(v, &o, kind, &label);
    }
    let settings = o
        .entries
        .iter()
        .filter(|(k, _, _)| *k != "name" && *k != "kind")
        .map(|(k, _, val)| (k.to_string(), val.value.to_json()))
        .collect();
    Some(Resource {
        name: name?,
        kind: kind?,
        settings,
    })
}

/// Type checks for the connection settings the connectors know; other fields pass through.
fn resource_settings(v: &mut V, o: &Obj<'_>, kind: ResourceKind, label: &str) {
    let what = |f: &str| format!("`{f}` of {label}");
    match kind {
        ResourceKind::Ssh => {
            if let Some(p) = o.get("principals") {
                let names = v.strings(p, &what("principals"), "principals: [root]");
                if names.is_empty() && matches!(&p.value, Node::Seq(_)) {
                    v.err_h(
                        &p.referenced,
                        format!("{} is empty", what("principals")),
                        "list the login names the certificate allows, e.g. principals: [root]",
                    );
                }
            }
        }
        ResourceKind::Postgres => {
            if let Some(u) = o.get("admin_url_env") {
                v.string(u, &what("admin_url_env"));
            }
            if let Some(r) = o.get("grant_roles") {
                v.strings(r, &what("grant_roles"), "grant_roles: [app_admin]");
            }
            if let Some(c) = o.get("connection_limit")
                && v.uint(c, &what("connection_limit"), 10_000) == Some(0)
            {
                v.err_h(
                    &c.referenced,
                    format!("{} is 0", what("connection_limit")),
                    "allow at least one connection",
                );
            }
        }
        ResourceKind::Exec => {
            for key in ["grant", "revoke"] {
                let example = format!("{key}: [\"/usr/local/bin/{key}-hook\"]");
                let Some(a) = v.req(o, key, label, &example) else {
                    continue;
                };
                let argv = v.strings(a, &what(key), &example);
                match argv.first() {
                    None if matches!(&a.value, Node::Seq(_)) => {
                        v.err_h(&a.referenced, format!("{} is empty", what(key)), &example)
                    }
                    Some((prog, item)) if !prog.starts_with('/') => v.err_h(
                        &item.referenced,
                        format!(
                            "{} must start with an absolute program path, found {:?}",
                            what(key),
                            clip(prog)
                        ),
                        &example,
                    ),
                    _ => {}
                }
            }
            if let Some(t) = o.get("timeout") {
                v.duration(t, &what("timeout"));
            }
        }
        ResourceKind::Secret => {}
    }
}

fn sink(v: &mut V, n: &N, index: usize, seen: &mut Names) -> Option<Sink> {
    const KIND_HINT: &str = "kind is one of webhook, slack, pagerduty, email";
    let kind = match &n.value {
        Node::Map(entries) => entries
            .iter()
            .find_map(|(k, val)| match (&k.value, &val.value) {
                (Node::Str(k), Node::Str(s)) if k == "kind" => Some((s.as_str(), val)),
                _ => None,
            }),
        _ => None,
    };
    let kind = match kind {
        Some(("webhook", _)) => SinkKind::Webhook,
        Some(("slack", _)) => SinkKind::Slack,
        Some(("pagerduty", _)) => SinkKind::Pagerduty,
        Some(("email", _)) => SinkKind::Email,
        Some((other, at)) => {
            // Keep the name known so that references to it are not reported as well.
            if let Some(name) = peek_name(n) {
                seen.entry(name.to_string()).or_insert(n.referenced);
            }
            v.err_h(
                &at.referenced,
                format!("sink #{} has unknown kind {:?}", index + 1, clip(other)),
                KIND_HINT,
            );
            return None;
        }
        None => {
            let label = peek_name(n).map_or(format!("sink #{}", index + 1), |s| {
                format!("sink `{}`", clip(s))
            });
            v.err_h(&n.referenced, format!("{label} has no `kind`"), KIND_HINT);
            return None;
        }
    };
    let label = peek_name(n).map_or(format!("{} sink #{}", kind.as_str(), index + 1), |s| {
        format!("{} sink `{}`", kind.as_str(), clip(s))
    });
    let o = v.obj(n, &label, sink_fields(kind))?;
    let name = name_of(v, &o, "sink", index, seen);
    let has = |k: &str| match o.get(k).map(|n| &n.value) {
        Some(Node::Str(s)) => !s.is_empty(),
        Some(Node::Seq(items)) => !items.is_empty(),
        _ => false,
    };
    let ok = match kind {
        SinkKind::Webhook => {
            (has("url") || has("url_env")) && (has("secret_env") || has("secret_file"))
        }
        SinkKind::Slack => has("url_env") || has("url_file"),
        SinkKind::Pagerduty => has("routing_key_env") || has("routing_key_file"),
        SinkKind::Email => has("host") && has("from") && has("to"),
    };
    if !ok {
        v.err_h(
            &o.loc,
            format!("{label} is missing its destination or secret"),
            match kind {
                SinkKind::Webhook => "webhook sinks need url (or url_env) and secret_env (or secret_file) for the HMAC signature",
                SinkKind::Slack => "slack sinks need url_env or url_file (the incoming-webhook URL is a secret)",
                SinkKind::Pagerduty => "pagerduty sinks need routing_key_env or routing_key_file",
                SinkKind::Email => "email sinks need host, from and to",
            },
        );
    }
    if let Some(t) = o.get("tls")
        && let Some(s) = v.string(t, &format!("`tls` of {label}"))
        && s != "starttls"
        && s != "none"
    {
        v.err_h(
            &t.referenced,
            format!("`tls` of {label} is {:?}", clip(s)),
            "tls is starttls (the default) or none",
        );
    }
    if let Some(p) = o.get("port") {
        v.uint(p, &format!("`port` of {label}"), 65_535);
    }
    if let Some(t) = o.get("timeout") {
        v.duration(t, &format!("`timeout` of {label}"));
    }
    let settings = o
        .entries
        .iter()
        .filter(|(k, _, _)| *k != "name" && *k != "kind")
        .map(|(k, _, val)| (k.to_string(), val.value.to_json()))
        .collect();
    Some(Sink {
        name: name?,
        kind,
        settings,
    })
}

fn notify_list(v: &mut V, n: &N, what: &str, sinks: &Names) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (s, item) in v.strings(n, what, "notify: [sec-hook]") {
        if !sinks.contains_key(s) {
            let hint = match did_you_mean(s, &sorted_names(sinks)) {
                Some(m) => format!("declare it under sinks: (or did you mean `{m}`?)"),
                None => "declare it under sinks:".to_string(),
            };
            v.err(
                &item.referenced,
                format!("{what} refers to undeclared sink {:?}", clip(s)),
                Some(hint),
            );
        } else if !out.iter().any(|x| x == s) {
            out.push(s.to_string());
        }
    }
    out
}

fn admins(v: &mut V, n: &N) -> Option<Admins> {
    let before = v.errs.len();
    let o = v.obj(n, "`admins`", ADMINS_FIELDS)?;
    let users = o
        .get("users")
        .map(|n| v.names(n, "`admins.users`", "users: [alice]"))
        .unwrap_or_default();
    let groups = o
        .get("groups")
        .map(|n| v.names(n, "`admins.groups`", "groups: [security]"))
        .unwrap_or_default();
    if users.is_empty() && groups.is_empty() {
        if v.errs.len() > before {
            return None;
        }
        v.err_h(
            &o.loc,
            "`admins` names no users or groups: nobody could revoke grants or export the audit trail",
            "admins: { groups: [security] }, or remove it to use the default group admin",
        );
        return None;
    }
    Some(Admins { users, groups })
}

fn policy(
    v: &mut V,
    n: &N,
    index: usize,
    resources: &Names,
    sinks: &Names,
    seen: &mut Names,
) -> Option<Policy> {
    let label = peek_name(n).map_or(format!("policy #{}", index + 1), |s| {
        format!("policy `{}`", clip(s))
    });
    let o = v.obj(n, &label, POLICY_FIELDS)?;
    let name = name_of(v, &o, "policy", index, seen);

    // resources
    let mut res: Vec<String> = Vec::new();
    if let Some(r) = v.req(
        &o,
        "resources",
        &label,
        "list the resources it covers, e.g. resources: [prod-db]",
    ) {
        let list = v.strings(
            r,
            &format!("`resources` of {label}"),
            "resources: [prod-db]",
        );
        if list.is_empty() && matches!(&r.value, Node::Seq(_)) {
            v.err_h(
                &r.referenced,
                format!("{label} lists no resources"),
                "resources: [prod-db]",
            );
        }
        for (s, item) in list {
            if !resources.contains_key(s) {
                let hint = match did_you_mean(s, &sorted_names(resources)) {
                    Some(m) => format!("declare it under resources: (or did you mean `{m}`?)"),
                    None => "declare it under resources:".to_string(),
                };
                v.err(
                    &item.referenced,
                    format!("{label} refers to undeclared resource {:?}", clip(s)),
                    Some(hint),
                );
            } else if !res.iter().any(|x| x == s) {
                res.push(s.to_string());
            }
        }
    }

    // who
    let who = v
        .req(&o, "who", &label, "who: { groups: [oncall] }")
        .and_then(|w| {
            let what = format!("`who` of {label}");
            let before = v.errs.len();
            let wo = v.obj(w, &what, WHO_FIELDS)?;
            let users = wo
                .get("users")
                .map(|n| v.names(n, &format!("`who.users` of {label}"), "users: [alice]"))
                .unwrap_or_default();
            let groups = wo
                .get("groups")
                .map(|n| v.names(n, &format!("`who.groups` of {label}"), "groups: [oncall]"))
                .unwrap_or_default();
            if users.is_empty() && groups.is_empty() {
                if v.errs.len() > before {
                    return None;
                }
                v.err_h(
                    &w.referenced,
                    format!("{what} names no users or groups"),
                    "who: { groups: [oncall] } or who: { users: [alice] }",
                );
                return None;
            }
            Some(Who { users, groups })
        });

    // require
    let require = match o.get("require") {
        None => Some(Require {
            mfa: true,
            ticket: None,
            min_reason: 0,
            hours: None,
        }),
        Some(r) => require(v, r, &label),
    };

    let approval = v
        .req(
            &o,
            "approval",
            &label,
            "approval: { mode: auto } (or quorum, or deny)",
        )
        .and_then(|a| approval(v, a, &label));

    let duration = v
        .req(
            &o,
            "duration",
            &label,
            "duration: { default: 30m, max: 2h }",
        )
        .and_then(|d| durations(v, d, &label));

    let review = match o.get("review") {
        None => Some(None),
        Some(r) => review(v, r, &label).map(Some),
    };

    let notify = o
        .get("notify")
        .map(|n| notify_list(v, n, &format!("`notify` of {label}"), sinks))
        .unwrap_or_default();

    Some(Policy {
        name: name?,
        resources: res,
        who: who?,
        require: require?,
        approval: approval?,
        duration: duration?,
        review: review?,
        notify,
    })
}

fn require(v: &mut V, n: &N, label: &str) -> Option<Require> {
    let what = format!("`require` of {label}");
    let o = v.obj(n, &what, REQUIRE_FIELDS)?;
    let mut ok = true;
    let mfa = match o.get("mfa") {
        None => true,
        Some(m) => v
            .boolean(m, &format!("`require.mfa` of {label}"))
            .unwrap_or_else(|| {
                ok = false;
                true
            }),
    };
    let min_reason = match o.get("min_reason") {
        None => 0,
        Some(m) => match v.uint(m, &format!("`require.min_reason` of {label}"), MAX_REASON) {
            Some(x) => usize::try_from(x).unwrap_or(0),
            None => {
                ok = false;
                0
            }
        },
    };
    let mut ticket = None;
    if let Some(t) = o.get("ticket") {
        match v.string(t, &format!("`require.ticket` of {label}")) {
            None => ok = false,
            Some(src) if src.len() > MAX_PATTERN => {
                v.err_h(
                    &t.referenced,
                    format!(
                        "ticket pattern of {label} is {} bytes long; the limit is {MAX_PATTERN}",
                        src.len()
                    ),
                    "use a short regular expression such as ^INC-[0-9]+$",
                );
                ok = false;
            }
            Some(src) => match RegexBuilder::new(src)
                .size_limit(1 << 20)
                .dfa_size_limit(1 << 20)
                .nest_limit(32)
                .build()
            {
                Ok(re) => ticket = Some(re),
                Err(e) => {
                    let detail = e.to_string();
                    let detail = detail
                        .lines()
                        .rev()
                        .find(|l| l.starts_with("error: "))
                        .map_or(detail.trim(), |l| l.trim_start_matches("error: "));
                    v.err_h(
                        &t.referenced,
                        format!("bad ticket pattern {:?} in {label}: {detail}", clip(src)),
                        "write a regular expression such as ^INC-[0-9]+$ (quote it in YAML)",
                    );
                    ok = false;
                }
            },
        }
    }
    let hours = match o.get("hours") {
        None => None,
        Some(h) => {
            let h = hours(v, h, &format!("`require.hours` of {label}"));
            ok &= h.is_some();
            h
        }
    };
    ok.then_some(Require {
        mfa,
        ticket,
        min_reason,
        hours,
    })
}

fn hours(v: &mut V, n: &N, what: &str) -> Option<Hours> {
    const EXAMPLE: &str =
        "hours: { days: [mon, tue, wed, thu, fri], from: \"08:00\", to: \"18:00\" }";
    let o = v.obj(n, what, HOURS_FIELDS)?;
    let mut ok = true;
    let mut days: Vec<u32> = Vec::new();
    let mut day_names: Vec<&str> = Vec::new();
    match o.get("days") {
        None => {
            days = (0..7).collect();
            day_names = DAYS.to_vec();
        }
        Some(d) => {
            for (s, item) in v.strings(d, &format!("`days` of {what}"), "days: [mon, tue]") {
                let lower = s.to_ascii_lowercase();
                let short = lower.get(..3).unwrap_or(&lower);
                match DAYS.iter().position(|x| *x == short) {
                    Some(i) if lower.len() == 3 || full_day(&lower) => {
                        if !days.contains(&(i as u32)) {
                            days.push(i as u32);
                            day_names.push(DAYS[i]);
                        }
                    }
                    _ => {
                        v.err_h(
                            &item.referenced,
                            format!("unknown day {:?} in {what}", clip(s)),
                            "days are mon, tue, wed, thu, fri, sat, sun",
                        );
                        ok = false;
                    }
                }
            }
            if days.is_empty() && ok {
                v.err_h(&d.referenced, format!("{what} lists no days"), EXAMPLE);
                ok = false;
            }
        }
    }
    let mut time = |key: &str| -> Option<(u32, String)> {
        let t = v.req(&o, key, what, EXAMPLE)?;
        let s = v.string(t, &format!("`{key}` of {what}"))?;
        match hhmm(s) {
            Some(m) => Some((m, s.trim().to_string())),
            None => {
                v.err_h(
                    &t.referenced,
                    format!(
                        "`{key}` of {what} is {:?}; expected a time HH:MM (UTC)",
                        clip(s)
                    ),
                    "e.g. \"08:00\" or \"18:30\"",
                );
                None
            }
        }
    };
    let from = time("from");
    let to = time("to");
    let (Some((from, from_s)), Some((to, to_s))) = (from, to) else {
        return None;
    };
    if from >= to {
        let at = o.get("to").map_or(o.loc, |t| t.referenced);
        v.err_h(
            &at,
            format!("{what}: `to` ({to_s}) must be later than `from` ({from_s})"),
            "windows are within one UTC day; use 00:00 to 24:00 for the whole day",
        );
        return None;
    }
    days.sort_unstable();
    ok.then(|| Hours {
        days,
        from,
        to,
        source: format!("{} {from_s}-{to_s}", day_names.join(",")),
    })
}

fn full_day(s: &str) -> bool {
    [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    .contains(&s)
}

fn approval(v: &mut V, n: &N, label: &str) -> Option<Approval> {
    let what = format!("`approval` of {label}");
    let o = v.obj(n, &what, APPROVAL_FIELDS)?;
    const MODE_HINT: &str =
        "mode is auto (access now, review after), quorum (N approvals from named groups) or deny";
    let mode_node = v.req(&o, "mode", &what, MODE_HINT)?;
    let mode = v.string(mode_node, &format!("`approval.mode` of {label}"))?;
    let quorum_only = |v: &mut V, mode: &str| {
        for key in ["count", "from", "timeout", "on_timeout"] {
            if let Some(k) = o.get(key).and(o.key(key)) {
                v.err_h(
                    &k.referenced,
                    format!("`approval.{key}` of {label} only applies to mode quorum, not {mode}"),
                    "remove it, or use mode: quorum",
                );
            }
        }
    };
    match mode {
        "auto" => {
            quorum_only(v, "auto");
            Some(Approval::Auto)
        }
        "deny" => {
            quorum_only(v, "deny");
            Some(Approval::Deny)
        }
        "quorum" => {
            const EXAMPLE: &str = "approval: { mode: quorum, count: 1, from: [security] }";
            let mut ok = true;
            let count = match v.req(&o, "count", &format!("quorum {what}"), EXAMPLE) {
                None => None,
                Some(c) => match c.value {
                    Node::Int(i) if i > i128::from(MAX_QUORUM) => {
                        v.err_h(
                            &c.referenced,
                            format!(
                                "`approval.count` of {label} is {i}; the limit is {MAX_QUORUM}"
                            ),
                            "a quorum is a handful of people",
                        );
                        None
                    }
                    _ => match v.uint(c, &format!("`approval.count` of {label}"), MAX_QUORUM) {
                        Some(0) => {
                            v.err_h(
                                &c.referenced,
                                format!("`approval.count` of {label} is 0; a quorum needs at least 1 approval"),
                                "use count: 1 or more, or mode: auto",
                            );
                            None
                        }
                        x => x.and_then(|x| u32::try_from(x).ok()),
                    },
                },
            };
            let from = match v.req(&o, "from", &format!("quorum {what}"), EXAMPLE) {
                None => Vec::new(),
                Some(f) => {
                    let groups = v.names(
                        f,
                        &format!("`approval.from` of {label}"),
                        "from: [security]",
                    );
                    if groups.is_empty() && matches!(&f.value, Node::Seq(_)) {
                        v.err_h(
                            &f.referenced,
                            format!("`approval.from` of {label} names no groups"),
                            "from: [security]",
                        );
                    }
                    groups
                }
            };
            if from.is_empty() {
                ok = false;
            }
            let timeout = match o.get("timeout") {
                None => None,
                Some(t) => {
                    let d = v.duration(t, &format!("`approval.timeout` of {label}"));
                    ok &= d.is_some();
                    d
                }
            };
            let on_timeout = match o.get("on_timeout") {
                None => OnTimeout::Deny,
                Some(t) => {
                    let r = match v.string(t, &format!("`approval.on_timeout` of {label}")) {
                        Some("deny") => Some(OnTimeout::Deny),
                        Some("auto") => Some(OnTimeout::Auto),
                        Some(other) => {
                            v.err_h(
                                &t.referenced,
                                format!("`approval.on_timeout` of {label} is {:?}", clip(other)),
                                "on_timeout is deny (the default) or auto",
                            );
                            None
                        }
                        None => None,
                    };
                    if r.is_some() && o.get("timeout").is_none() {
                        v.err_h(
                            &t.referenced,
                            format!(
                                "`approval.on_timeout` of {label} has no effect without `timeout`"
                            ),
                            "add timeout: 10m, or remove on_timeout",
                        );
                        ok = false;
                    }
                    ok &= r.is_some();
                    r.unwrap_or(OnTimeout::Deny)
                }
            };
            let count = count?;
            ok.then_some(Approval::Quorum {
                count,
                from,
                timeout,
                on_timeout,
            })
        }
        other => {
            let hint = match did_you_mean(other, &["auto", "quorum", "deny"]) {
                Some(m) => format!("did you mean `{m}`? {MODE_HINT}"),
                None => MODE_HINT.to_string(),
            };
            v.err(
                &mode_node.referenced,
                format!("unknown approval mode {:?} in {label}", clip(other)),
                Some(hint),
            );
            None
        }
    }
}

fn durations(v: &mut V, n: &N, label: &str) -> Option<Durations> {
    let what = format!("`duration` of {label}");
    let o = v.obj(n, &what, DURATION_FIELDS)?;
    const EXAMPLE: &str = "duration: { default: 30m, max: 2h }";
    let dn = v.req(&o, "default", &what, EXAMPLE);
    let mn = v.req(&o, "max", &what, EXAMPLE);
    let default = dn.and_then(|d| v.duration(d, &format!("`duration.default` of {label}")));
    let max = mn.and_then(|m| v.duration(m, &format!("`duration.max` of {label}")));
    let (Some(default), Some(max), Some(mn)) = (default, max, mn) else {
        return None;
    };
    let mut ok = true;
    if max > MAX_GRANT {
        v.err_h(
            &mn.referenced,
            format!(
                "`duration.max` of {label} is {}; no grant may be longer than {}",
                fmt_d(max),
                fmt_d(MAX_GRANT)
            ),
            "break-glass access is for emergencies: keep it short and extend if needed",
        );
        ok = false;
    }
    if max < default {
        v.err_h(
            &mn.referenced,
            format!(
                "`duration.max` of {label} ({}) is less than duration.default ({})",
                fmt_d(max),
                fmt_d(default)
            ),
            "max must be at least default",
        );
        ok = false;
    }
    ok.then_some(Durations { default, max })
}

fn review(v: &mut V, n: &N, label: &str) -> Option<Review> {
    let what = format!("`review` of {label}");
    let o = v.obj(n, &what, REVIEW_FIELDS)?;
    const EXAMPLE: &str = "review: { within: 72h, by: [security] }";
    let within = v
        .req(&o, "within", &what, EXAMPLE)
        .and_then(|w| v.duration(w, &format!("`review.within` of {label}")));
    let by = match v.req(&o, "by", &what, EXAMPLE) {
        None => Vec::new(),
        Some(b) => {
            let groups = v.names(b, &format!("`review.by` of {label}"), "by: [security]");
            if groups.is_empty() && matches!(&b.value, Node::Seq(_)) {
                v.err_h(
                    &b.referenced,
                    format!("`review.by` of {label} names no groups"),
                    "by: [security]",
                );
            }
            groups
        }
    };
    if by.is_empty() {
        return None;
    }
    Some(Review {
        within: within?,
        by,
    })
}

fn anomalies(v: &mut V, n: &N) -> AnomalyRules {
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
