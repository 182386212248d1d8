//! Validation of a policy file's YAML tree into a [`PolicySet`].
//!
//! The file is first parsed into a positioned tree ([`super::yaml`]); this module walks it by
//! hand so that it can go on after a problem and report every problem of the file at once, each
//! at the line and column of the offending key or value.
//!
//! `walker` holds the primitives (the error list, typed reads of nodes, names), `fields` the
//! fields each mapping accepts and `hints` the "did you mean" suggestions; then one module per
//! section of the file: `resources`, `sinks`, `policies` (with `require`, `hours`, `approval`),
//! `anomalies` and `streams` (with `witness`). This module parses the text and walks the top level.

mod anomalies;
mod approval;
mod drills;
mod fields;
mod hints;
mod hours;
mod policies;
mod require;
mod resources;
mod sinks;
mod streams;
mod walker;

pub use streams::{DEFAULT_KEEP, DEFAULT_MAX_MESSAGE, DEFAULT_MAX_SIZE, parse_size};

pub(super) use hints::did_you_mean;

use super::yaml::{self, Node};
use super::{
    Admins, AnomalyRules, GlassCaseRules, MAX_POLICY_BYTES, Policy, PolicyError, PolicyErrors,
    PolicySet, Resource, Sink,
};
use anomalies::anomalies;
use fields::{ADMINS_FIELDS, TOP_FIELDS};
use policies::policy;
use resources::resource;
use sinks::{notify_list, sink};
use streams::{stream, witness};
use walker::{N, Names, V, clip};

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

    // Audit streams and the checkpoint witness.
    let mut streams = Vec::new();
    let mut stream_names = Names::new();
    if let Some(list) = top.get("streams").and_then(|n| {
        v.list(
            n,
            "`streams`",
            "streams: [{ name: siem, kind: syslog, host: siem.example.org, ca_file: /etc/breakglass/siem-ca.pem }]",
        )
    }) {
        for (i, s) in list.iter().enumerate() {
            if let Some(s) = stream(v, s, i, &mut stream_names) {
                streams.push(s);
            }
        }
    }
    let witness = top.get("witness").and_then(|n| witness(v, n));
    let drills = top.get("drills").and_then(|n| {
        let known = drills::Known {
            resources: &declared,
            sinks: &sink_names,
            policies: &policies,
            admins: &admins,
        };
        drills::drills(v, n, &known)
    });

    let glass_case = top
        .get("glass_case")
        .map(|n| glass_case(v, n))
        .unwrap_or_default();

    Some(PolicySet {
        resources,
        policies,
        admins,
        sinks,
        notify,
        anomalies,
        streams,
        witness,
        drills,
        glass_case,
    })
}

/// `glass_case: { warn_before: 3d }`: at most as long as a case can cover.
fn glass_case(v: &mut V, n: &N) -> GlassCaseRules {
    let mut rules = GlassCaseRules::default();
    let Some(o) = v.obj(n, "`glass_case`", fields::GLASS_CASE_FIELDS) else {
        return rules;
    };
    if let Some(w) = o.get("warn_before")
        && let Some(d) = v.duration(w, "`glass_case.warn_before`")
    {
        let most = crate::glass_case::MAX_DAYS;
        if d > std::time::Duration::from_secs(u64::from(most) * 86_400) {
            v.err_h(
                &w.referenced,
                format!("`glass_case.warn_before` is longer than {most} days, the longest a case covers: every case would be warned about at once"),
                "warn_before: 3d",
            );
        } else {
            rules.warn_before = d;
        }
    }
    rules
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
