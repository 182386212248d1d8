//! Drills against real targets: the real PostgreSQL and sshd from the testkit, and a real HTTP
//! receiver standing in for Slack. A drill walks request → policy → MFA → credential → USE at
//! the target → revoke → VERIFY refused → audit verify → the sink got the DRILL alert; a target
//! that is down, or a host that never reads the KRL, fails the drill at the right step, and
//! the failure is recorded and alerted. The drill identity cannot be used outside a drill.

use crate::harness::*;
use breakglass_testkit::pg::Pg;
use breakglass_testkit::sshd::Sshd;
use breakglass_testkit::{free_port, whoami};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A Slack-like receiver: records every body it is sent, answers 200.
pub(crate) fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/slack", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            let seen = s2.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut len = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap_or(());
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).to_string());
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            });
        }
    });
    (url, seen)
}

pub(crate) fn texts(seen: &Mutex<Vec<String>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter_map(|b| serde_json::from_str::<Value>(b).ok())
        .filter_map(|v| v["text"].as_str().map(String::from))
        .collect()
}

/// The drill part of a policy: drill-bot drills `resource` under its own policy (MFA on).
fn drill_policy(resource: &str, verify_within: &str) -> String {
    format!(
        r#"
  - name: drill
    resources: [{resource}]
    who: {{ users: [drill-bot] }}
    require: {{ mfa: true, ticket: "^(INC|DRILL)" }}
    approval: {{ mode: auto }}
    duration: {{ default: 10m, max: 1h }}
sinks:
  - {{ name: drill-slack, kind: slack, url_env: SLACK_URL }}
drills:
  identity: drill-bot
  notify: [drill-slack]
  resources:
    - {{ resource: {resource}, every: 24h, at: "03:00", verify_within: {verify_within} }}
"#
    )
}

fn run_drill(u: &User, resource: &str) -> Run {
    u.run(&["drill", "run", resource])
}

fn last(u: &User) -> Value {
    let h = u.ok(&["drill", "history", "--limit", "1"]);
    h[0].clone()
}

#[test]
fn postgres_drill_passes_and_fails_at_the_credential_when_postgres_is_down() {
    let pg = Pg::start();
    pg.sql("CREATE ROLE app_admin NOLOGIN");
    let (slack, seen) = receiver();
    let policy = format!(
        r#"
admins: {{ groups: [security] }}
resources:
  - name: prod-db
    kind: postgres
    admin_url_env: BREAKGLASS_PG_ADMIN_URL
    grant_roles: [app_admin]
policies:
  - name: dba-emergency
    resources: [prod-db]
    who: {{ groups: [oncall] }}
    require: {{ mfa: false }}
    approval: {{ mode: auto }}
    duration: {{ default: 30m, max: 2h }}
    review: {{ within: 72h, by: [security] }}{}"#,
        drill_policy("prod-db", "20s")
    );
    let url = pg.admin_url();
    let server = Server::start_with(
        &policy,
        &[("BREAKGLASS_PG_ADMIN_URL", &url), ("SLACK_URL", &slack)],
        &["--alert-backoff", "1s"],
    );
    let sam = server.user("sam", &["security"]);
    let alice = server.user("alice", &["oncall"]);

    // A non-admin may neither run drills nor read them.
    let r = run_drill(&alice, "prod-db");
    assert!(
        !r.ok && r.slug().contains("forbidden"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert!(!alice.run(&["drill", "history"]).ok);

    // Green: every step passes at the real PostgreSQL.
    let r = run_drill(&sam, "prod-db");
    assert!(r.ok, "drill failed: {}{}", r.stdout, r.stderr);
    let d = &r.json[0];
    assert_eq!(d["verdict"], "passed", "{d}");
    let steps: Vec<&str> = d["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "identity",
            "request",
            "mfa",
            "credential",
            "use",
            "revoke",
            "verify",
            "audit",
            "alerts"
        ],
        "{d}"
    );
    // The figures for BENCHMARKS.md (printed, never asserted).
    eprintln!(
        "drill figures (postgres):\n{}",
        sam.run_plain(&["drill", "history"]).stdout
    );
    let use_note = d["steps"][4]["note"].as_str().unwrap();
    assert!(
        use_note.contains("current_user = bg_") && use_note.contains("app_admin"),
        "{use_note}"
    );
    for t in [
        "time_to_glass_ms",
        "time_to_first_use_ms",
        "revocation_lag_ms",
        "alert_latency_ms",
        "total_ms",
    ] {
        assert!(d["timings"][t].is_u64(), "{t}: {d}");
    }
    // The role is gone at the target.
    let gid = d["grant_id"].as_str().unwrap();
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'bg\\_%'"),
        "0"
    );
    // The grant is marked as a drill in the audit trail, and opened no review.
    let export = sam.run_plain(&["audit", "export", "--format", "jsonl"]);
    let activated = export
        .stdout
        .lines()
        .find(|l| l.contains("grant.activated") && l.contains(gid))
        .unwrap_or_else(|| panic!("no activation of {gid} in the export"));
    assert!(activated.contains("\"drill\":true"), "{activated}");
    let reviews = sam.ok(&["review", "list", "--all"]);
    assert!(
        !reviews.to_string().contains(gid),
        "a drill opened a review: {reviews}"
    );
    // The sink got the DRILL-tagged activation.
    let t = texts(&seen);
    assert!(
        t.iter()
            .any(|x| x.starts_with("DRILL breakglass grant.activated") && x.contains(gid)),
        "{t:?}"
    );
    // /metrics has the last success per resource.
    let (_, metrics) = server.get("/metrics");
    assert!(
        metrics.contains("breakglass_drill_last_success_timestamp_seconds{resource=\"prod-db\"}")
            && metrics.contains("breakglass_drill_last_passed{resource=\"prod-db\"} 1"),
        "{metrics}"
    );

    // PostgreSQL stops: the drill fails at the credential step, is recorded and alerted.
    pg.stop();
    let r = run_drill(&sam, "prod-db");
    assert!(
        !r.ok,
        "a drill against a stopped PostgreSQL passed: {}",
        r.stdout
    );
    let d = last(&sam);
    assert_eq!(d["verdict"], "failed", "{d}");
    assert_eq!(d["failed_step"], "credential", "{d}");
    assert!(!d["error"].as_str().unwrap().is_empty(), "{d}");
    let t = poll("the drill.failed alert", Duration::from_secs(30), || {
        let t = texts(&seen);
        t.iter()
            .any(|x| x.starts_with("DRILL breakglass drill.failed"))
            .then_some(t)
    });
    assert!(t.iter().any(|x| x.contains("credential")), "{t:?}");
    let (_, metrics) = server.get("/metrics");
    assert!(
        metrics.contains("breakglass_drill_last_passed{resource=\"prod-db\"} 0"),
        "{metrics}"
    );
    // The dashboard shows the failing step.
    let status = sam.ok(&["drill", "status"]);
    assert_eq!(status[0]["last"]["failed_step"], "credential", "{status}");
}

#[test]
fn the_drill_identity_cannot_be_used_outside_a_drill() {
    let (slack, seen) = receiver();
    let policy = format!("{}{}", POLICY, drill_policy("prod-db", "5s"));
    // POLICY ends inside `policies:`, so the drill policy joins that list.
    let server = Server::start_with(
        &policy,
        &[("SLACK_URL", &slack)],
        &["--alert-backoff", "1s"],
    );
    let sam = server.user("sam", &["security"]);
    // First drill creates the identity (exec resource: the hooks are the target).
    let r = run_drill(&sam, "prod-db");
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    eprintln!(
        "drill figures (exec):\n{}",
        sam.run_plain(&["drill", "history"]).stdout
    );
    // Someone tries to log in as the drill identity (with any password): refused, alerted.
    let mallory = User::new(&server, "drill-bot");
    let r = mallory.run_stdin(
        &["login", "--user", "drill-bot", "--password-stdin"],
        Some(PASSWORD),
    );
    assert!(!r.ok, "the drill identity logged in");
    let t = poll("the misuse alert", Duration::from_secs(30), || {
        let t = texts(&seen);
        t.iter()
            .any(|x| x.contains("drill.identity_misuse"))
            .then_some(t)
    });
    assert!(t.iter().any(|x| x.contains("drill-bot")), "{t:?}");
    // An admin cannot give it a password either: the user exists as a drill identity.
    let out = run_with_stdin(
        BIN,
        &[
            "admin",
            "user",
            "add",
            "drill-bot",
            "--group",
            "oncall",
            "--password-stdin",
        ],
        &["--data-dir", server.data_dir().to_str().unwrap()],
        PASSWORD,
        &[],
    );
    let again = mallory.run_stdin(
        &["login", "--user", "drill-bot", "--password-stdin"],
        Some(PASSWORD),
    );
    assert!(
        !again.ok,
        "drill-bot logged in after `admin user add` ({:?})",
        out.status
    );
}

/// What the host's timer does: fetch the KRL into the file sshd reads.
fn refresh_krl(u: &User, krl: &Path) {
    u.ok(&["ssh", "krl", "--out", &krl.display().to_string()]);
}

/// The host's KRL timer (every 200 ms) until the flag is set.
fn krl_timer(
    server: &Server,
    sam: &User,
    krl: &Path,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let sam_cfg = sam.config.path().to_path_buf();
    let url = server.url.clone();
    let krl = krl.to_path_buf();
    let t = std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            let _ = std::process::Command::new(BIN)
                .args(["--server", &url, "ssh", "krl", "--out"])
                .arg(&krl)
                .env("XDG_CONFIG_HOME", &sam_cfg)
                .output();
            std::thread::sleep(Duration::from_millis(200)); // the host's timer period
        }
    });
    (stop, t)
}

/// A host whose installed `breakglass` was swapped for a script that runs the command without
/// recording it (tampered or misconfigured): the drill logs in, the KRL refuses it afterwards,
/// but its session left no recording — the drill fails at verify and says so.
#[test]
fn ssh_drill_fails_at_verify_when_its_session_left_no_recording() {
    let user = whoami();
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let krl = tmp.path().join("revoked.krl");
    let fake = exec_script(
        tmp.path(),
        "not-breakglass",
        "exec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"",
    );
    let (slack, _seen) = receiver();
    let policy = format!(
        "{}{}",
        bastion_policy(&user, port, &krl, "").replace(
            &format!("session_command: {BIN}"),
            &format!("session_command: {fake}")
        ),
        drill_policy("bastion", "4s")
    );
    let server = Server::start_with(
        &policy,
        &[("SLACK_URL", &slack)],
        &["--alert-backoff", "1s"],
    );
    let sam = server.user("sam", &["security"]);
    let ca = sam.ok(&["ssh", "ca-key"]);
    refresh_krl(&sam, &krl);
    let _sshd = Sshd::start(tmp.path(), ca["public_key"].as_str().unwrap(), &krl, port);
    let (stop, refresher) = krl_timer(&server, &sam, &krl);
    let r = run_drill(&sam, "bastion");
    stop.store(true, Ordering::SeqCst);
    refresher.join().unwrap();
    assert!(!r.ok, "a drill without its recording passed: {}", r.stdout);
    let d = last(&sam);
    assert_eq!(d["failed_step"], "verify", "{d}");
    assert!(d["error"].as_str().unwrap().contains("no recording"), "{d}");
    // It did log in (USE passed): the missing piece is the recording, not access.
    assert!(
        d["steps"][4]["note"].as_str().unwrap().contains("uid="),
        "{d}"
    );
}

#[test]
fn ssh_drill_passes_when_the_host_reads_the_krl_and_fails_at_verify_when_it_does_not() {
    let user = whoami();
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let krl = tmp.path().join("revoked.krl");
    let (slack, seen) = receiver();
    let policy = format!(
        "{}{}",
        bastion_policy(&user, port, &krl, ""),
        drill_policy("bastion", "4s")
    );
    let server = Server::start_with(
        &policy,
        &[("SLACK_URL", &slack)],
        &["--alert-backoff", "1s"],
    );
    let sam = server.user("sam", &["security"]);
    let ca = sam.ok(&["ssh", "ca-key"]);
    refresh_krl(&sam, &krl);
    let _sshd = Sshd::start(tmp.path(), ca["public_key"].as_str().unwrap(), &krl, port);

    // The host refreshes its KRL often (a timer, as the README tells operators).
    let (stop, refresher) = krl_timer(&server, &sam, &krl);
    let r = run_drill(&sam, "bastion");
    assert!(r.ok, "ssh drill failed: {}{}", r.stdout, r.stderr);
    let d = &r.json[0];
    assert!(
        d["steps"][4]["note"].as_str().unwrap().contains("uid="),
        "{d}"
    );
    assert!(d["timings"]["revocation_lag_ms"].is_u64(), "{d}");
    // VERIFY also found the drill session's recording (the resource records by default).
    let verify = d["steps"][6]["note"].as_str().unwrap();
    assert!(verify.contains("1 session(s) recorded"), "{d}");
    eprintln!(
        "drill figures (ssh):\n{}",
        sam.run_plain(&["drill", "history"]).stdout
    );

    // The host stops reading the KRL: the revoked certificate still logs in → failed at verify.
    stop.store(true, Ordering::SeqCst);
    refresher.join().unwrap();
    let r = run_drill(&sam, "bastion");
    assert!(
        !r.ok,
        "a drill whose revocation did not take passed: {}",
        r.stdout
    );
    let d = last(&sam);
    assert_eq!(d["failed_step"], "verify", "{d}");
    assert!(d["error"].as_str().unwrap().contains("KRL"), "{d}");
    poll("the drill.failed alert", Duration::from_secs(30), || {
        texts(&seen)
            .iter()
            .any(|x| x.starts_with("DRILL breakglass drill.failed") && x.contains("verify"))
            .then_some(())
    });
}
