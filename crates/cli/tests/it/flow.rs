//! The break-glass flow and every refusal, as a responder and an approver live it.

use crate::harness::*;
use serde_json::Value;
use std::time::Duration;

fn request(u: &User, resource: &str, reason: &str, ticket: &str, dur: &str) -> Run {
    let otp = u.otp();
    u.run(&[
        "request", resource, "--reason", reason, "--ticket", ticket, "--for", dur, "--otp", &otp,
    ])
}

/// A request the policy refuses before MFA is checked (so no code is spent).
fn refused(u: &User, resource: &str, reason: &str, ticket: &str, dur: &str) -> Run {
    u.run(&[
        "request", resource, "--reason", reason, "--ticket", ticket, "--for", dur, "--otp",
        "000000",
    ])
}

const REASON: &str = "orders table locked, checkout down";

#[test]
fn auto_grant_end_to_end_with_status_and_audit() {
    let s = Server::start(POLICY);
    let bob = s.user("bob", &["oncall"]);
    let r = request(&bob, "prod-db", REASON, "INC-4711", "30m");
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let g = &r.json;
    assert_eq!(g["state"], "active");
    assert_eq!(g["resource"], "prod-db");
    assert_eq!(g["policy"], "dba-emergency");
    assert_eq!(g["ticket"], "INC-4711");
    let rem = g["remaining_secs"].as_u64().unwrap();
    assert!(rem > 1790 && rem <= 1800, "remaining {rem}");
    let id = g["id"].as_str().unwrap();

    let st = bob.ok(&["status", id]);
    assert_eq!(st["state"], "active");
    let list = bob.ok(&["status"]);
    assert!(list.as_array().unwrap().iter().any(|x| x["id"] == id));

    // Human output shows the countdown.
    let human = std::process::Command::new(BIN)
        .args(["--server", &s.url, "status", id])
        .env("XDG_CONFIG_HOME", bob.config.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("remaining"), "{text}");

    // The session file is private.
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(bob.config.path().join("breakglass/session.json")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let v = bob.run(&[
        "audit",
        "verify",
        "--data-dir",
        s.data_dir().to_str().unwrap(),
    ]);
    assert!(v.ok, "{}{}", v.stdout, v.stderr);
    assert!(v.json["events"].as_u64().unwrap() >= 6);
}

#[test]
fn refusals_are_precise_and_change_nothing() {
    let s = Server::start(POLICY);
    let bob = s.user("bob", &["oncall"]);
    let eve = s.user("eve", &["developers"]);

    let r = bob.run(&[
        "request", "prod-db", "--reason", REASON, "--for", "30m", "--otp", "000000",
    ]);
    assert!(!r.ok);
    assert_eq!(r.slug(), "policy/ticket-required", "{}", r.stdout);

    let r = refused(&bob, "prod-db", REASON, "ABC-1", "30m");
    assert_eq!(r.slug(), "policy/ticket-mismatch", "{}", r.stdout);
    assert!(r.stdout.contains("INC-"), "{}", r.stdout);

    let r = refused(&bob, "prod-db", "it broke", "INC-1", "30m");
    assert_eq!(r.slug(), "policy/reason-too-short", "{}", r.stdout);

    let r = refused(&bob, "prod-db", REASON, "INC-1", "3h");
    assert_eq!(r.slug(), "policy/duration-over-max", "{}", r.stdout);

    let r = refused(&eve, "prod-db", REASON, "INC-1", "30m");
    assert_eq!(r.slug(), "policy/not-authorised", "{}", r.stdout);

    let r = refused(&bob, "nosuch", REASON, "INC-1", "30m");
    assert_eq!(r.slug(), "policy/unknown-resource", "{}", r.stdout);

    let r = bob.run(&[
        "request", "prod-db", "--reason", REASON, "--ticket", "INC-1", "--for", "forever", "--otp",
        "000000",
    ]);
    assert_eq!(r.slug(), "invalid-request", "{}", r.stdout);

    // Nothing was granted.
    let list = bob.ok(&["status"]);
    assert_eq!(list.as_array().unwrap().len(), 0);

    // Every refusal is audited.
    let export = s.dir.path().join("export.jsonl");
    let o = std::process::Command::new(BIN)
        .args(["audit", "export", "--format", "jsonl", "--data-dir"])
        .arg(s.data_dir())
        .arg("--out")
        .arg(&export)
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = std::fs::read_to_string(&export).unwrap();
    for code in [
        "ticket-required",
        "ticket-mismatch",
        "reason-too-short",
        "duration-over-max",
        "not-authorised",
        "unknown-resource",
    ] {
        assert!(
            text.contains(&format!("\"code\":\"{code}\"")),
            "no audited refusal {code}"
        );
    }
}

#[test]
fn mfa_replay_and_lockout() {
    let s = Server::start(POLICY);
    let bob = s.user("bob", &["oncall"]);
    let r = request(&bob, "prod-db", REASON, "INC-1", "30m");
    assert!(r.ok, "{}", r.stdout);
    // The same code again is a replay.
    let used = bob.used_code();
    let r = bob.run(&[
        "request", "prod-db", "--reason", REASON, "--ticket", "INC-2", "--for", "30m", "--otp",
        &used,
    ]);
    assert_eq!(r.slug(), "mfa-replayed", "{}", r.stdout);
    // Missing code without a terminal: a clear error.
    let r = bob.run(&[
        "request", "prod-db", "--reason", REASON, "--ticket", "INC-2", "--for", "30m",
    ]);
    assert_eq!(r.slug(), "mfa-required", "{}", r.stdout);

    let carol = s.user("carol", &["oncall"]);
    let good = carol.otp();
    let wrong = if good == "000000" { "111111" } else { "000000" };
    let mut last = Run {
        ok: true,
        json: Value::Null,
        stdout: String::new(),
        stderr: String::new(),
    };
    for _ in 0..5 {
        last = carol.run(&[
            "request", "prod-db", "--reason", REASON, "--ticket", "INC-3", "--otp", wrong,
        ]);
    }
    assert_eq!(last.slug(), "mfa-locked", "{}", last.stdout);
    // Even the right code is refused while locked.
    let r = carol.run(&[
        "request", "prod-db", "--reason", REASON, "--ticket", "INC-3", "--otp", &good,
    ]);
    assert_eq!(r.slug(), "mfa-locked", "{}", r.stdout);
    let users = std::process::Command::new(BIN)
        .args(["--json", "admin", "user", "list", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&users.stdout).unwrap();
    let c = v
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == "carol")
        .unwrap();
    assert!(c["mfa_locked_until"].is_string());
}

#[test]
fn quorum_approve_deny_and_no_self_approval() {
    let s = Server::start(POLICY);
    let alice = s.user("alice", &["oncall", "security"]);
    let sam = s.user("sam", &["security"]);
    let bob = s.user("bob", &["oncall"]);

    let r = request(&alice, "bastion", "bastion is unreachable", "INC-9", "15m");
    assert!(r.ok, "{}", r.stdout);
    assert_eq!(r.json["state"], "pending");
    let id = r.json["id"].as_str().unwrap().to_string();

    // The requester can never approve her own request, even in the approver group.
    let otp = alice.otp();
    let r = alice.run(&["approve", &id, "--otp", &otp]);
    assert_eq!(r.slug(), "forbidden", "{}", r.stdout);
    assert!(r.stdout.contains("cannot approve"), "{}", r.stdout);
    // Not in `from`.
    let otp = bob.otp();
    let r = bob.run(&["approve", &id, "--otp", &otp]);
    assert!(!r.ok);

    let otp = sam.otp();
    let g = sam.ok(&["approve", &id, "--otp", &otp]);
    assert_eq!(g["state"], "active");
    assert_eq!(g["approvals"][0]["by"], "sam");

    // A second request is denied.
    let r = request(
        &alice,
        "bastion",
        "bastion is unreachable again",
        "INC-10",
        "15m",
    );
    let id2 = r.json["id"].as_str().unwrap().to_string();
    let g = sam.ok(&["deny", &id2, "--reason", "use the console instead"]);
    assert_eq!(g["state"], "denied");
    let r = sam.run(&["approve", &id2, "--otp", "123456"]);
    assert_eq!(r.slug(), "conflict", "{}", r.stdout);
}

#[test]
fn quorum_timeout_deny_and_auto() {
    let s = Server::start(POLICY);
    let bob = s.user("bob", &["oncall"]);
    let otp = bob.otp();
    let r = bob.run(&["request", "short", "--reason", REASON, "--otp", &otp]);
    assert_eq!(r.json["state"], "pending", "{}", r.stdout);
    let id = r.json["id"].as_str().unwrap().to_string();
    let otp = bob.otp();
    let r = bob.run(&["request", "fallback", "--reason", REASON, "--otp", &otp]);
    assert_eq!(r.json["state"], "pending", "{}", r.stdout);
    let id2 = r.json["id"].as_str().unwrap().to_string();
    poll("approval timeout", Duration::from_secs(20), || {
        (bob.ok(&["status", &id])["state"] == "timed-out").then_some(())
    });
    let g = poll("fallback activation", Duration::from_secs(20), || {
        let g = bob.ok(&["status", &id2]);
        (g["state"] == "active").then_some(g)
    });
    assert_eq!(g["activated_via"], "timeout-fallback");
}

#[test]
fn revoke_and_extend() {
    let s = Server::start(POLICY);
    let bob = s.user("bob", &["oncall"]);
    let sec = s.user("sam", &["security"]);
    let r = request(&bob, "prod-db", REASON, "INC-1", "30m");
    let id = r.json["id"].as_str().unwrap().to_string();

    let otp = bob.otp();
    let g = bob.ok(&["extend", &id, "--by", "30m", "--otp", &otp]);
    assert_eq!(g["extensions"], 1);
    let rem = g["remaining_secs"].as_u64().unwrap();
    assert!(rem > 3500, "{rem}");
    // Beyond the 2h maximum: refused.
    let otp = bob.otp();
    let r = bob.run(&["extend", &id, "--by", "2h", "--otp", &otp]);
    assert_eq!(r.slug(), "policy/duration-over-max", "{}", r.stdout);

    let g = sec.ok(&["revoke", &id, "--reason", "incident over"]);
    assert_eq!(g["state"], "revoked");
    assert_eq!(g["ended_by"], "sam");
    let r = bob.run(&["revoke", &id]);
    assert_eq!(r.slug(), "conflict");
    let r = bob.run(&["status", "g-doesnotexist"]);
    assert_eq!(r.slug(), "not-found");
}

#[test]
fn grant_expires_by_itself_and_across_restart() {
    let s0 = Server::start(POLICY);
    let mut s = s0;
    let bob = s.user("bob", &["oncall"]);
    let r = request(&bob, "prod-db", REASON, "INC-1", "2s");
    assert!(r.ok, "{}", r.stdout);
    let id = r.json["id"].as_str().unwrap().to_string();
    let g = poll("expiry", Duration::from_secs(15), || {
        let g = bob.ok(&["status", &id]);
        (g["state"] == "expired").then_some(g)
    });
    assert!(g["ended_at"].is_string());

    // Across a restart: kill -9, let the deadline pass while down, start again.
    let r = request(&bob, "prod-db", REASON, "INC-2", "3s");
    let id2 = r.json["id"].as_str().unwrap().to_string();
    let ends = r.json["expires_at_ms"].as_i64().unwrap();
    s.kill();
    poll(
        "deadline to pass while down",
        Duration::from_secs(15),
        || (unix_now() * 1000 > ends + 500).then_some(()),
    );
    s.restart();
    let g = bob.ok(&["status", &id2]);
    assert_eq!(
        g["state"], "expired",
        "overdue grant must expire at start-up"
    );
    let v = bob.run(&[
        "audit",
        "verify",
        "--data-dir",
        s.data_dir().to_str().unwrap(),
    ]);
    assert!(v.ok, "{}{}", v.stdout, v.stderr);
}

#[test]
fn hot_reload_keeps_old_policy_on_broken_file() {
    let s = Server::start(POLICY);
    let bob = s.user("bob", &["oncall"]);
    let before = bob.ok(&["status"]);
    assert!(before.is_array());
    let (_, p0) = s.get("/healthz");
    assert!(p0.contains("ok"));
    std::fs::write(&s.policy_path, "resources: [\n  this is: : broken").unwrap();
    s.sighup();
    poll(
        "reload failure in the audit log",
        Duration::from_secs(20),
        || {
            let out = std::process::Command::new(BIN)
                .args(["audit", "export", "--data-dir"])
                .arg(s.data_dir())
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .contains("policy.reload_failed")
                .then_some(())
        },
    );
    // The old policy is still in force.
    let r = request(&bob, "prod-db", REASON, "INC-1", "30m");
    assert!(r.ok, "{}", r.stdout);

    // A valid new policy (prod-db max 1h) takes effect.
    std::fs::write(&s.policy_path, POLICY.replace("max: 2h", "max: 1h")).unwrap();
    poll("new policy", Duration::from_secs(20), || {
        let otp = bob.otp();
        let r = bob.run(&[
            "request", "prod-db", "--reason", REASON, "--ticket", "INC-2", "--for", "90m", "--otp",
            &otp,
        ]);
        (r.slug() == "policy/duration-over-max").then_some(())
    });
}

#[test]
fn policy_check_reports_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, POLICY).unwrap();
    let o = std::process::Command::new(BIN)
        .args(["policy", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        POLICY.replace("min_reason: 15", "min_reason: 15, colour: red"),
    )
    .unwrap();
    let o = std::process::Command::new(BIN)
        .args(["--json", "policy", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = &v["errors"][0];
    assert!(e["message"].as_str().unwrap().contains("colour"), "{v}");
    assert!(e["line"].as_u64().is_some(), "{v}");
}

#[test]
fn init_is_idempotent_and_disable_ends_sessions() {
    let s = Server::start(POLICY);
    let pem = std::fs::read_to_string(s.data_dir().join("audit-key.pem")).unwrap();
    let kek = std::fs::read(s.data_dir().join("keys/kek.key")).unwrap();
    let o = std::process::Command::new(BIN)
        .args(["init", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        std::fs::read_to_string(s.data_dir().join("audit-key.pem")).unwrap(),
        pem,
        "init must never replace keys"
    );
    assert_eq!(
        std::fs::read(s.data_dir().join("keys/kek.key")).unwrap(),
        kek
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.data_dir().join("keys/kek.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let bob = s.user("bob", &["oncall"]);
    assert!(bob.run(&["whoami"]).ok);
    let o = std::process::Command::new(BIN)
        .args(["admin", "user", "disable", "bob", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    assert!(o.status.success());
    let r = bob.run(&["whoami"]);
    assert_eq!(r.slug(), "unauthenticated", "{}", r.stdout);
    let r = bob.run_stdin(
        &["login", "--user", "bob", "--password-stdin"],
        Some(PASSWORD),
    );
    assert_eq!(r.slug(), "invalid-credentials");
    // Adding the same user twice is refused and changes nothing.
    let data = s.data_dir();
    let o = run_with_stdin(
        BIN,
        &[
            "admin",
            "user",
            "add",
            "bob",
            "--group",
            "security",
            "--password-stdin",
        ],
        &["--data-dir", data.to_str().unwrap()],
        PASSWORD,
        &[],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
}

#[test]
fn anomalies_are_flagged_in_status_and_audit() {
    let policy = format!(
        "{POLICY}anomalies:\n  max_grants_per_user: {{ count: 1, within: 1h }}\n  max_extensions: 1\n"
    );
    let s = Server::start(&policy);
    let bob = s.user("bob", &["oncall"]);
    let r = request(&bob, "prod-db", REASON, "INC-1", "30m");
    let codes = |g: &Value| -> Vec<String> {
        g["flags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| f["code"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(codes(&r.json), ["first-grant"], "{}", r.stdout);
    let r2 = request(&bob, "prod-db", REASON, "INC-2", "30m");
    assert_eq!(codes(&r2.json), ["user-frequency"], "{}", r2.stdout);
    let id = r2.json["id"].as_str().unwrap().to_string();
    let otp = bob.otp();
    bob.ok(&["extend", &id, "--by", "5m", "--otp", &otp]);
    let otp = bob.otp();
    let g = bob.ok(&["extend", &id, "--by", "5m", "--otp", &otp]);
    assert!(
        codes(&g).contains(&"repeated-extensions".to_string()),
        "{g}"
    );
    assert!(codes(&bob.ok(&["status", &id])).contains(&"repeated-extensions".to_string()));
    let out = std::process::Command::new(BIN)
        .args(["audit", "export", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("anomaly.flagged"));
}

#[test]
fn sealed_secret_released_only_under_an_active_grant_then_flagged_for_rotation() {
    let policy = format!(
        "{}  - name: cloud-root\n    resources: [aws-root]\n    who: {{ groups: [oncall] }}\n    require: {{ mfa: true, min_reason: 10 }}\n    approval: {{ mode: auto }}\n    duration: {{ default: 15m, max: 1h }}\n",
        POLICY.replace(
            "resources:\n  - name: prod-db",
            "resources:\n  - name: aws-root\n    kind: secret\n  - name: prod-db"
        )
    );
    let s = Server::start(&policy);
    let sam = s.user("sam", &["security"]);
    let bob = s.user("bob", &["oncall"]);
    // Only admins store secrets; the value never appears in the list.
    let r = bob.run_stdin(
        &["secret", "put", "aws-root"],
        Some("hunter2-root-password"),
    );
    assert_eq!(r.slug(), "forbidden", "{}", r.stdout);
    let v = sam.run_stdin(
        &["secret", "put", "aws-root"],
        Some("hunter2-root-password"),
    );
    assert!(v.ok, "{}{}", v.stdout, v.stderr);
    assert_eq!(
        sam.run_stdin(&["secret", "put", "prod-db"], Some("x"))
            .slug(),
        "invalid-request"
    );
    let otp = bob.otp();
    let g = bob.ok(&[
        "request",
        "aws-root",
        "--reason",
        "root account needed for billing lock",
        "--otp",
        &otp,
    ]);
    let id = g["id"].as_str().unwrap().to_string();
    let shown = bob.ok(&["secret", "show", &id]);
    assert_eq!(shown["secret"], "hunter2-root-password");
    // Not to someone else, and not after the grant ends.
    assert!(!sam.run(&["secret", "show", &id]).ok);
    bob.ok(&["revoke", &id]);
    assert_eq!(bob.run(&["secret", "show", &id]).slug(), "forbidden");
    let list = sam.ok(&["secret", "list"]);
    assert_eq!(list[0]["must_rotate"], true, "{list}");
    assert!(!list.to_string().contains("hunter2"));
    sam.run_stdin(
        &["secret", "rotate", "aws-root"],
        Some("new-root-password-2"),
    );
    let list = sam.ok(&["secret", "list"]);
    assert_eq!(
        (list[0]["must_rotate"].clone(), list[0]["version"].clone()),
        (Value::Bool(false), Value::from(2))
    );
    // Audited, and the value is in no log or audit event.
    let out = std::process::Command::new(BIN)
        .args(["audit", "export", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for k in [
        "secret.stored",
        "secret.released",
        "secret.must_rotate",
        "secret.rotated",
    ] {
        assert!(text.contains(k), "{k}");
    }
    assert!(!text.contains("hunter2") && !text.contains("new-root-password"));
    assert!(!s.log.lock().unwrap().contains("hunter2"));
}

#[test]
fn exec_connector_issues_and_revokes_at_the_target_with_retries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let script = |name: &str, body: &str| exec_script(dir.path(), name, body);
    let id_of = GRANT_ID_OF_STDIN;
    let grant = script(
        "grant",
        &format!("{id_of}\ntouch {d}/active-$id\necho '{{\"token\":\"tok-'$id'\"}}'"),
    );
    let revoke = script(
        "revoke",
        &format!(
            "{id_of}\nif [ -e {d}/block ]; then echo 'target down' >&2; exit 1; fi\nrm -f {d}/active-$id"
        ),
    );
    let broken = script("broken", "echo 'cluster unreachable' >&2\nexit 3");
    let policy = format!(
        "{}  - name: k8s-emergency\n    resources: [k8s-admin, k8s-broken]\n    who: {{ groups: [oncall] }}\n    require: {{ mfa: true }}\n    approval: {{ mode: auto }}\n    duration: {{ default: 15m, max: 1h }}\n",
        POLICY.replace(
            "resources:\n  - name: prod-db",
            &format!("resources:\n  - name: k8s-admin\n    kind: exec\n    grant: [\"{grant}\"]\n    revoke: [\"{revoke}\"]\n    timeout: 10s\n  - name: k8s-broken\n    kind: exec\n    grant: [\"{broken}\"]\n    revoke: [\"{revoke}\"]\n  - name: prod-db"),
        )
    );
    let s = Server::start(&policy);
    let bob = s.user("bob", &["oncall"]);
    let otp = bob.otp();
    let g = bob.ok(&[
        "request",
        "k8s-admin",
        "--reason",
        "cluster admin needed",
        "--otp",
        &otp,
    ]);
    let id = g["id"].as_str().unwrap().to_string();
    assert_eq!(g["credential"]["token"], format!("tok-{id}"));
    assert!(dir.path().join(format!("active-{id}")).exists());
    let st = bob.ok(&["status", &id]);
    assert!(
        !st.to_string().contains("tok-"),
        "status must never repeat a credential: {st}"
    );
    assert_eq!(st["credential_status"]["state"], "issued");

    // The target is down at revocation time: revocation stays pending and is retried.
    std::fs::write(dir.path().join("block"), "").unwrap();
    bob.ok(&["revoke", &id]);
    let st = poll(
        "a failed revocation attempt",
        Duration::from_secs(20),
        || {
            let st = bob.ok(&["status", &id]);
            (st["credential_status"]["attempts"].as_u64() >= Some(1)).then_some(st)
        },
    );
    assert_eq!(st["credential_status"]["revocation_pending"], true, "{st}");
    assert!(
        st["credential_status"]["last_error"]
            .as_str()
            .unwrap()
            .contains("target down")
    );
    assert!(dir.path().join(format!("active-{id}")).exists());
    std::fs::remove_file(dir.path().join("block")).unwrap();
    poll("revocation confirmed", Duration::from_secs(30), || {
        (bob.ok(&["status", &id])["credential_status"]["state"] == "revoked").then_some(())
    });
    assert!(!dir.path().join(format!("active-{id}")).exists());

    // A target that cannot issue: no grant at all.
    let otp = bob.otp();
    let r = bob.run(&[
        "request",
        "k8s-broken",
        "--reason",
        "cluster admin needed",
        "--otp",
        &otp,
    ]);
    assert_eq!(r.slug(), "target-failed", "{}", r.stdout);
    assert!(r.stdout.contains("cluster unreachable"));
    // The code was spent even though the target failed.
    let used = bob.used_code();
    let r = bob.run(&[
        "request",
        "k8s-admin",
        "--reason",
        "cluster admin needed",
        "--otp",
        &used,
    ]);
    assert_eq!(r.slug(), "mfa-replayed", "{}", r.stdout);
    let list = bob.ok(&["status"]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|g| g["resource"] != "k8s-broken")
    );
    let out = std::process::Command::new(BIN)
        .args(["audit", "export", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for k in [
        "credential.issued",
        "revocation.failed",
        "credential.revoked",
        "credential.issue_failed",
    ] {
        assert!(text.contains(k), "{k}");
    }
    assert!(
        !text.contains("tok-"),
        "credentials never reach the audit trail"
    );
}

/// A grant activated by its approver: the credential is issued then, sealed, and handed to the
/// requester once with `breakglass credential GRANT_ID` — never to the approver, never twice.
#[test]
fn approver_activated_credential_is_picked_up_once_by_the_holder() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let hook = dir.path().join("grant");
    std::fs::write(
        &hook,
        "#!/bin/sh\ncat >/dev/null\necho 'kube-token-s3cr3t'\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let policy = POLICY.replace(
        "{ name: bastion, kind: exec, grant: [\"/bin/true\"]",
        &format!(
            "{{ name: bastion, kind: exec, grant: [\"{}\"]",
            hook.display()
        ),
    );
    assert_ne!(policy, POLICY, "the harness policy changed shape");
    let s = Server::start(&policy);
    let alice = s.user("alice", &["oncall"]);
    let sam = s.user("sam", &["security"]);
    let g = alice.break_glass("bastion", "INC-9");
    assert_eq!(g["state"], "pending");
    let id = g["id"].as_str().unwrap().to_string();
    // Nothing to pick up while pending.
    let r = alice.run(&["credential", &id]);
    assert!(!r.ok && r.slug() == "conflict", "{}{}", r.stdout, r.stderr);
    let otp = sam.otp();
    let approved = sam.ok(&["approve", &id, "--otp", &otp]);
    assert_eq!(approved["state"], "active");
    assert!(
        !approved.to_string().contains("kube-token"),
        "the approver saw the credential"
    );
    // Not for anyone else; once for the holder; never again; never in status or audit.
    assert!(!sam.run(&["credential", &id]).ok);
    let c = alice.ok(&["credential", &id]);
    assert_eq!(c["credential"], "kube-token-s3cr3t");
    let again = alice.run(&["credential", &id]);
    assert!(!again.ok && again.slug() == "conflict", "{}", again.stdout);
    assert!(
        !alice
            .ok(&["status", &id])
            .to_string()
            .contains("kube-token")
    );
    let audit = sam.run(&["audit", "export"]).stdout;
    assert!(audit.contains("credential.picked_up") && !audit.contains("kube-token"));
}
