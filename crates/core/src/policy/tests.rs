#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
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

fn errors(yaml: &str) -> Vec<PolicyError> {
    PolicySet::parse(yaml)
        .expect_err("should be refused")
        .errors
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
        now: Timestamp(1_795_313_820_000),
    }
}

#[test]
fn examples_load() {
    let p = PolicySet::parse(EXAMPLE).unwrap();
    assert_eq!(p.resources.len(), 2);
    assert_eq!(p.policies.len(), 2);
    assert_eq!(
        p.policies[1].approval,
        Approval::Quorum {
            count: 1,
            from: vec!["security".into()],
            timeout: Some(Duration::from_secs(600)),
            on_timeout: OnTimeout::Deny
        }
    );
    assert!(p.is_admin("x", &["admin".into()]));
    let c = PolicySet::parse(CONNECTORS).unwrap();
    assert_eq!(
        c.resource("prod-db").unwrap().settings["connection_limit"],
        2
    );
    assert_eq!(c.resource("k8s-admin").unwrap().kind, ResourceKind::Exec);
    let demo = include_str!("../../../../examples/demo-policy.yaml");
    PolicySet::parse(demo).unwrap();
}

#[test]
fn evaluate_allows_and_refuses_precisely() {
    let p = PolicySet::parse(EXAMPLE).unwrap();
    let oncall = vec!["oncall".to_string()];
    let d = p
        .evaluate(&req(
            "bob",
            &oncall,
            "prod-db",
            "orders table locked, checkout down",
            Some("INC-4711"),
            None,
        ))
        .unwrap();
    assert_eq!(d.duration, Duration::from_secs(1800));
    assert_eq!(d.policy, "dba-emergency");
    let code = |r: AccessRequest<'_>| p.evaluate(&r).unwrap_err().code;
    assert_eq!(
        code(req(
            "bob",
            &oncall,
            "nope",
            "orders table locked, checkout down",
            Some("INC-1"),
            None
        )),
        RefusalCode::UnknownResource
    );
    assert_eq!(
        code(req(
            "eve",
            &[],
            "prod-db",
            "orders table locked, checkout down",
            Some("INC-1"),
            None
        )),
        RefusalCode::NotAuthorised
    );
    assert_eq!(
        code(req(
            "bob",
            &oncall,
            "prod-db",
            "orders table locked, checkout down",
            None,
            None
        )),
        RefusalCode::TicketRequired
    );
    assert_eq!(
        code(req(
            "bob",
            &oncall,
            "prod-db",
            "orders table locked, checkout down",
            Some("ABC-1"),
            None
        )),
        RefusalCode::TicketMismatch
    );
    assert_eq!(
        code(req(
            "bob",
            &oncall,
            "prod-db",
            "  too short     ",
            Some("INC-1"),
            None
        )),
        RefusalCode::ReasonTooShort
    );
    assert_eq!(
        code(req(
            "bob",
            &oncall,
            "prod-db",
            "orders table locked, checkout down",
            Some("INC-1"),
            Some(Duration::from_secs(3 * 3600))
        )),
        RefusalCode::DurationOverMax
    );
    let r = p
        .evaluate(&req(
            "bob",
            &oncall,
            "prod-db",
            "orders table locked, checkout down",
            Some("INC-1"),
            Some(Duration::from_secs(3 * 3600)),
        ))
        .unwrap_err();
    assert_eq!(
        r.message,
        "requested 3h exceeds the maximum 2h of policy dba-emergency"
    );
    // alice by name.
    assert!(
        p.evaluate(&req("alice", &[], "bastion", "x", Some("INC-2"), None))
            .is_ok()
    );
}

#[test]
fn extension_respects_max() {
    let p = PolicySet::parse(EXAMPLE).unwrap();
    let g = vec!["oncall".to_string()];
    let start = Timestamp(0);
    let exp = start.plus(Duration::from_secs(1800));
    let new = p
        .check_extension(
            "dba-emergency",
            "bob",
            &g,
            "prod-db",
            start,
            exp,
            Duration::from_secs(1800),
            start,
        )
        .unwrap();
    assert_eq!(new, Timestamp(3_600_000));
    let e = p
        .check_extension(
            "dba-emergency",
            "bob",
            &g,
            "prod-db",
            start,
            exp,
            Duration::from_secs(7200),
            start,
        )
        .unwrap_err();
    assert_eq!(e.code, RefusalCode::DurationOverMax);
    assert!(e.message.contains("1h30m"), "{}", e.message);
}

#[test]
fn hours_window() {
    let y = EXAMPLE.replace(
        "min_reason: 15 }",
        "min_reason: 15, hours: { days: [mon,tue,wed,thu,fri], from: \"08:00\", to: \"18:00\" } }",
    );
    let p = PolicySet::parse(&y).unwrap();
    let g = vec!["oncall".to_string()];
    // 2026-11-22 02:17 UTC is a Sunday night.
    let e = p
        .evaluate(&req(
            "bob",
            &g,
            "prod-db",
            "orders table locked, checkout down",
            Some("INC-1"),
            None,
        ))
        .unwrap_err();
    assert_eq!(e.code, RefusalCode::OutsideHours);
}

#[test]
fn errors_have_positions_and_hints() {
    let e = errors(&EXAMPLE.replace("min_reason: 15 }", "min_reason: 15, colour: red }"));
    assert!(e[0].message.contains("colour"), "{e:?}");
    assert_eq!(e[0].line, Some(10), "{e:?}");

    let e = errors(&EXAMPLE.replace("\"^INC-[0-9]+$\", min", "\"^INC-[0-9+$\", min"));
    assert!(e[0].message.contains("bad ticket pattern"), "{e:?}");
    assert_eq!(e[0].line, Some(10));

    let e = errors(&EXAMPLE.replace("default: 30m, max: 2h", "default: 3h, max: 2h"));
    assert!(e[0].message.contains("less than duration.default"), "{e:?}");
    assert_eq!(e[0].line, Some(12));

    let e = errors(&EXAMPLE.replace("resources: [bastion]", "resources: [bastoin]"));
    assert!(
        e[0].message.contains("undeclared resource \"bastoin\""),
        "{e:?}"
    );
    assert_eq!(e[0].hint.as_deref(), Some("declare it under resources:"));
    assert_eq!(e[0].line, Some(15));

    let e = errors(&EXAMPLE.replace("default: 15m", "default: 15 minutes"));
    assert!(e[0].message.contains("duration"), "{e:?}");

    let e = errors(&EXAMPLE.replace("kind: ssh", "kind: telnet"));
    assert!(e[0].message.contains("telnet"), "{e:?}");

    // Several problems are all reported.
    let e = errors(
        &EXAMPLE
            .replace("resources: [bastion]", "resources: [bastoin]")
            .replace("default: 30m, max: 2h", "default: 3h, max: 2h"),
    );
    assert_eq!(e.len(), 2, "{e:?}");

    let e = errors("resources: [\n  bad: : yaml");
    assert!(e[0].line.is_some(), "{e:?}");
    let e = errors(&"x".repeat(MAX_POLICY_BYTES + 1));
    assert!(e[0].message.contains("1 MiB"));
    // Duplicate names, quorum without from.
    let e = errors(&EXAMPLE.replace("name: bastion-with-approval", "name: dba-emergency"));
    assert!(e[0].message.contains("declared twice"), "{e:?}");
    let e = errors(&EXAMPLE.replace("count: 1, from: [security],", "count: 1,"));
    assert!(e[0].message.contains("from"), "{e:?}");
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
    assert!(PolicySet::parse(&y).is_err());
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,400}") {
        let _ = PolicySet::parse(&s);
    }

    #[test]
    fn mutated_example_never_panics(pos in 0usize..900, byte in 0u8..128, del in 0usize..20) {
        let mut b = EXAMPLE.as_bytes().to_vec();
        let p = pos % b.len();
        b[p] = byte;
        let end = (p + del).min(b.len());
        b.drain(p..end);
        if let Ok(s) = String::from_utf8(b) {
            let _ = PolicySet::parse(&s);
        }
    }
}

#[test]
fn sinks_and_notify() {
    let y = format!("{EXAMPLE}notify: [sec-hook]\nsinks:\n  - name: sec-hook\n    kind: webhook\n    url: http://127.0.0.1:9/x\n    secret_env: HOOK_SECRET\n  - name: sec-pager\n    kind: pagerduty\n    routing_key_env: PD_KEY\n")
        .replace("review: { within: 72h, by: [security] }", "review: { within: 72h, by: [security] }\n    notify: [sec-pager]");
    let p = PolicySet::parse(&y).unwrap();
    assert_eq!(p.sinks.len(), 2);
    assert_eq!(
        p.sinks_for(Some("dba-emergency")),
        vec!["sec-hook".to_string(), "sec-pager".to_string()]
    );
    assert_eq!(p.sinks_for(None), vec!["sec-hook".to_string()]);
    let e = errors(&y.replace("notify: [sec-pager]", "notify: [sec-pagr]"));
    assert!(e[0].message.contains("undeclared sink"), "{e:?}");
    let e = errors(&y.replace("secret_env: HOOK_SECRET", "secret: hunter2"));
    assert!(
        e.iter()
            .any(|x| x.message.contains("unknown field `secret`")),
        "{e:?}"
    );
}
