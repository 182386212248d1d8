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
    let demo = include_str!("../../../../../examples/demo-policy.yaml");
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

mod evaluation;
mod robustness;
mod streams;
mod validation;
