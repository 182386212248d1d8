//! Several breakglass nodes on one PostgreSQL database (the testkit's real server): any node
//! serves any request, what one node spent (a TOTP code) is spent on all, a grant one node
//! started is ended on time by another when the first is killed, and the audit trail they wrote
//! together verifies.

use crate::harness::*;
use breakglass_testkit::pg::Pg;
use std::path::Path;
use std::time::Duration;

/// `data/database.url` before `init`: the node's store is the shared database.
fn use_database(data: &Path, url: &str) {
    std::fs::create_dir_all(data).expect("data dir");
    std::fs::write(data.join("database.url"), url).expect("database.url");
}

/// A throw-away PostgreSQL with an empty `breakglass` database; its URL.
fn fresh_database() -> (Pg, String) {
    let pg = Pg::start();
    pg.sql("CREATE DATABASE breakglass");
    let admin = pg.admin_url();
    let url = format!(
        "{}/breakglass",
        admin.strip_suffix("/postgres").expect("admin URL")
    );
    (pg, url)
}

/// Two nodes on one fresh database, with the same key-encryption key (as an operator copies it).
fn two_nodes(policy: &str) -> (Pg, String, Server, Server) {
    two_nodes_with(policy, &[])
}

/// [`two_nodes`], node B's process started with `env_b`.
fn two_nodes_with(policy: &str, env_b: &[(&str, &str)]) -> (Pg, String, Server, Server) {
    let (pg, url) = fresh_database();
    let a = Server::start_prepared(policy, &[], &[], |d| use_database(d, &url));
    let kek = a.data_dir().join("keys").join("kek.key");
    let b = Server::start_prepared(policy, env_b, &[], |d| {
        use_database(d, &url);
        std::fs::create_dir_all(d.join("keys")).expect("keys dir");
        std::fs::copy(&kek, d.join("keys").join("kek.key")).expect("copy the KEK");
    });
    (pg, url, a, b)
}

/// The same person on another node: logs in there, same authenticator.
fn on_node(u: &User, node: &Server) -> User {
    let other = User::new(node, &u.name);
    *other.secret.lock().unwrap() = u.secret.lock().unwrap().clone();
    // Codes already spent are spent everywhere: carry on from the last one used.
    *other.last_step.lock().unwrap() = u.last_step();
    other.login();
    other
}

const REASON: &str = "orders table locked, checkout down";

#[test]
fn any_node_serves_any_request_and_a_code_spent_on_one_is_spent_on_all() {
    let (_pg, _url, a, b) = two_nodes(POLICY);
    let (status, body) = b.get("/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""store":"postgres""#), "{body}");

    // A user added through node A's data directory exists for node B.
    let bob = a.user("bob", &["oncall"]);
    let bob_b = on_node(&bob, &b);
    let code = bob.otp();
    let r = bob.run(&[
        "request", "prod-db", "--reason", REASON, "--ticket", "INC-1", "--for", "30m", "--otp",
        &code,
    ]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let id = r.json["id"].as_str().expect("grant id").to_string();
    // Node B sees the grant node A made.
    let st = bob_b.ok(&["status", &id]);
    assert_eq!(st["state"], "active", "{st}");

    // The code node A accepted is refused on node B.
    let replay = bob_b.run(&[
        "request", "prod-db", "--reason", REASON, "--ticket", "INC-2", "--for", "30m", "--otp",
        &code,
    ]);
    assert!(!replay.ok, "a spent code was accepted on the other node");
    assert!(
        replay.stderr.contains("already used") || replay.slug().contains("mfa"),
        "{}{}",
        replay.stdout,
        replay.stderr
    );
    // Revoked on B, it is revoked for A.
    bob_b.ok(&["revoke", &id, "--reason", "done on the other node"]);
    assert_eq!(bob.ok(&["status", &id])["state"], "revoked");
}

#[test]
fn a_grant_from_a_killed_node_is_ended_on_time_by_the_other_and_the_trail_verifies() {
    let (_pg, url, mut a, b) = two_nodes(POLICY);
    let bob = a.user("bob", &["oncall"]);
    let code = bob.otp();
    let r = bob.run(&[
        "request", "prod-db", "--reason", REASON, "--ticket", "INC-3", "--for", "3s", "--otp",
        &code,
    ]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let id = r.json["id"].as_str().expect("grant id").to_string();
    a.kill();
    let bob_b = on_node(&bob, &b);
    poll(
        "node B to expire node A's grant",
        Duration::from_secs(20),
        || {
            let st = bob_b.ok(&["status", &id]);
            (st["state"] == "expired").then_some(())
        },
    );
    // The trail both nodes wrote verifies, from either node's host.
    for dir in [a.data_dir(), b.data_dir()] {
        let out = std::process::Command::new(BIN)
            .args(["audit", "verify", "--data-dir"])
            .arg(&dir)
            .output()
            .expect("audit verify");
        assert!(
            out.status.success(),
            "audit verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The database holds the one chain: every seq once, in order.
    let (ok, gaps) = breakglass_testkit::pg::psql(
        &url,
        "SELECT COUNT(*) FROM (SELECT seq, seq - LAG(seq) OVER (ORDER BY seq) AS d FROM audit) t \
         WHERE d IS NOT NULL AND d <> 1",
    );
    assert!(ok, "{gaps}");
    assert_eq!(gaps.trim(), "0", "gaps in the chain");
}

/// libfaketime (Debian `libfaketime`): a process whose wall clock is off by a fixed amount.
fn faketime_lib() -> String {
    let found = std::fs::read_dir("/usr/lib")
        .expect("/usr/lib")
        .flatten()
        .map(|d| d.path().join("faketime").join("libfaketime.so.1"))
        .find(|p| p.exists());
    found
        .expect("libfaketime is installed (scripts/test.sh installs it)")
        .display()
        .to_string()
}

/// A node whose own clock is ten minutes slow (libfaketime) keeps the database's time: the
/// grant it makes ends at the real second, a real-time TOTP code is accepted there, and it ends
/// grants on time when it is the only node alive. Without this, the slow node would end every
/// grant ten minutes late.
#[test]
fn a_node_whose_clock_is_ten_minutes_slow_still_ends_grants_on_time() {
    let lib = faketime_lib();
    let env = [
        ("LD_PRELOAD", lib.as_str()),
        ("FAKETIME", "-10m"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let (_pg, _url, mut a, b) = two_nodes_with(POLICY, &env);
    let bob = a.user("bob", &["oncall"]);
    a.kill();
    // The node knows how far off it is.
    let (_, metrics) = b.get("/metrics");
    let offset: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("breakglass_clock_offset_milliseconds "))
        .expect("the clock offset gauge")
        .trim()
        .parse()
        .expect("a number");
    assert!(
        (590_000.0..=610_000.0).contains(&offset),
        "offset {offset} ms (the node runs 600 s slow)"
    );
    let bob_b = on_node(&bob, &b);
    let code = bob_b.otp();
    let before = std::time::SystemTime::now();
    let r = bob_b.run(&[
        "request", "prod-db", "--reason", REASON, "--ticket", "INC-7", "--for", "3s", "--otp",
        &code,
    ]);
    assert!(
        r.ok,
        "a real-time code on the slow node: {}{}",
        r.stdout, r.stderr
    );
    let id = r.json["id"].as_str().expect("grant id").to_string();
    let st = bob_b.ok(&["status", &id]);
    let expires = st["expires_at"].as_str().expect("expires_at").to_string();
    let expires = rfc3339_secs(&expires);
    let real = before
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        + 3.0;
    assert!(
        (expires - real).abs() < 5.0,
        "expires_at {expires} vs real deadline {real}: on the database's clock"
    );
    poll(
        "the slow node to end the grant on time",
        Duration::from_secs(20),
        || {
            let st = bob_b.ok(&["status", &id]);
            (st["state"] == "expired").then_some(())
        },
    );
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-12-02T21:30:00.123Z`).
fn rfc3339_secs(t: &str) -> f64 {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", t, "+%s.%N"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a time: {t}"))
}

/// Wrong passwords spread over two nodes count as one guesser's: after 3 on node A and 2 on
/// node B (the free allowance is 5 per account and address), node A throttles at once, where
/// on its own it would still check two more guesses.
#[test]
fn wrong_passwords_spread_over_nodes_count_as_one_guesser() {
    let (_pg, _url, a, b) = two_nodes(POLICY);
    a.user("bob", &["oncall"]);
    let wrong = br#"{"user":"bob","password":"guess"}"#;
    let login = |s: &Server| http("POST", &s.url, "/api/v1/login", Some(wrong), None);
    for s in [&a, &a, &a, &b, &b] {
        let (status, body) = login(s);
        assert_eq!(status, 401, "{body}");
    }
    // At most one more check (if this machine took over a second between tries), never two.
    let (first, body) = login(&a);
    let throttled = first == 429 || login(&a).0 == 429;
    assert!(
        throttled,
        "node A checked two more guesses after five on both nodes ({first}: {body})"
    );
}

#[test]
fn with_its_store_down_a_node_answers_503_with_a_retry_hint_and_changes_nothing() {
    let (pg, url) = fresh_database();
    let node = Server::start_prepared(POLICY, &[], &[], |d| use_database(d, &url));
    let bob = node.user("bob", &["oncall"]);
    pg.stop();
    let request = |ticket: &str| {
        let code = bob.otp();
        bob.run(&[
            "request", "prod-db", "--reason", REASON, "--ticket", ticket, "--for", "30m", "--otp",
            &code,
        ])
    };
    let r = request("INC-503");
    assert!(!r.ok, "a request was granted with the store down");
    assert_eq!(r.slug(), "store-unavailable", "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json["error"]["status"], 503, "{}", r.stdout);
    assert!(
        r.json["error"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("retry")),
        "{}",
        r.stdout
    );
    pg.restart();
    // The node reconnects by itself; the responder's retry goes through.
    poll(
        "the node to reach its store again",
        Duration::from_secs(20),
        || {
            let r = request("INC-200");
            if !r.ok {
                assert_eq!(r.slug(), "store-unavailable", "{}{}", r.stdout, r.stderr);
            }
            r.ok.then_some(())
        },
    );
    // The refused request left nothing: no grant, no event names its ticket.
    let (ok, n) = breakglass_testkit::pg::psql(
        &url,
        "SELECT COUNT(*) FROM audit WHERE position('INC-503' in convert_from(body, 'UTF8')) > 0",
    );
    assert!(ok, "{n}");
    assert_eq!(n.trim(), "0", "the refused request left an audit event");
}
