//! The holder of a grant is hostile too: races on MFA state and approvals driven with many
//! concurrent requests against the real server, separation of duties in reviews, and disabling
//! a user ending what they hold.

use crate::harness::*;
use serde_json::{Value, json};
use std::time::Duration;

const REASON: &str = "orders table locked, checkout down";

/// Sends every (path, body) as `token` at the same moment; (status, problem slug or "") each.
fn at_once(s: &Server, token: &str, reqs: Vec<(String, Value)>) -> Vec<(u16, String)> {
    let reqs = reqs
        .into_iter()
        .map(|(path, body)| (token.to_string(), path, body))
        .collect();
    post_at_once(&s.url, reqs)
}

/// How many audit events of `kind` the data directory holds.
fn count(s: &Server, kind: &str) -> usize {
    crate::hostile::audit_events(s, kind).len()
}

fn grant_body(resource: &str, otp: &str) -> Value {
    json!({"resource": resource, "reason": REASON, "ticket": "INC-1", "otp": otp})
}

#[test]
fn one_code_is_accepted_once_however_many_requests_carry_it() {
    let s = Server::start(POLICY);
    let bob = s.user("bob", &["oncall"]);
    let tok = token_of(&bob);
    let code = bob.otp();
    let reqs = (0..10)
        .map(|_| ("/api/v1/grants".to_string(), grant_body("prod-db", &code)))
        .collect();
    let res = at_once(&s, &tok, reqs);
    let ok = res.iter().filter(|(c, _)| *c == 201).count();
    assert_eq!(ok, 1, "one code, one grant: {res:?}");
    assert!(
        res.iter().filter(|(c, _)| *c != 201).all(|(_, slug)| {
            ["mfa-replayed", "mfa-locked", "mfa-conflict"].contains(&slug.as_str())
        }),
        "{res:?}"
    );
    assert_eq!(bob.ok(&["status"]).as_array().unwrap().len(), 1);
    // One verification for the enrolment, one for the grant. Every other use is a replay and
    // counts as a wrong code: 4 replays, the 5th locks, the last 4 are refused unchecked.
    assert_eq!(count(&s, "mfa.verified"), 2);
    assert_eq!(count(&s, "mfa.replayed"), 4);
    assert_eq!(count(&s, "mfa.locked"), 1);
    assert_eq!(count(&s, "mfa.refused_locked"), 4);

    // One code for a request and an approval at the same moment: one of them, never both.
    let sam = s.user("sam", &["oncall", "security"]);
    let ann = s.user("ann", &["oncall"]);
    let pending = ann.ok(&[
        "request",
        "bastion",
        "--reason",
        REASON,
        "--ticket",
        "INC-2",
        "--otp",
        &ann.otp(),
    ]);
    let id = pending["id"].as_str().unwrap().to_string();
    let code = sam.otp();
    let res = at_once(
        &s,
        &token_of(&sam),
        vec![
            ("/api/v1/grants".into(), grant_body("prod-db", &code)),
            (format!("/api/v1/grants/{id}/approve"), json!({"otp": code})),
        ],
    );
    let ok = res.iter().filter(|(c, _)| *c == 200 || *c == 201).count();
    assert_eq!(ok, 1, "one code, one action: {res:?}");
}

#[test]
fn parallel_wrong_codes_are_all_counted_and_lock_after_the_limit() {
    let s = Server::start(POLICY);
    let carol = s.user("carol", &["oncall"]);
    let step = unix_now() / 30;
    let valid: Vec<String> = (step - 1..=step + 2)
        .map(|st| carol.code_at_step(st))
        .collect();
    let wrong = (0..10)
        .map(|d| format!("{d}{d}{d}{d}{d}{d}"))
        .find(|c| !valid.contains(c))
        .unwrap();
    let reqs = (0..100)
        .map(|_| ("/api/v1/grants".to_string(), grant_body("prod-db", &wrong)))
        .collect();
    let res = at_once(&s, &token_of(&carol), reqs);
    let invalid = res.iter().filter(|(_, s)| s == "mfa-invalid").count();
    let locked = res.iter().filter(|(_, s)| s == "mfa-locked").count();
    // The default limit is 5 wrong codes: 4 are told how many tries remain, the 5th locks, and
    // the other 95 are refused without being checked.
    assert_eq!((invalid, locked), (4, 96), "{res:?}");
    assert_eq!(count(&s, "mfa.failed"), 4);
    assert_eq!(count(&s, "mfa.locked"), 1);
    assert_eq!(count(&s, "mfa.refused_locked"), 95);
    // Locked means locked: even the right code is refused now.
    let r = carol.run(&[
        "request",
        "prod-db",
        "--reason",
        REASON,
        "--ticket",
        "INC-3",
        "--otp",
        &carol.otp(),
    ]);
    assert_eq!(r.slug(), "mfa-locked", "{}", r.stdout);
    assert_eq!(carol.ok(&["status"]).as_array().unwrap().len(), 0);
}

const QUORUM2: &str = "  - name: two-person\n    resources: [vault]\n    who: { groups: [oncall] }\n    require: { mfa: true }\n    approval: { mode: quorum, count: 2, from: [security], timeout: 10m, on_timeout: deny }\n    duration: { default: 15m, max: 1h }\n";

fn quorum2_policy() -> String {
    format!(
        "{}{QUORUM2}",
        POLICY.replace(
            "resources:\n  - name: prod-db",
            "resources:\n  - { name: vault, kind: exec, grant: [\"/bin/true\"], revoke: [\"/bin/true\"] }\n  - name: prod-db"
        )
    )
}

#[test]
fn simultaneous_approvals_are_both_kept_and_approvers_do_not_review() {
    let s = Server::start(&quorum2_policy());
    let bob = s.user("bob", &["oncall"]);
    let sam = s.user("sam", &["security"]);
    let tom = s.user("tom", &["security"]);
    let una = s.user("una", &["security"]);
    let mut last = String::new();
    for round in 0..2 {
        let g = bob.ok(&["request", "vault", "--reason", REASON, "--otp", &bob.otp()]);
        assert_eq!(g["state"], "pending");
        let id = g["id"].as_str().unwrap().to_string();
        let path = format!("/api/v1/grants/{id}/approve");
        // Two approvers, each with their own fresh code, at the same moment.
        let (sc, tc) = (sam.otp(), tom.otp());
        let r = post_at_once(
            &s.url,
            vec![
                (token_of(&sam), path.clone(), json!({"otp": sc})),
                (token_of(&tom), path.clone(), json!({"otp": tc})),
            ],
        );
        assert_eq!((r[0].0, r[1].0), (200, 200), "round {round}: {r:?}");
        let st = bob.ok(&["status", &id]);
        assert_eq!(st["state"], "active", "round {round}: {st}");
        let mut by: Vec<&str> = st["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["by"].as_str().unwrap())
            .collect();
        by.sort();
        assert_eq!(by, ["sam", "tom"], "round {round}: no approval lost");
        last = id;
    }

    // Separation of duties: neither approver may review the access they approved.
    sam.ok(&["revoke", &last, "--reason", "done"]);
    for approver in [&sam, &tom] {
        let otp = approver.otp();
        let r = approver.run(&[
            "review",
            &last,
            "--verdict",
            "appropriate",
            "--notes",
            "looked fine",
            "--otp",
            &otp,
        ]);
        assert_eq!(r.slug(), "forbidden", "{}", r.stdout);
        assert!(r.stdout.contains("approved"), "{}", r.stdout);
    }
    let otp = una.otp();
    una.ok(&[
        "review",
        &last,
        "--verdict",
        "appropriate",
        "--notes",
        "checked the session log",
        "--otp",
        &otp,
    ]);
}

#[test]
fn disabling_a_user_on_the_host_ends_their_grants_at_the_targets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let script = |name: &str, body: &str| exec_script(dir.path(), name, body);
    let id_of = GRANT_ID_OF_STDIN;
    let grant = script("grant", &format!("{id_of}\ntouch {d}/active-$id"));
    let revoke = script("revoke", &format!("{id_of}\nrm -f {d}/active-$id"));
    let policy = POLICY.replace(
        "resources:\n  - name: prod-db",
        &format!("resources:\n  - {{ name: k8s-admin, kind: exec, grant: [\"{grant}\"], revoke: [\"{revoke}\"] }}\n  - name: prod-db"),
    ) + "  - name: k8s\n    resources: [k8s-admin]\n    who: { groups: [oncall] }\n    require: { mfa: true }\n    approval: { mode: auto }\n    duration: { default: 1h, max: 2h }\n";
    let s = Server::start(&policy);
    let bob = s.user("bob", &["oncall"]);
    let sam = s.user("sam", &["security"]);
    let g = bob.ok(&[
        "request",
        "k8s-admin",
        "--reason",
        REASON,
        "--otp",
        &bob.otp(),
    ]);
    let active = g["id"].as_str().unwrap().to_string();
    assert!(dir.path().join(format!("active-{active}")).exists());
    let g = bob.ok(&[
        "request",
        "bastion",
        "--reason",
        REASON,
        "--ticket",
        "INC-5",
        "--otp",
        &bob.otp(),
    ]);
    let pending = g["id"].as_str().unwrap().to_string();

    let o = std::process::Command::new(BIN)
        .args(["--json", "admin", "user", "disable", "bob", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut ended: Vec<&str> = v["ended_grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    ended.sort();
    let mut want = vec![active.as_str(), pending.as_str()];
    want.sort();
    assert_eq!(ended, want);

    // The running server revokes the credential at the target, verified.
    poll(
        "credential revoked at the target",
        Duration::from_secs(20),
        || (!dir.path().join(format!("active-{active}")).exists()).then_some(()),
    );
    let st = poll("revocation recorded", Duration::from_secs(20), || {
        let st = sam.ok(&["status", &active]);
        (st["credential_status"]["state"] == "revoked").then_some(st)
    });
    assert_eq!(st["state"], "revoked", "{st}");
    assert_eq!(sam.ok(&["status", &pending])["state"], "cancelled");
    for k in [
        "admin.user_disabled",
        "grant.revoked",
        "grant.cancelled",
        "credential.revoked",
        "review.opened",
    ] {
        assert_eq!(count(&s, k), 1, "{k}");
    }
    // And bob is out: no session, no login.
    assert_eq!(bob.run(&["whoami"]).slug(), "unauthenticated");
}

/// Found by the crash trials: the last two approvals of a quorum arriving together both
/// activate the grant and both issue its credential; the slower one used to fail on the
/// credential record (a store error, `500 internal`) before the grant's compare-and-swap could
/// say what happened. Now it is a conflict (`409`: the grant is active already), its credential
/// is taken back, and one credential is recorded.
#[test]
fn the_last_two_approvals_at_once_activate_once_and_the_loser_hears_conflict() {
    let hooks = tempfile::tempdir().unwrap();
    let slow = exec_script(hooks.path(), "grant.sh", "sleep 0.3");
    let policy = quorum2_policy().replace(
        "{ name: vault, kind: exec, grant: [\"/bin/true\"]",
        &format!("{{ name: vault, kind: exec, grant: [\"{slow}\"]"),
    );
    let s = Server::start(&policy);
    let bob = s.user("bob", &["oncall"]);
    let sam = s.user("sam", &["security"]);
    let tom = s.user("tom", &["security"]);
    let una = s.user("una", &["security"]);
    let g = bob.ok(&["request", "vault", "--reason", REASON, "--otp", &bob.otp()]);
    let id = g["id"].as_str().unwrap().to_string();
    una.ok(&["approve", &id, "--otp", &una.otp()]);
    let path = format!("/api/v1/grants/{id}/approve");
    let (sc, tc) = (sam.otp(), tom.otp());
    let mut codes = post_at_once(
        &s.url,
        vec![
            (token_of(&sam), path.clone(), json!({"otp": sc})),
            (token_of(&tom), path, json!({"otp": tc})),
        ],
    );
    codes.sort_by_key(|r| r.0);
    assert_eq!(
        (codes[0].0, codes[1].0),
        (200, 409),
        "one activates, the other hears conflict: {codes:?}"
    );
    let st = bob.ok(&["status", &id]);
    assert_eq!(st["state"], "active", "{st}");
    assert_eq!(st["approvals"].as_array().unwrap().len(), 2, "{st}");
    assert_eq!(count(&s, "grant.activated"), 1);
    assert_eq!(count(&s, "credential.issued"), 1);
}
