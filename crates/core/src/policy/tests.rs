#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::time::parse_date;
use proptest::prelude::*;

pub const EXAMPLE: &str = r#"resources:
  - name: prod-db
    kind: postgres
  - name: bastion
    kind: ssh
policies:
  - name: dba-emergency
    resources: [prod-db]
    who: { groups: [oncall] }
    require: { mfa: true, ticket: "^INC-[0-9]+$", min_reason: 15 }
    approval: { mode: auto }
    duration: { default: 30m, max: 2h }
    review: { within: 72h, by: [security] }
  - name: bastion-with-approval
    resources: [bastion]
    who: { users: [alice], groups: [oncall] }
    require: { mfa: true, ticket: "^INC-[0-9]+$" }
    approval: { mode: quorum, count: 1, from: [security], timeout: 10m, on_timeout: deny }
    duration: { default: 15m, max: 1h }
"#;

const CONNECTORS: &str = r#"resources:
  - name: bastion
    kind: ssh
    principals: [root]
  - name: prod-db
    kind: postgres
    admin_url_env: BREAKGLASS_PG_ADMIN_URL     # or admin_url_file: /etc/breakglass/pg-admin-url
    grant_roles: [app_admin]
    connection_limit: 2
  - name: aws-root
    kind: secret
  - name: k8s-admin
    kind: exec
    grant: ["/usr/local/bin/k8s-grant"]
    revoke: ["/usr/local/bin/k8s-revoke"]
    timeout: 30s
"#;

const ONCALL: &str = "orders table locked, checkout down";

fn errors(yaml: &str) -> Vec<PolicyError> {
    PolicySet::parse(yaml)
        .expect_err("should be refused")
        .errors
}

/// Asserts that `yaml` is refused with exactly one error, at the first occurrence of `needle`
/// on line `line` (1-based line and character column), whose message contains `msg`.
#[track_caller]
fn one_error_at(yaml: &str, line: usize, needle: &str, msg: &str) -> PolicyError {
    let e = errors(yaml);
    assert_eq!(e.len(), 1, "expected exactly one error, got {e:#?}");
    let text = yaml.lines().nth(line - 1).expect("line exists");
    let byte = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not on line {line}: {text:?}"));
    let column = text[..byte].chars().count() + 1;
    assert_eq!(
        (e[0].line, e[0].column),
        (Some(line), Some(column)),
        "position of {:?}",
        e[0]
    );
    assert!(
        e[0].message.contains(msg),
        "{:?} lacks {msg:?}",
        e[0].message
    );
    e.into_iter().next().unwrap()
}

fn ts(s: &str) -> Timestamp {
    parse_date(s).unwrap()
}

fn req<'a>(
    user: &'a str,
    groups: &'a [String],
    resource: &'a str,
    reason: &'a str,
    ticket: Option<&'a str>,
    duration: Option<Duration>,
) -> AccessRequest<'a> {
    AccessRequest {
        user,
        groups,
        resource,
        reason,
        ticket,
        duration,
        // Sunday 2026-11-22 02:17 UTC.
        now: Timestamp(1_795_313_820_000),
    }
}

fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

// ---------------------------------------------------------------------------------------------
// Loading

#[test]
fn examples_load() {
    let p = PolicySet::parse(EXAMPLE).unwrap();
    assert_eq!(p.resources.len(), 2);
    assert_eq!(p.resource("bastion").unwrap().kind, ResourceKind::Ssh);
    assert!(p.resource("bastion").unwrap().settings.is_empty());
    assert_eq!(p.policies.len(), 2);
    let dba = p.policy("dba-emergency").unwrap();
    assert_eq!(dba.resources, vec!["prod-db".to_string()]);
    assert_eq!(dba.who.groups, vec!["oncall".to_string()]);
    assert!(dba.who.users.is_empty());
    assert!(dba.require.mfa);
    assert_eq!(
        dba.require.ticket.as_ref().unwrap().as_str(),
        "^INC-[0-9]+$"
    );
    assert_eq!(dba.require.min_reason, 15);
    assert!(dba.require.hours.is_none());
    assert_eq!(dba.approval, Approval::Auto);
    assert_eq!(dba.duration.default, mins(30));
    assert_eq!(dba.duration.max, mins(120));
    let review = dba.review.as_ref().unwrap();
    assert_eq!(review.within, Duration::from_secs(72 * 3600));
    assert_eq!(review.by, vec!["security".to_string()]);
    assert!(dba.notify.is_empty());
    let bastion = p.policy("bastion-with-approval").unwrap();
    assert_eq!(bastion.require.min_reason, 0);
    assert!(bastion.review.is_none());
    assert_eq!(
        bastion.approval,
        Approval::Quorum {
            count: 1,
            from: vec!["security".into()],
            timeout: Some(mins(10)),
            on_timeout: OnTimeout::Deny
        }
    );
    assert!(p.policy("nope").is_none());

    let c = PolicySet::parse(CONNECTORS).unwrap();
    assert_eq!(c.resources.len(), 4);
    let pg = c.resource("prod-db").unwrap();
    assert_eq!(pg.kind, ResourceKind::Postgres);
    assert_eq!(pg.settings["connection_limit"], 2);
    assert_eq!(pg.settings["admin_url_env"], "BREAKGLASS_PG_ADMIN_URL");
    assert_eq!(pg.settings["grant_roles"], serde_json::json!(["app_admin"]));
    assert_eq!(
        c.resource("bastion").unwrap().settings["principals"],
        serde_json::json!(["root"])
    );
    assert_eq!(c.resource("aws-root").unwrap().kind, ResourceKind::Secret);
    let exec = c.resource("k8s-admin").unwrap();
    assert_eq!(exec.kind, ResourceKind::Exec);
    assert_eq!(exec.settings["timeout"], "30s");
    assert_eq!(exec.settings.len(), 3, "{:?}", exec.settings);
}

#[test]
fn demo_policy_loads() {
    let demo = include_str!("../../../../examples/demo-policy.yaml");
    let p = PolicySet::parse(demo).unwrap();
    assert_eq!(p.admins.groups, vec!["security".to_string()]);
    assert!(p.is_admin("x", &["security".into()]));
    assert!(!p.is_admin("x", &["admin".into()]));
    assert_eq!(
        p.resource("bastion").unwrap().settings["principals"],
        serde_json::json!(["root"])
    );
    assert!(p.policy("dba-emergency").is_some());
    assert!(p.policy("bastion-emergency").is_some());
    assert!(p.policy("cloud-root-with-approval").is_some());
}

#[test]
fn defaults() {
    let p = PolicySet::parse(EXAMPLE).unwrap();
    // admins default to the group admin.
    assert!(p.admins.users.is_empty());
    assert_eq!(p.admins.groups, vec!["admin".to_string()]);
    assert!(p.is_admin("x", &["admin".into()]));
    assert!(!p.is_admin("admin", &["oncall".into()]));
    // mfa defaults to true, min_reason to 0, no ticket, no hours.
    let y = EXAMPLE.replace("    require: { mfa: true, ticket: \"^INC-[0-9]+$\" }\n", "");
    let p = PolicySet::parse(&y).unwrap();
    let r = &p.policy("bastion-with-approval").unwrap().require;
    assert!(r.mfa && r.ticket.is_none() && r.min_reason == 0 && r.hours.is_none());
    let y = EXAMPLE.replace(
        "{ mfa: true, ticket: \"^INC-[0-9]+$\" }",
        "{ min_reason: 3 }",
    );
    let p = PolicySet::parse(&y).unwrap();
    assert!(p.policy("bastion-with-approval").unwrap().require.mfa);
    // on_timeout defaults to deny; timeout is optional.
    let y = EXAMPLE.replace(", timeout: 10m, on_timeout: deny", "");
    let p = PolicySet::parse(&y).unwrap();
    assert_eq!(
        p.policy("bastion-with-approval").unwrap().approval,
        Approval::Quorum {
            count: 1,
            from: vec!["security".into()],
            timeout: None,
            on_timeout: OnTimeout::Deny
        }
    );
    let y = EXAMPLE.replace("on_timeout: deny", "on_timeout: auto");
    let p = PolicySet::parse(&y).unwrap();
    assert!(matches!(
        p.policy("bastion-with-approval").unwrap().approval,
        Approval::Quorum {
            on_timeout: OnTimeout::Auto,
            ..
        }
    ));
    // admins by user.
    let p = PolicySet::parse(&format!("{EXAMPLE}admins: {{ users: [carol] }}\n")).unwrap();
    assert!(p.is_admin("carol", &[]));
    assert!(!p.is_admin("x", &["admin".into()]));
    // notify is kept (with a declared sink).
    let y = format!(
        "{EXAMPLE}    notify: [pager]\nsinks:\n  - {{ name: pager, kind: pagerduty, routing_key_env: PD_KEY }}\n"
    );
    let p = PolicySet::parse(&y).unwrap();
    assert_eq!(
        p.policy("bastion-with-approval").unwrap().notify,
        vec!["pager".to_string()]
    );
    // Block style and comments work as well as flow style.
    let y = "# policy\nresources:\n  - name: db\n    kind: postgres\npolicies:\n  - name: p\n    resources:\n      - db\n    who:\n      users:\n        - bob\n    approval:\n      mode: deny\n    duration:\n      default: 5m\n      max: 5m\n";
    let p = PolicySet::parse(y).unwrap();
    assert_eq!(p.policy("p").unwrap().approval, Approval::Deny);
}

#[test]
fn to_json_view() {
    let p = PolicySet::parse(EXAMPLE).unwrap();
    let j = p.to_json();
    let dba = &j["policies"][0];
    assert_eq!(dba["name"], "dba-emergency");
    assert_eq!(dba["require"]["ticket"], "^INC-[0-9]+$");
    assert_eq!(dba["duration"]["default"]["secs"], 1800);
    assert_eq!(dba["duration"]["max"]["human"], "2h");
    assert_eq!(dba["review"]["within"]["human"], "3d");
    assert_eq!(dba["approval"]["mode"], "auto");
    let b = &j["policies"][1];
    assert_eq!(b["approval"]["mode"], "quorum");
    assert_eq!(b["approval"]["timeout"]["secs"], 600);
    assert_eq!(b["approval"]["on_timeout"], "deny");
    assert_eq!(j["resources"][0]["kind"], "postgres");
    assert_eq!(j["admins"]["groups"][0], "admin");
}

// ---------------------------------------------------------------------------------------------
// Validation errors, each at its line and column

#[test]
fn unknown_fields() {
    let e = one_error_at(
        &EXAMPLE.replace("min_reason: 15 }", "min_reason: 15, colour: red }"),
        10,
        "colour",
        "unknown field `colour` in `require` of policy `dba-emergency`, expected one of mfa, ticket, min_reason, hours",
    );
    assert_eq!(e.hint.as_deref(), Some("remove it or fix its spelling"));

    let e = one_error_at(
        &EXAMPLE.replace("    review:", "    foo: 1\n    review:"),
        13,
        "foo",
        "unknown field `foo` in policy `dba-emergency`, expected one of name, resources, who, require, approval, duration, review, notify",
    );
    assert_eq!(e.hint.as_deref(), Some("remove it or fix its spelling"));

    // Did you mean …?
    let e = one_error_at(
        &EXAMPLE.replace(
            "{ mfa: true, ticket: \"^INC-[0-9]+$\" }",
            "{ mfa: true, tiket: \"^INC-[0-9]+$\" }",
        ),
        17,
        "tiket",
        "unknown field `tiket`",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `ticket`?"));
    let e = one_error_at(
        &EXAMPLE.replace("policies:", "polices:"),
        6,
        "polices",
        "unknown field `polices` in the policy file, expected one of resources, policies, admins",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `policies`?"));
    // A field one level too high.
    let e = one_error_at(
        &EXAMPLE.replace("    review:", "    mfa: false\n    review:"),
        13,
        "mfa",
        "unknown field `mfa` in policy `dba-emergency`",
    );
    assert_eq!(e.hint.as_deref(), Some("`mfa` belongs under `require:`"));

    one_error_at(
        &EXAMPLE.replace("{ groups: [oncall] }", "{ groups: [oncall], roles: [x] }"),
        9,
        "roles",
        "unknown field `roles` in `who` of policy `dba-emergency`, expected one of users, groups",
    );
    one_error_at(
        &EXAMPLE.replace("{ mode: auto }", "{ mode: auto, quorum: 2 }"),
        11,
        "quorum: 2",
        "unknown field `quorum` in `approval` of policy `dba-emergency`, expected one of mode, count, from, timeout, on_timeout",
    );
    let e = errors(&EXAMPLE.replace("max: 2h", "maximum: 2h"));
    assert_eq!(
        e[0].message,
        "unknown field `maximum` in `duration` of policy `dba-emergency`, expected one of default, max"
    );
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `max`?"));
    one_error_at(
        &EXAMPLE.replace("by: [security] }", "by: [security], when: 1 }"),
        13,
        "when",
        "unknown field `when` in `review` of policy `dba-emergency`, expected one of within, by",
    );
    one_error_at(
        &format!("{EXAMPLE}admins: {{ groups: [security], roles: [x] }}\n"),
        20,
        "roles",
        "unknown field `roles` in `admins`, expected one of users, groups",
    );
}

#[test]
fn missing_duration_max_reported_with_unknown_field() {
    // `maximum` is reported with "did you mean `max`?"; the missing `max` is not reported again.
    let e = errors(&EXAMPLE.replace("max: 2h", "maximum: 2h"));
    assert_eq!(e.len(), 1, "{e:#?}");
    // An unknown field that is not a misspelling does not hide the missing one.
    let e = errors(&EXAMPLE.replace("max: 2h", "ceiling: 2h"));
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(
        e[0].message,
        "`duration` of policy `dba-emergency` has no `max`"
    );
}

#[test]
fn bad_ticket_regex() {
    let y = EXAMPLE.replace("\"^INC-[0-9]+$\", min", "\"^INC-[0-9+$\", min");
    let e = one_error_at(
        &y,
        10,
        "\"^INC-[0-9+$\"",
        "bad ticket pattern \"^INC-[0-9+$\" in policy `dba-emergency`: unclosed character class",
    );
    assert!(e.hint.unwrap().contains("^INC-[0-9]+$"));
    // Oversized regexes are refused, not compiled for ever.
    let y = EXAMPLE.replace("\"^INC-[0-9]+$\", min", "\"(a{1000}){1000}\", min");
    one_error_at(&y, 10, "\"(a{1000}", "bad ticket pattern");
}

#[test]
fn durations_are_checked() {
    let y = EXAMPLE.replace("default: 30m, max: 2h", "default: 3h, max: 2h");
    let e = one_error_at(
        &y,
        12,
        "2h",
        "`duration.max` of policy `dba-emergency` (2h) is less than duration.default (3h)",
    );
    assert_eq!(e.hint.as_deref(), Some("max must be at least default"));

    one_error_at(
        &EXAMPLE.replace("default: 15m", "default: 15 minutes"),
        19,
        "15 minutes",
        "`duration.default` of policy `bastion-with-approval`: bad duration \"15 minutes\"",
    );
    let e = one_error_at(
        &EXAMPLE.replace("default: 15m", "default: 15"),
        19,
        "15,",
        "`duration.default` of policy `bastion-with-approval` is a bare number (15); a duration needs a unit",
    );
    assert_eq!(e.hint.as_deref(), Some("write e.g. 15m or 15s"));
    one_error_at(
        &EXAMPLE.replace("max: 2h", "max: 8d"),
        12,
        "8d",
        "`duration.max` of policy `dba-emergency` is 8d; no grant may be longer than 7d",
    );
    one_error_at(
        &EXAMPLE.replace("timeout: 10m", "timeout: soon"),
        18,
        "soon",
        "`approval.timeout` of policy `bastion-with-approval`: bad duration \"soon\"",
    );
    one_error_at(
        &EXAMPLE.replace("within: 72h", "within: 0h"),
        13,
        "0h",
        "`review.within` of policy `dba-emergency`: duration \"0h\" is zero",
    );
    one_error_at(
        &EXAMPLE.replace("{ default: 30m, max: 2h }", "{ default: 30m }"),
        12,
        "{",
        "`duration` of policy `dba-emergency` has no `max`",
    );
}

#[test]
fn references_and_names() {
    let e = one_error_at(
        &EXAMPLE.replace("resources: [bastion]", "resources: [bastoin]"),
        15,
        "bastoin",
        "policy `bastion-with-approval` refers to undeclared resource \"bastoin\"",
    );
    assert!(
        e.hint
            .as_deref()
            .unwrap()
            .starts_with("declare it under resources:"),
        "{e:?}"
    );
    let e = one_error_at(
        &EXAMPLE.replace("resources: [bastion]", "resources: [mainframe]"),
        15,
        "mainframe",
        "undeclared resource \"mainframe\"",
    );
    assert_eq!(e.hint.as_deref(), Some("declare it under resources:"));

    // Duplicates.
    let y = EXAMPLE.replace("policies:", "  - name: prod-db\n    kind: ssh\npolicies:");
    one_error_at(
        &y,
        6,
        "prod-db",
        "resource `prod-db` is declared twice (first at line 2)",
    );
    one_error_at(
        &EXAMPLE.replace("name: bastion-with-approval", "name: dba-emergency"),
        14,
        "dba-emergency",
        "policy `dba-emergency` is declared twice (first at line 7)",
    );

    // Names.
    let y = EXAMPLE.replace("name: prod-db", "name: Prod_DB");
    let e = errors(&y);
    assert_eq!((e[0].line, e[0].column), (Some(2), Some(11)), "{e:?}");
    assert_eq!(e[0].message, "bad resource name \"Prod_DB\"");
    assert!(e[0].hint.as_deref().unwrap().contains("lower-case"));
    // The only other error: the policy's reference to prod-db, now undeclared.
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(e[1].line, Some(8));
    one_error_at(
        &EXAMPLE.replace("name: dba-emergency", "name: -dba"),
        7,
        "-dba",
        "bad policy name \"-dba\"",
    );
    one_error_at(
        &EXAMPLE.replace("name: dba-emergency", &format!("name: {}", "a".repeat(64))),
        7,
        "aaaa",
        "bad policy name",
    );
    PolicySet::parse(&EXAMPLE.replace("name: dba-emergency", &format!("name: {}", "a".repeat(63))))
        .unwrap();
    one_error_at(
        &EXAMPLE.replace("who: { groups: [oncall] }", "who: { groups: [On Call] }"),
        9,
        "On Call",
        "bad name \"On Call\" in `who.groups` of policy `dba-emergency`",
    );
    one_error_at(
        &EXAMPLE.replace("name: dba-emergency", "name: 42"),
        7,
        "42",
        "the name of policy #1 must be a string, found a number",
    );
}

#[test]
fn who_and_approval() {
    one_error_at(
        &EXAMPLE.replace("who: { groups: [oncall] }", "who: { groups: [] }"),
        9,
        "{",
        "`who` of policy `dba-emergency` names no users or groups",
    );
    one_error_at(
        &EXAMPLE.replace("    who: { groups: [oncall] }\n", ""),
        7,
        "name",
        "policy `dba-emergency` has no `who`",
    );
    one_error_at(
        &EXAMPLE.replace("who: { groups: [oncall] }", "who: { groups: oncall }"),
        9,
        "oncall",
        "`who.groups` of policy `dba-emergency` must be a list, found a string",
    );
    // Quorum without from / count, count bounds.
    one_error_at(
        &EXAMPLE.replace("count: 1, from: [security],", "count: 1,"),
        18,
        "{",
        "quorum `approval` of policy `bastion-with-approval` has no `from`",
    );
    one_error_at(
        &EXAMPLE.replace("from: [security],", "from: [],"),
        18,
        "[]",
        "`approval.from` of policy `bastion-with-approval` names no groups",
    );
    one_error_at(
        &EXAMPLE.replace("count: 1, ", ""),
        18,
        "{",
        "quorum `approval` of policy `bastion-with-approval` has no `count`",
    );
    one_error_at(
        &EXAMPLE.replace("count: 1,", "count: 0,"),
        18,
        "0,",
        "a quorum needs at least 1 approval",
    );
    one_error_at(
        &EXAMPLE.replace("count: 1,", "count: 101,"),
        18,
        "101",
        "`approval.count` of policy `bastion-with-approval` is 101; the limit is 100",
    );
    one_error_at(
        &EXAMPLE.replace("count: 1,", "count: two,"),
        18,
        "two",
        "`approval.count` of policy `bastion-with-approval` must be a whole number, found a string",
    );
    let e = one_error_at(
        &EXAMPLE.replace("mode: auto", "mode: automatic"),
        11,
        "automatic",
        "unknown approval mode \"automatic\" in policy `dba-emergency`",
    );
    assert!(e.hint.unwrap().starts_with("did you mean `auto`?"));
    one_error_at(
        &EXAMPLE.replace("{ mode: auto }", "{ mode: auto, count: 2 }"),
        11,
        "count",
        "`approval.count` of policy `dba-emergency` only applies to mode quorum, not auto",
    );
    one_error_at(
        &EXAMPLE.replace("on_timeout: deny", "on_timeout: approve"),
        18,
        "approve",
        "`approval.on_timeout` of policy `bastion-with-approval` is \"approve\"",
    );
    one_error_at(
        &EXAMPLE.replace("timeout: 10m, ", ""),
        18,
        "deny",
        "has no effect without `timeout`",
    );
    one_error_at(
        &EXAMPLE.replace("    approval: { mode: auto }\n", ""),
        7,
        "name",
        "policy `dba-emergency` has no `approval`",
    );
}

#[test]
fn require_and_review_types() {
    one_error_at(
        &EXAMPLE.replace("min_reason: 15", "min_reason: lots"),
        10,
        "lots",
        "`require.min_reason` of policy `dba-emergency` must be a whole number, found a string",
    );
    one_error_at(
        &EXAMPLE.replace("min_reason: 15", "min_reason: 5000"),
        10,
        "5000",
        "`require.min_reason` of policy `dba-emergency` is 5000; it must be between 0 and 2000",
    );
    one_error_at(
        &EXAMPLE.replace(
            "{ mfa: true, ticket: \"^INC-[0-9]+$\", min",
            "{ mfa: sometimes, ticket: \"^INC-[0-9]+$\", min",
        ),
        10,
        "sometimes",
        "`require.mfa` of policy `dba-emergency` must be true or false, found a string",
    );
    one_error_at(
        &EXAMPLE.replace("by: [security]", "by: []"),
        13,
        "[]",
        "`review.by` of policy `dba-emergency` names no groups",
    );
    one_error_at(
        &EXAMPLE.replace("{ within: 72h, by: [security] }", "{ within: 72h }"),
        13,
        "{",
        "`review` of policy `dba-emergency` has no `by`",
    );
    one_error_at(
        &EXAMPLE.replace("resources: [prod-db]", "resources: []"),
        8,
        "[]",
        "policy `dba-emergency` lists no resources",
    );
}

#[test]
fn hours_are_checked() {
    let base = |h: &str| {
        EXAMPLE.replace(
            "min_reason: 15 }",
            &format!("min_reason: 15, hours: {h} }}"),
        )
    };
    let p = PolicySet::parse(&base(
        "{ days: [mon, tue, wed, thu, fri], from: \"08:00\", to: \"18:00\" }",
    ))
    .unwrap();
    let h = p
        .policy("dba-emergency")
        .unwrap()
        .require
        .hours
        .clone()
        .unwrap();
    assert_eq!(h.days, vec![0, 1, 2, 3, 4]);
    assert_eq!((h.from, h.to), (480, 1080));
    assert_eq!(h.source, "mon,tue,wed,thu,fri 08:00-18:00");
    // Unquoted times and omitted days (every day) work too.
    let p = PolicySet::parse(&base("{ from: 08:00, to: 24:00 }")).unwrap();
    let h = p
        .policy("dba-emergency")
        .unwrap()
        .require
        .hours
        .clone()
        .unwrap();
    assert_eq!(h.days.len(), 7);
    assert_eq!((h.from, h.to), (480, 1440));

    one_error_at(
        &base("{ days: [mon, funday], from: \"08:00\", to: \"18:00\" }"),
        10,
        "funday",
        "unknown day \"funday\" in `require.hours` of policy `dba-emergency`",
    );
    one_error_at(
        &base("{ days: [mon], from: \"8am\", to: \"18:00\" }"),
        10,
        "\"8am\"",
        "`from` of `require.hours` of policy `dba-emergency` is \"8am\"; expected a time HH:MM (UTC)",
    );
    one_error_at(
        &base("{ days: [mon], from: \"18:00\", to: \"08:00\" }"),
        10,
        "\"08:00\"",
        "`to` (08:00) must be later than `from` (18:00)",
    );
    let e = errors(&base("{ days: [mon], from: \"08:00\", until: \"18:00\" }"));
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(
        e[0].message,
        "`require.hours` of policy `dba-emergency` has no `to`"
    );
    assert_eq!(
        e[1].message,
        "unknown field `until` in `require.hours` of policy `dba-emergency`, expected one of days, from, to"
    );
}

#[test]
fn resources_are_checked() {
    let e = one_error_at(
        &EXAMPLE.replace("kind: ssh", "kind: telnet"),
        5,
        "telnet",
        "resource `bastion` has unknown kind \"telnet\"",
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("kind is one of postgres, ssh, secret, exec")
    );
    let e = one_error_at(
        &EXAMPLE.replace("kind: ssh", "kind: sshd"),
        5,
        "sshd",
        "unknown kind",
    );
    assert!(e.hint.unwrap().starts_with("did you mean `ssh`?"));
    one_error_at(
        &EXAMPLE.replace("    kind: ssh\n", ""),
        4,
        "name",
        "resource `bastion` has no `kind`",
    );
    one_error_at(
        &CONNECTORS.replace("[\"/usr/local/bin/k8s-revoke\"]", "[\"k8s-revoke\"]"),
        15,
        "\"k8s-revoke\"",
        "`revoke` of resource `k8s-admin` must start with an absolute program path",
    );
    one_error_at(
        &CONNECTORS.replace("    revoke: [\"/usr/local/bin/k8s-revoke\"]\n", ""),
        12,
        "name",
        "resource `k8s-admin` has no `revoke`",
    );
    one_error_at(
        &CONNECTORS.replace("timeout: 30s", "timeout: 30"),
        16,
        "30",
        "`timeout` of resource `k8s-admin` is a bare number (30)",
    );
    one_error_at(
        &CONNECTORS.replace("connection_limit: 2", "connection_limit: many"),
        9,
        "many",
        "`connection_limit` of resource `prod-db` must be a whole number",
    );
    one_error_at(
        &CONNECTORS.replace("principals: [root]", "principals: root"),
        4,
        "root",
        "`principals` of resource `bastion` must be a list, found a string",
    );
    one_error_at(
        "resources:\n  - prod-db\n",
        2,
        "prod-db",
        "resource #1 must be a mapping with `name` and `kind`, found a string",
    );
}

#[test]
fn admins_are_checked() {
    one_error_at(
        &format!("{EXAMPLE}admins: {{ groups: [] }}\n"),
        20,
        "{",
        "`admins` names no users or groups",
    );
    one_error_at(
        &format!("{EXAMPLE}admins: [security]\n"),
        20,
        "[",
        "`admins` must be a mapping, found a list",
    );
}

#[test]
fn all_errors_are_reported_in_file_order() {
    let y = EXAMPLE
        .replace("resources: [bastion]", "resources: [bastoin]")
        .replace("default: 30m, max: 2h", "default: 3h, max: 2h")
        .replace("min_reason: 15 }", "min_reason: 15, colour: red }")
        .replace("\"^INC-[0-9]+$\" }", "\"^INC-[0-9+$\" }")
        .replace("kind: ssh", "kind: telnet");
    let e = errors(&y);
    let lines: Vec<Option<usize>> = e.iter().map(|x| x.line).collect();
    assert_eq!(
        lines,
        vec![Some(5), Some(10), Some(12), Some(15), Some(17)],
        "{e:#?}"
    );
    // Display lists all of them, one per line.
    let shown = PolicySet::parse(&y).unwrap_err().to_string();
    assert_eq!(shown.lines().count(), 5, "{shown}");
    assert!(shown.starts_with("line 5, column 11: resource `bastion` has unknown kind \"telnet\" (hint: kind is one of postgres, ssh, secret, exec)"), "{shown}");
}

#[test]
fn yaml_level_errors() {
    // Syntax error with a position.
    let e = errors("resources: [\n  bad: : yaml");
    assert_eq!(e.len(), 1);
    assert!(e[0].line.is_some() && e[0].column.is_some(), "{e:?}");
    assert!(e[0].message.starts_with("invalid YAML"), "{e:?}");
    let e = errors("resources:\n  - name: \"unterminated\n");
    assert_eq!(e[0].line, Some(2), "{e:?}");
    // Duplicate keys.
    let e = errors(&EXAMPLE.replace("    kind: ssh\n", "    kind: ssh\n    kind: postgres\n"));
    assert_eq!(
        (e[0].line, e[0].message.as_str()),
        (Some(6), "duplicate key `kind`"),
        "{e:?}"
    );
    // Size limit.
    let e = errors(&format!("{EXAMPLE}#{}", "x".repeat(MAX_POLICY_BYTES)));
    assert!(e[0].message.contains("the limit is 1 MiB"), "{e:?}");
    // Empty file, wrong top-level shape, several documents.
    assert!(errors("")[0].message.contains("empty"));
    assert!(errors("# nothing\n")[0].message.contains("empty"));
    assert!(
        errors("- a\n- b\n")[0]
            .message
            .contains("must be a mapping")
    );
    assert!(!errors(&format!("{EXAMPLE}---\n{EXAMPLE}")).is_empty());
    // Deep nesting.
    let deep = format!("resources: {}{}\n", "[".repeat(200), "]".repeat(200));
    assert!(errors(&deep)[0].message.contains("safety limits"));
}

#[test]
fn alias_bomb_is_refused() {
    let mut y = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        y.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
            p = i - 1
        ));
    }
    let e = errors(&y);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].message.contains("safety limits"), "{e:?}");
    // Modest anchors and aliases are fine.
    let y = EXAMPLE
        .replace("{ groups: [oncall] }", "&oncall { groups: [oncall] }")
        .replace("{ users: [alice], groups: [oncall] }", "*oncall");
    let p = PolicySet::parse(&y).unwrap();
    assert_eq!(
        p.policy("bastion-with-approval").unwrap().who.groups,
        vec!["oncall".to_string()]
    );
}

#[test]
fn error_display() {
    let e = PolicyError {
        line: Some(12),
        column: Some(5),
        message: "m".into(),
        hint: Some("h".into()),
    };
    assert_eq!(e.to_string(), "line 12, column 5: m (hint: h)");
    let e = PolicyError {
        line: None,
        column: None,
        message: "m".into(),
        hint: None,
    };
    assert_eq!(e.to_string(), "m");
}

// ---------------------------------------------------------------------------------------------
// Evaluation

#[test]
fn evaluate_allows_with_default_or_requested_duration() {
    let p = PolicySet::parse(EXAMPLE).unwrap();
    let oncall = vec!["oncall".to_string()];
    let d = p
        .evaluate(&req(
            "bob",
            &oncall,
            "prod-db",
            ONCALL,
            Some("INC-4711"),
            None,
        ))
        .unwrap();
    assert_eq!(d.policy, "dba-emergency");
    assert_eq!(d.duration, mins(30), "default used when none requested");
    assert_eq!(d.max, mins(120));
    assert_eq!(d.approval, Approval::Auto);
    assert!(d.mfa_required);
    assert_eq!(d.review.unwrap().by, vec!["security".to_string()]);
    assert!(d.notify.is_empty());
    let d = p
        .evaluate(&req(
            "bob",
            &oncall,
            "prod-db",
            ONCALL,
            Some(" INC-4711 "),
            Some(mins(120)),
        ))
        .unwrap();
    assert_eq!(d.duration, mins(120), "the maximum itself is allowed");
    // alice by name, no group; quorum approval carried in the decision.
    let d = p
        .evaluate(&req("alice", &[], "bastion", "", Some("INC-2"), None))
        .unwrap();
    assert_eq!(d.policy, "bastion-with-approval");
    assert_eq!(d.duration, mins(15));
    assert!(matches!(d.approval, Approval::Quorum { count: 1, .. }));
    assert!(d.review.is_none());
}

#[test]
fn evaluate_refuses_with_each_code() {
    let p = PolicySet::parse(EXAMPLE).unwrap();
    let oncall = vec!["oncall".to_string()];
    let refuse = |r: AccessRequest<'_>| p.evaluate(&r).unwrap_err();

    let r = refuse(req("bob", &oncall, "prod-dv", ONCALL, Some("INC-1"), None));
    assert_eq!(r.code, RefusalCode::UnknownResource);
    assert_eq!(r.message, "there is no resource \"prod-dv\" in the policy");
    assert_eq!(r.hint.as_deref(), Some("did you mean prod-db?"));

    let r = refuse(req(
        "eve",
        &["dev".into()],
        "prod-db",
        ONCALL,
        Some("INC-1"),
        None,
    ));
    assert_eq!(r.code, RefusalCode::NotAuthorised);
    assert_eq!(
        r.message,
        "eve is not authorised to break glass on prod-db: it is reserved for groups oncall (your groups: dev)"
    );
    assert!(r.hint.unwrap().contains("security team"));

    let r = refuse(req("bob", &oncall, "prod-db", ONCALL, None, None));
    assert_eq!(r.code, RefusalCode::TicketRequired);
    assert_eq!(
        r.message,
        "policy dba-emergency requires an incident ticket matching ^INC-[0-9]+$"
    );
    let r = refuse(req("bob", &oncall, "prod-db", ONCALL, Some("   "), None));
    assert_eq!(
        r.code,
        RefusalCode::TicketRequired,
        "blank ticket = missing"
    );

    let r = refuse(req("bob", &oncall, "prod-db", ONCALL, Some("ABC-1"), None));
    assert_eq!(r.code, RefusalCode::TicketMismatch);
    assert_eq!(
        r.message,
        "ticket \"ABC-1\" does not match the required pattern ^INC-[0-9]+$ (policy dba-emergency)"
    );
    // Anchored as written: ^…$ refuses a suffix.
    let r = refuse(req("bob", &oncall, "prod-db", ONCALL, Some("INC-1x"), None));
    assert_eq!(r.code, RefusalCode::TicketMismatch);

    let r = refuse(req(
        "bob",
        &oncall,
        "prod-db",
        "  too short     ",
        Some("INC-1"),
        None,
    ));
    assert_eq!(r.code, RefusalCode::ReasonTooShort);
    assert_eq!(
        r.message,
        "reason is 9 characters; policy dba-emergency requires at least 15: say what is broken and why you need access"
    );
    // Characters, not bytes.
    let accents = "é".repeat(15);
    assert!(
        p.evaluate(&req(
            "bob",
            &oncall,
            "prod-db",
            &accents,
            Some("INC-1"),
            None
        ))
        .is_ok()
    );
    let r = refuse(req(
        "bob",
        &oncall,
        "prod-db",
        &"é".repeat(14),
        Some("INC-1"),
        None,
    ));
    assert_eq!(r.code, RefusalCode::ReasonTooShort);

    let r = refuse(req(
        "bob",
        &oncall,
        "prod-db",
        ONCALL,
        Some("INC-1"),
        Some(Duration::from_secs(3 * 3600)),
    ));
    assert_eq!(r.code, RefusalCode::DurationOverMax);
    assert_eq!(
        r.message,
        "requested 3h exceeds the maximum 2h of policy dba-emergency"
    );

    let deny = EXAMPLE.replace("{ mode: auto }", "{ mode: deny }");
    let p2 = PolicySet::parse(&deny).unwrap();
    let r = p2
        .evaluate(&req("bob", &oncall, "prod-db", ONCALL, Some("INC-1"), None))
        .unwrap_err();
    assert_eq!(r.code, RefusalCode::DeniedByPolicy);
    assert_eq!(
        r.message,
        "policy dba-emergency denies break-glass access to prod-db"
    );

    // A declared resource that no policy covers.
    let c = PolicySet::parse(&format!(
        "{CONNECTORS}policies:\n  - {{ name: p, resources: [bastion], who: {{ users: [bob] }}, approval: {{ mode: auto }}, duration: {{ default: 5m, max: 5m }} }}\n"
    ))
    .unwrap();
    let r = c
        .evaluate(&req("bob", &oncall, "aws-root", ONCALL, None, None))
        .unwrap_err();
    assert_eq!(r.code, RefusalCode::NotAuthorised);
    assert_eq!(r.message, "no policy allows break-glass access to aws-root");
    // Only named users.
    let r = c
        .evaluate(&req("eve", &[], "bastion", ONCALL, None, None))
        .unwrap_err();
    assert_eq!(
        r.message,
        "eve is not authorised to break glass on bastion: only named users may"
    );

    for (code, s) in [
        (RefusalCode::UnknownResource, "unknown-resource"),
        (RefusalCode::NotAuthorised, "not-authorised"),
        (RefusalCode::TicketRequired, "ticket-required"),
        (RefusalCode::TicketMismatch, "ticket-mismatch"),
        (RefusalCode::ReasonTooShort, "reason-too-short"),
        (RefusalCode::DurationOverMax, "duration-over-max"),
        (RefusalCode::OutsideHours, "outside-hours"),
        (RefusalCode::DeniedByPolicy, "denied-by-policy"),
    ] {
        assert_eq!(code.as_str(), s);
    }
}

#[test]
fn first_passing_policy_wins_else_first_refusal() {
    let y = format!(
        "{EXAMPLE}  - name: dba-no-ticket\n    resources: [prod-db]\n    who: {{ groups: [dba] }}\n    approval: {{ mode: quorum, count: 1, from: [security] }}\n    duration: {{ default: 10m, max: 4h }}\n"
    );
    let p = PolicySet::parse(&y).unwrap();
    let both = vec!["oncall".to_string(), "dba".to_string()];
    // The first policy passes: it wins.
    let d = p
        .evaluate(&req("bob", &both, "prod-db", ONCALL, Some("INC-1"), None))
        .unwrap();
    assert_eq!(d.policy, "dba-emergency");
    // The first refuses (no ticket), the second passes.
    let d = p
        .evaluate(&req("bob", &both, "prod-db", ONCALL, None, None))
        .unwrap();
    assert_eq!(d.policy, "dba-no-ticket");
    assert_eq!(d.duration, mins(10));
    // 3h: over the first's max, within the second's.
    let d = p
        .evaluate(&req(
            "bob",
            &both,
            "prod-db",
            ONCALL,
            Some("INC-1"),
            Some(mins(180)),
        ))
        .unwrap();
    assert_eq!(d.policy, "dba-no-ticket");
    // Neither passes: the first matching policy's refusal.
    let r = p
        .evaluate(&req(
            "bob",
            &both,
            "prod-db",
            ONCALL,
            Some("ABC"),
            Some(mins(300)),
        ))
        .unwrap_err();
    assert_eq!(r.code, RefusalCode::TicketMismatch);
    // Only the second matches.
    let dba = vec!["dba".to_string()];
    let r = p
        .evaluate(&req("bob", &dba, "prod-db", ONCALL, None, Some(mins(300))))
        .unwrap_err();
    assert_eq!(r.code, RefusalCode::DurationOverMax);
    assert!(r.message.contains("dba-no-ticket"));
}

#[test]
fn hours_window() {
    let y = EXAMPLE.replace(
        "min_reason: 15 }",
        "min_reason: 15, hours: { days: [mon,tue,wed,thu,fri], from: \"08:00\", to: \"18:00\" } }",
    );
    let p = PolicySet::parse(&y).unwrap();
    let g = vec!["oncall".to_string()];
    let at = |now: Timestamp| {
        let mut r = req("bob", &g, "prod-db", ONCALL, Some("INC-1"), None);
        r.now = now;
        p.evaluate(&r)
    };
    // Sunday night.
    let e = at(Timestamp(1_795_313_820_000)).unwrap_err();
    assert_eq!(e.code, RefusalCode::OutsideHours);
    assert_eq!(
        e.message,
        "policy dba-emergency only allows requests mon,tue,wed,thu,fri 08:00-18:00 UTC; it is now sun 02:17 UTC"
    );
    // Tuesday: inside, and the edges.
    assert!(at(ts("2026-11-24T10:00Z")).is_ok());
    assert!(at(ts("2026-11-24T08:00Z")).is_ok());
    assert!(at(ts("2026-11-24T17:59Z")).is_ok());
    assert_eq!(
        at(ts("2026-11-24T18:00Z")).unwrap_err().code,
        RefusalCode::OutsideHours
    );
    assert_eq!(
        at(ts("2026-11-24T07:59Z")).unwrap_err().code,
        RefusalCode::OutsideHours
    );
    // Saturday noon.
    assert_eq!(
        at(ts("2026-11-28T12:00Z")).unwrap_err().code,
        RefusalCode::OutsideHours
    );
}

#[test]
fn extension_respects_max() {
    let p = PolicySet::parse(EXAMPLE).unwrap();
    let g = vec!["oncall".to_string()];
    let start = Timestamp(0);
    let exp = start.plus(mins(30));
    let ext = |policy: &str, user: &str, groups: &[String], by: Duration| {
        p.check_extension(policy, user, groups, "prod-db", start, exp, by, start)
    };
    assert_eq!(
        ext("dba-emergency", "bob", &g, mins(30)).unwrap(),
        Timestamp(3_600_000)
    );
    assert_eq!(
        ext("dba-emergency", "bob", &g, mins(90)).unwrap(),
        Timestamp(7_200_000),
        "exactly the maximum is allowed"
    );
    let e = ext("dba-emergency", "bob", &g, mins(120)).unwrap_err();
    assert_eq!(e.code, RefusalCode::DurationOverMax);
    assert_eq!(
        e.message,
        "extending by 2h would make the grant 2h30m long; policy dba-emergency allows at most 2h (you can still add 1h30m)"
    );
    let e = ext("dba-emergency", "bob", &[], mins(10)).unwrap_err();
    assert_eq!(e.code, RefusalCode::NotAuthorised);
    let e = ext("gone", "bob", &g, mins(10)).unwrap_err();
    assert_eq!(e.code, RefusalCode::NotAuthorised);
    assert!(e.message.contains("no longer exists"));
    let e = p
        .check_extension(
            "dba-emergency",
            "bob",
            &g,
            "bastion",
            start,
            exp,
            mins(1),
            start,
        )
        .unwrap_err();
    assert_eq!(e.code, RefusalCode::NotAuthorised);
    let deny = PolicySet::parse(&EXAMPLE.replace("{ mode: auto }", "{ mode: deny }")).unwrap();
    let e = deny
        .check_extension(
            "dba-emergency",
            "bob",
            &g,
            "prod-db",
            start,
            exp,
            mins(1),
            start,
        )
        .unwrap_err();
    assert_eq!(e.code, RefusalCode::DeniedByPolicy);
}

#[test]
fn sinks_and_notify() {
    let y = format!("{EXAMPLE}notify: [sec-hook]\nsinks:\n  - name: sec-hook\n    kind: webhook\n    url: http://127.0.0.1:9/x\n    secret_env: HOOK_SECRET\n  - name: sec-pager\n    kind: pagerduty\n    routing_key_env: PD_KEY\n")
        .replace("review: { within: 72h, by: [security] }", "review: { within: 72h, by: [security] }\n    notify: [sec-pager]");
    let p = PolicySet::parse(&y).unwrap();
    assert_eq!(p.sinks.len(), 2);
    assert_eq!(
        p.sink("sec-hook").unwrap().settings["secret_env"],
        "HOOK_SECRET"
    );
    assert_eq!(
        p.sinks_for(Some("dba-emergency")),
        vec!["sec-hook".to_string(), "sec-pager".to_string()]
    );
    assert_eq!(p.sinks_for(None), vec!["sec-hook".to_string()]);
    let e = one_error_at(
        &y.replace("notify: [sec-pager]", "notify: [sec-pagr]"),
        14,
        "sec-pagr",
        "`notify` of policy `dba-emergency` refers to undeclared sink \"sec-pagr\"",
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("declare it under sinks: (or did you mean `sec-pager`?)")
    );
    let e = errors(&y.replace("secret_env: HOOK_SECRET", "secret: hunter2"));
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!((e[0].line, e[0].column), (Some(23), Some(5)), "{e:#?}");
    assert!(
        e[0].message
            .contains("is missing its destination or secret")
    );
    assert_eq!((e[1].line, e[1].column), (Some(26), Some(5)), "{e:#?}");
    assert!(
        e[1].message
            .starts_with("unknown field `secret` in webhook sink `sec-hook`"),
        "{e:#?}"
    );
    let e = errors(&y.replace("kind: pagerduty", "kind: pager"));
    assert!(e[0].message.contains("unknown kind \"pager\""), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// Robustness

/// Small YAML-ish fragments, so that random input often gets past the parser.
fn yamlish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "resources:",
        "policies:",
        "admins:",
        "- ",
        "name: ",
        "kind: ",
        "ssh",
        "postgres",
        "exec",
        "secret",
        "who:",
        "{",
        "}",
        "[",
        "]",
        ", ",
        ": ",
        "\n",
        "\n  ",
        "\n    ",
        "groups: [oncall]",
        "users:",
        "require:",
        "ticket: ",
        "\"^INC-[0-9]+$\"",
        "(",
        "min_reason: ",
        "15",
        "-1",
        "99999999999999999999999",
        "mfa: ",
        "true",
        "approval:",
        "mode: quorum",
        "mode: auto",
        "count: ",
        "from:",
        "timeout: ",
        "on_timeout: ",
        "duration:",
        "default: ",
        "max: ",
        "30m",
        "2h",
        "0s",
        "review:",
        "within: ",
        "by: [x]",
        "hours:",
        "days: [mon]",
        "\"08:00\"",
        "\"24:00\"",
        "notify: [x]",
        "&a ",
        "*a",
        "<<: ",
        "~",
        "!!str ",
        "é",
        "#",
        "\"",
        "'",
        "---\n",
        "prod-db",
    ]);
    prop::collection::vec(atoms, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,400}") {
        let _ = PolicySet::parse(&s);
    }

    #[test]
    fn arbitrary_yamlish_never_panics(s in yamlish()) {
        if let Ok(p) = PolicySet::parse(&s) {
            let _ = p.to_json();
        }
    }

    #[test]
    fn mutated_example_never_panics(
        edits in prop::collection::vec((0usize..2000, any::<char>(), 0usize..20), 1..4),
        which in 0usize..2,
    ) {
        let mut s = if which == 0 { EXAMPLE.to_string() } else { CONNECTORS.to_string() };
        for (pos, c, del) in edits {
            let chars: Vec<char> = s.chars().collect();
            let p = pos % (chars.len() + 1);
            let end = (p + del).min(chars.len());
            let mut out: String = chars[..p].iter().collect();
            out.push(c);
            out.extend(&chars[end..]);
            s = out;
        }
        match PolicySet::parse(&s) {
            Ok(p) => {
                let _ = p.to_json();
                let g = vec!["oncall".to_string()];
                for r in ["prod-db", "bastion", "x"] {
                    let _ = p.evaluate(&req("alice", &g, r, ONCALL, Some("INC-1"), None));
                }
            }
            Err(e) => {
                prop_assert!(!e.errors.is_empty());
                let _ = e.to_string();
            }
        }
    }

    #[test]
    fn evaluate_never_panics(
        user in "\\PC{0,20}",
        resource in prop::sample::select(vec!["prod-db", "bastion", "", "nope"]),
        reason in "\\PC{0,40}",
        ticket in prop::option::of("\\PC{0,20}"),
        secs in prop::option::of(0u64..10_000_000),
        now in any::<i64>(),
    ) {
        let p = PolicySet::parse(&EXAMPLE.replace(
            "min_reason: 15 }",
            "min_reason: 15, hours: { days: [mon], from: \"08:00\", to: \"18:00\" } }",
        )).unwrap();
        let g = vec!["oncall".to_string()];
        let r = AccessRequest {
            user: &user,
            groups: &g,
            resource,
            reason: &reason,
            ticket: ticket.as_deref(),
            duration: secs.map(Duration::from_secs),
            now: Timestamp(now),
        };
        let _ = p.evaluate(&r);
        let _ = p.check_extension("dba-emergency", &user, &g, resource, Timestamp(now), Timestamp(now), Duration::from_secs(secs.unwrap_or(0)), Timestamp(now));
    }
}

#[test]
fn many_problems_are_capped_and_large_files_stay_cheap() {
    let mut y = String::from("resources:\n");
    for i in 0..15_000 {
        y.push_str(&format!("  - {{ name: r{i}, kind: ssh }}\n"));
    }
    y.push_str("policies:\n  - name: p\n    resources: [");
    for i in 0..300 {
        y.push_str(&format!("x{i}, "));
    }
    y.push_str("r1]\n    who: { groups: [g] }\n    approval: { mode: auto }\n    duration: { default: 5m, max: 5m }\n");
    assert!(y.len() < MAX_POLICY_BYTES);
    let e = errors(&y);
    assert_eq!(e.len(), 101, "{:?}", e.last());
    assert_eq!(e[100].message, "... and 200 more problems");
    assert!(
        e[0].message.contains("undeclared resource \"x0\""),
        "{:?}",
        e[0]
    );
}
