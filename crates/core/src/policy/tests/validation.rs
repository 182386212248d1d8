use super::*;

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

#[test]
fn glass_case_settings() {
    let p = PolicySet::parse(EXAMPLE).unwrap();
    assert_eq!(p.glass_case.warn_before, Duration::from_secs(3 * 86_400));
    let p = PolicySet::parse(&format!("{EXAMPLE}glass_case: {{ warn_before: 36h }}\n")).unwrap();
    assert_eq!(p.glass_case.warn_before, Duration::from_secs(36 * 3600));
    for (bad, msg) in [
        ("glass_case: { warn_before: 91d }", "longer than 90 days"),
        ("glass_case: { warn_before: soon }", "warn_before"),
        ("glass_case: { warn: 3d }", "unknown field `warn`"),
    ] {
        let e = errors(&format!("{EXAMPLE}{bad}\n"));
        assert!(e.iter().any(|e| e.message.contains(msg)), "{bad}: {e:#?}");
    }
    let y = EXAMPLE.replace(
        "    kind: postgres",
        "    kind: postgres\n    glass_case: yes-please",
    );
    let e = errors(&y);
    assert!(e.iter().any(|e| e.message.contains("glass_case")), "{e:#?}");
}
