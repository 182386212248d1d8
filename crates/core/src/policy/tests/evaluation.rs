use super::*;

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
