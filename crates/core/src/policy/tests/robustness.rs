use super::*;

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
