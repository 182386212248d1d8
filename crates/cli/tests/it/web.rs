//! The web UI in a real browser: Debian's chromium driven by Selenium (`web_drive.py`) against
//! the real server binary, on a 390×844 phone viewport (screenshots at phone and desktop width
//! in `target/web-screenshots/`), with and without JavaScript; plus raw-HTTP checks of the
//! security headers and of cross-origin form posts.

use crate::harness::{PASSWORD, Server, User, http_raw, test_ca, token_of};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// One browser at a time (two cores).
pub(crate) static BROWSER: Mutex<()> = Mutex::new(());

/// The requester's reason: markup that must stay text.
pub(crate) const REASON: &str =
    "orders table locked <script>window.__pwned=1</script><b>bold</b> & \"quoted\"";

pub(crate) fn policy() -> String {
    r#"
admins: { groups: [security] }
resources:
  - name: prod-db
    kind: exec
    grant: ["/bin/echo", "{\"psql\": \"psql 'postgresql://bg_web:s3cret@db.internal/prod'\"}"]
    revoke: ["/bin/true"]
  - { name: bastion, kind: exec, grant: ["/bin/echo", "ssh-token-7f3a"], revoke: ["/bin/true"] }
  - { name: hidden, kind: exec, grant: ["/bin/true"], revoke: ["/bin/true"] }
  - { name: vault-root, kind: secret }
  - { name: jump, kind: ssh, principals: [alice], host: 127.0.0.1, port: 2222 }
policies:
  - name: dba-emergency
    resources: [prod-db]
    who: { groups: [oncall] }
    require: { mfa: true, ticket: "^INC-[0-9]+$", min_reason: 15 }
    approval: { mode: auto }
    duration: { default: 30m, max: 2h }
  - name: bastion-with-approval
    resources: [bastion]
    who: { groups: [oncall] }
    require: { mfa: true, ticket: "^INC-[0-9]+$" }
    approval: { mode: quorum, count: 1, from: [security], timeout: 10m, on_timeout: deny }
    duration: { default: 15m, max: 1h }
  - name: root-secret
    resources: [vault-root]
    who: { groups: [oncall] }
    require: { mfa: true }
    approval: { mode: auto }
    duration: { default: 15m, max: 1h }
  - name: jump-host
    resources: [jump]
    who: { groups: [oncall] }
    require: { mfa: true }
    approval: { mode: auto }
    duration: { default: 15m, max: 1h }
  - name: only-dbas
    resources: [hidden]
    who: { groups: [dba] }
    approval: { mode: auto }
    duration: { default: 15m, max: 1h }
"#
    .to_string()
}

fn shots_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/web-screenshots").to_string()
}

/// Runs a scenario of `web_drive.py` as `users`; returns what it saw.
pub(crate) fn drive(
    server: &Server,
    scenario: &str,
    js: bool,
    users: &[&User],
    extra: Value,
) -> Value {
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        std::path::Path::new("/usr/bin/chromedriver").exists(),
        "the browser tests need Debian chromium and chromium-driver (scripts/test.sh installs them)"
    );
    let mut cfg = json!({
        "url": server.url, "scenario": scenario, "js": js, "shots": shots_dir(),
        "reason": REASON, "users": {},
    });
    for u in users {
        cfg["users"][&u.name] = json!({
            "password": PASSWORD,
            "secret": u.secret.lock().unwrap().clone(),
            "last_step": u.last_step(),
        });
    }
    if let (Value::Object(c), Value::Object(e)) = (&mut cfg, extra) {
        c.extend(e);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/web_drive.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(cfg.to_string().as_bytes());
    }
    let out = child.wait_with_output().expect("web_drive.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "web_drive.py {scenario} (js: {js}) failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).expect("web_drive.py prints JSON")
}

fn grant_state(u: &User, id: &str) -> String {
    u.ok(&["status", id])["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Sign in with password + TOTP, break glass on a phone (a refusal first), see the grant with
/// its credential once, revoke it, sign out (the session is gone).
#[test]
fn phone_login_break_glass_grant_revoke_logout() {
    let server = Server::start(&policy());
    let alice = server.user("alice", &["oncall"]);
    let v = drive(&server, "glass", true, &[&alice], json!({}));
    // Only the resources alice's policies allow are offered.
    let form = v["request_page"].as_str().unwrap_or("");
    assert!(form.contains("prod-db") && form.contains("bastion"));
    assert!(!form.contains("only-dbas"), "{form}");
    let refusal = v["refusal"].as_str().unwrap_or("");
    assert!(refusal.contains("ticket"), "refusal: {refusal}");
    let page = v["page"].as_str().unwrap_or("");
    // The credential, shown once, and the exact expiry in UTC.
    assert!(
        page.contains("psql 'postgresql://bg_web:s3cret@db.internal/prod'"),
        "{page}"
    );
    let expires = v["expires"].as_str().unwrap_or("");
    assert!(
        expires.ends_with(" UTC") && expires.len() == "2026-12-02 03:04:05 UTC".len(),
        "expiry: {expires}"
    );
    // Markup typed by the requester is text: shown as typed, never elements or a script.
    assert!(page.contains(REASON), "reason not shown as typed:\n{page}");
    assert_eq!(v["bold_elements_in_reason"], 0);
    assert_eq!(v["scripts"], 0);
    assert_eq!(v["pwned"], false);
    // The live countdown: 44 min something, ticking.
    let (l1, l2) = (
        v["left_1"].as_str().unwrap_or(""),
        v["left_2"].as_str().unwrap_or(""),
    );
    assert!(
        l1.starts_with("(44 min ") && l1.ends_with(" s left)"),
        "{l1}"
    );
    assert!(l2.ends_with(" s left)") && l1 != l2, "{l1} → {l2}");
    assert!(v["home"].as_str().unwrap_or("").contains("prod-db"));
    // The grant page again: no credential.
    let again = v["page_again"].as_str().unwrap_or("");
    assert!(!again.contains("s3cret") && !again.contains("Shown this once"));
    // Revoked with the reason given.
    let id = v["grant"].as_str().unwrap_or("");
    assert_eq!(grant_state(&alice, id), "revoked");
    let g = alice.ok(&["status", id]);
    assert_eq!(g["end_reason"], "done, fixed");
    assert_eq!(g["duration_secs"], 45 * 60);
    assert_eq!(g["extensions"], 1, "{g}");
    assert_ne!(v["expires_after_extend"], v["expires"]);
    // A cross-site form post from a real browser: refused, nothing granted.
    let refused = v["cross_site_page"].as_str().unwrap_or("");
    assert!(refused.contains("Nothing was changed"), "{refused}");
    let all = alice.ok(&["status", "--all"]);
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    // Signed out: the browser is sent to the login page, the session token is dead.
    assert!(
        v["after_logout_url"]
            .as_str()
            .unwrap_or("")
            .ends_with("/login")
    );
    let cookie = &v["cookie"];
    assert_eq!(cookie["name"], "breakglass");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Lax");
    let token = cookie["value"].as_str().unwrap_or("");
    let (status, _) = http_raw(
        "GET",
        &server.url,
        "/api/v1/me",
        &[("Authorization", format!("Bearer {token}"))],
        None,
    );
    assert_eq!(status, 401, "the session survived sign-out");
}

fn approve_flow(js: bool) {
    let server = Server::start(&policy());
    let alice = server.user("alice", &["oncall"]);
    let bob = server.user("bob", &["security"]);
    let v = drive(&server, "approve", js, &[&alice, &bob], json!({}));
    assert_eq!(v["page_script_ran"], js, "JavaScript on: {js}?");
    // The approver's queue shows the requester's markup as text.
    assert!(v["queue"].as_str().unwrap_or("").contains(REASON));
    let id = v["grant"].as_str().unwrap_or("");
    assert_eq!(grant_state(&alice, id), "active");
    let g = alice.ok(&["status", id]);
    assert_eq!(g["approvals"][0]["by"], "bob");
    assert!(
        v["pickup"]
            .as_str()
            .unwrap_or("")
            .contains("ssh-token-7f3a")
    );
    let after = v["after_pickup"].as_str().unwrap_or("");
    assert!(!after.contains("ssh-token-7f3a") && !after.contains("Show my credential"));
}

/// A second user approves a quorum request in the browser with a fresh code; the requester
/// then picks up the credential, once.
#[test]
fn second_user_approves_a_quorum_request() {
    approve_flow(true);
}

/// The same request and approval in a browser with JavaScript disabled.
#[test]
fn request_and_approve_without_javascript() {
    approve_flow(false);
}

/// A requester who is also an approver cannot approve their own request: the page says why.
/// Another approver then denies it with a reason and a fresh code.
#[test]
fn self_approval_is_refused_with_the_reason_then_denied() {
    let server = Server::start(&policy());
    let carol = server.user("carol", &["oncall", "security"]);
    let bob = server.user("bob", &["security"]);
    let deny_reason = "not an incident <i>x</i>";
    let v = drive(
        &server,
        "self",
        true,
        &[&carol, &bob],
        json!({"deny_reason": deny_reason}),
    );
    let refusal = v["refusal"].as_str().unwrap_or("").to_lowercase();
    assert!(
        refusal.contains("you requested this grant, so you cannot approve it"),
        "refusal: {refusal}"
    );
    // Then another approver denies it (with a fresh code): the reason is shown as typed.
    let id = v["grant"].as_str().unwrap_or("");
    let g = carol.ok(&["status", id]);
    assert_eq!(g["state"], "denied", "{g}");
    assert_eq!(g["ended_by"], "bob");
    assert_eq!(g["end_reason"], deny_reason);
    assert!(
        v["denied_page"]
            .as_str()
            .unwrap_or("")
            .contains(deny_reason)
    );
    assert_eq!(v["italic_elements"], 0);
}

fn post(
    server: &Server,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut h = vec![
        ("Cookie", format!("breakglass={cookie}")),
        (
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        ),
    ];
    if let Some(o) = origin {
        h.push(("Origin", o.to_string()));
    }
    http_raw("POST", &server.url, path, &h, Some(body.as_bytes()))
}

/// Form posts from another site are refused with a clear page and change nothing; so are posts
/// without the session's form token, and posts that say nothing of where they come from.
#[test]
fn cross_origin_posts_are_refused_and_change_nothing() {
    let server = Server::start(&policy());
    let alice = server.user("alice", &["oncall"]);
    let bob = server.user("bob", &["security"]);
    let token = token_of(&alice);
    let own = server.url.clone();
    let body = format!(
        "csrf=x&resource=prod-db&reason=orders+table+locked+hard&ticket=INC-1&otp={}",
        alice.otp()
    );
    let (status, page) = post(
        &server,
        "/request",
        &token,
        Some("https://evil.example"),
        &body,
    );
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("not sent from this site") && page.contains("https://evil.example"));
    assert!(page.contains("Nothing was changed"));
    // Sec-Fetch-Site: cross-site without Origin; and neither header.
    let (status, _) = http_raw(
        "POST",
        &own,
        "/request",
        &[
            ("Cookie", format!("breakglass={token}")),
            ("Sec-Fetch-Site", "cross-site".to_string()),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(status, 403);
    let (status, _) = post(&server, "/request", &token, None, &body);
    assert_eq!(status, 403);
    // Same origin but not this session's form token.
    let (status, page) = post(&server, "/request", &token, Some(&own), &body);
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("does not belong to your current session"));
    // Login from another site (login CSRF) and an approval from another site.
    let (status, _) = post(
        &server,
        "/login",
        "",
        Some("https://evil.example"),
        "user=alice&password=x&otp=1",
    );
    assert_eq!(status, 403);
    let otp = alice.otp();
    let pending = alice.ok(&[
        "request",
        "bastion",
        "--reason",
        "bastion down",
        "--ticket",
        "INC-9",
        "--otp",
        &otp,
    ])["id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let (status, _) = post(
        &server,
        &format!("/grants/{pending}/approve"),
        &token_of(&bob),
        Some("https://evil.example"),
        &format!("csrf=x&otp={}", bob.otp()),
    );
    assert_eq!(status, 403);
    assert_eq!(grant_state(&alice, &pending), "pending");
    // Nothing was granted.
    let list = alice.ok(&["status", "--all"]);
    let active = list
        .as_array()
        .map(|l| l.iter().filter(|g| g["state"] == "active").count())
        .unwrap_or(99);
    assert_eq!(active, 0, "{list}");
}

/// Every UI page carries the security headers; the style sheet is served by the binary.
#[test]
fn pages_carry_the_security_headers() {
    let server = Server::start(&policy());
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
    let _ = s.write_all(
        format!("GET /login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let mut resp = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut resp);
    let head = resp.split("\r\n\r\n").next().unwrap_or("").to_lowercase();
    for h in [
        "content-security-policy: default-src 'self'; script-src 'self'; style-src 'self'",
        "frame-ancestors 'none'",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
        "cache-control: no-store",
    ] {
        assert!(head.contains(h), "missing {h}:\n{head}");
    }
    assert!(!head.contains("unsafe-inline") && !head.contains("unsafe-eval"));
    assert!(
        !head.contains("strict-transport-security"),
        "HSTS over plain HTTP"
    );
    let (status, css) = server.get("/static/app.css");
    assert_eq!(status, 200);
    assert!(css.contains("min-height:44px"));
    // Not signed in: sent to the login page.
    let (status, _) = server.get("/request");
    assert_eq!(status, 303);
}

/// Over HTTPS the session cookie is `__Host-breakglass` (Secure, Path=/, no Domain), pages carry
/// HSTS, and a browser signs in with it.
#[test]
fn over_tls_host_cookie_and_hsts() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_ca(dir.path());
    let mut server = Server::start_with(
        &policy(),
        &[],
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    server
        .cli_env
        .push(("BREAKGLASS_CA_FILE".into(), ca.display().to_string()));
    let alice = server.user("alice", &["oncall"]);
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-i", "--cacert"])
            .arg(&ca)
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let login = format!("{}/login", server.url);
    let page = curl(&[&login]);
    assert!(
        page.to_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{page}"
    );
    let form = format!(
        "user=alice&password={}&otp={}",
        PASSWORD.replace(' ', "+"),
        alice.otp()
    );
    let origin = format!("Origin: {}", server.url);
    let resp = curl(&["-H", &origin, "--data", &form, &login]);
    let cookie = resp
        .lines()
        .find(|l| l.to_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie:\n{resp}"));
    assert!(cookie.contains("__Host-breakglass=bgs_"), "{cookie}");
    for attr in ["Path=/", "HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    // The same from another site: refused.
    let evil = curl(&[
        "-H",
        "Origin: https://evil.example",
        "--data",
        &form,
        &login,
    ]);
    assert!(evil.starts_with("HTTP/1.1 403"), "{evil}");
    // A real browser keeps and sends the prefixed cookie.
    let v = drive(
        &server,
        "tls_login",
        true,
        &[&alice],
        json!({"tls_test_ca": true}),
    );
    assert_eq!(v["cookie"]["name"], "__Host-breakglass");
    assert_eq!(v["cookie"]["secure"], true);
    assert!(v["url"].as_str().unwrap_or("").ends_with("/request"));
}

/// A sealed secret is released to the holder of an active grant on the grant page (audited).
#[test]
fn sealed_secret_released_on_the_grant_page() {
    let server = Server::start(&policy());
    let bob = server.user("bob", &["security"]);
    let put = bob.run_stdin(&["secret", "put", "vault-root"], Some("hunter2-root-pw"));
    assert!(put.ok, "{}{}", put.stdout, put.stderr);
    let alice = server.user("alice", &["oncall"]);
    let v = drive(&server, "secret", true, &[&alice], json!({}));
    let page = v["page"].as_str().unwrap_or("");
    assert!(page.contains("hunter2-root-pw"), "{page}");
    assert!(page.contains("flagged for rotation"), "{page}");
    let before = v["before"].as_str().unwrap_or("");
    assert!(!before.contains("hunter2-root-pw"), "{before}");
}

/// An SSH resource asks for the public key in the form; the certificate comes back once, with
/// how to connect.
#[test]
fn ssh_certificate_for_a_pasted_public_key() {
    let server = Server::start(&policy());
    let alice = server.user("alice", &["oncall"]);
    let key = server.dir.path().join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let v = drive(
        &server,
        "ssh",
        true,
        &[&alice],
        json!({"ssh_key": public.trim()}),
    );
    let refusal = v["refusal"].as_str().unwrap_or("");
    assert!(refusal.contains("jump is an SSH resource"), "{refusal}");
    let page = v["page"].as_str().unwrap_or("");
    assert!(page.contains("ssh-ed25519-cert-v01@openssh.com "), "{page}");
    assert!(page.contains("ssh -p 2222 alice@127.0.0.1"), "{page}");
}

/// The security dashboard on a phone: an active grant with its time left and the requester's
/// markup inert; one tap (with a reason) revokes it and the access is gone; a responder who is
/// not an admin is told why the page is not for them.
#[test]
fn the_dashboard_shows_live_access_and_revokes_it_in_one_tap() {
    let server = Server::start(&policy());
    let alice = server.user("alice", &["oncall"]);
    let sam = server.user("sam", &["security"]);
    let v = drive(&server, "dashboard", true, &[&alice, &sam], json!({}));
    let refused = v["refused"].as_str().unwrap_or("");
    assert!(
        refused.contains("not among the policy's admins"),
        "{refused}"
    );
    let page = v["page"].as_str().unwrap_or("");
    assert!(page.contains("Active grants 1"), "{page}");
    assert!(page.contains("prod-db") && page.contains("min"), "{page}");
    assert!(page.contains(REASON), "reason not shown as typed:\n{page}");
    assert_eq!(v["bold_elements_in_reason"], 0);
    assert_eq!(v["pwned"], false);
    assert!(page.contains("Every alert reached its sink"), "{page}");
    assert!(page.contains("Policy in force"), "{page}");
    let id = v["grant"].as_str().unwrap_or("");
    let g = alice.ok(&["status", id]);
    assert_eq!(g["state"], "revoked", "{g}");
    assert_eq!(g["ended_by"], "sam");
    assert_eq!(g["end_reason"], "not needed any more, checked with alice");
    let after = v["after"].as_str().unwrap_or("");
    assert!(after.contains("Active grants 0"), "{after}");
    assert!(after.contains("No one holds access right now"), "{after}");
}

/// A review in the browser: the requester is told why they may not review their own access; a
/// reviewer reads the incident report inline (the requester's markup inert), downloads it, and
/// records a verdict with a fresh code; the verdict is what the CLI sees.
#[test]
fn a_reviewer_reads_the_report_and_records_a_verdict_in_the_browser() {
    let policy = policy().replace(
        "  - name: dba-emergency\n    resources: [prod-db]\n    who: { groups: [oncall] }\n    require: { mfa: true, ticket: \"^INC-[0-9]+$\", min_reason: 15 }\n    approval: { mode: auto }\n    duration: { default: 30m, max: 2h }\n",
        "  - name: dba-emergency\n    resources: [prod-db]\n    who: { groups: [oncall] }\n    require: { mfa: true, ticket: \"^INC-[0-9]+$\", min_reason: 15 }\n    approval: { mode: auto }\n    duration: { default: 30m, max: 2h }\n    review: { within: 72h, by: [security] }\n",
    );
    assert!(policy.contains("review: {"), "the policy fixture changed");
    let server = Server::start(&policy);
    let alice = server.user("alice", &["oncall"]);
    let sam = server.user("sam", &["security"]);
    let otp = alice.otp();
    let g = alice.ok(&[
        "request", "prod-db", "--reason", REASON, "--ticket", "INC-9", "--otp", &otp,
    ]);
    let id = g["id"].as_str().unwrap().to_string();
    alice.ok(&["revoke", &id, "--reason", "fixed"]);
    // Downloads need the session: without one, the login page.
    let (status, _) = http_raw(
        "GET",
        &server.url,
        &format!("/reviews/{id}/report.md"),
        &[],
        None,
    );
    assert_eq!(
        status, 303,
        "a download without a session goes to the login page"
    );
    let v = drive(
        &server,
        "review",
        true,
        &[&alice, &sam],
        json!({"grant": id}),
    );
    let own = v["self_review"].as_str().unwrap_or("");
    assert!(
        own.contains("requested grant") && own.contains("cannot review"),
        "{own}"
    );
    let page = v["page"].as_str().unwrap_or("");
    assert!(page.contains("Incident report: grant"), "{page}");
    assert!(page.contains("<script>window.__pwned=1</script>"), "{page}");
    assert_eq!(v["pwned"], false);
    assert_eq!(v["bold_elements"], 0);
    let after = v["after"].as_str().unwrap_or("");
    assert!(
        after.contains("appropriate") && after.contains("sam"),
        "{after}"
    );
    let r = sam.ok(&["review", "list", "--all"]);
    let mine = r
        .as_array()
        .and_then(|l| l.iter().find(|x| x["grant"] == id.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(mine["state"], "done", "{mine}");
    assert_eq!(mine["entries"][0]["verdict"], "appropriate");
    assert_eq!(
        mine["entries"][0]["notes"],
        "checked the session log <i>and</i> the ticket"
    );
}

/// One authenticator code, eight review forms sent with it at the same moment from the
/// reviewer's own session: one verdict is recorded, the other seven are refused (the code is
/// single use in the store, whichever form gets there first).
#[test]
fn one_code_records_one_verdict_however_many_review_forms_carry_it() {
    let policy = policy().replace(
        "    duration: { default: 30m, max: 2h }\n  - name: bastion-with-approval",
        "    duration: { default: 30m, max: 2h }\n    review: { within: 72h, by: [security] }\n  - name: bastion-with-approval",
    );
    assert!(policy.contains("review: {"), "the policy fixture changed");
    let server = Server::start(&policy);
    let alice = server.user("alice", &["oncall"]);
    let sam = server.user("sam", &["security"]);
    let otp = alice.otp();
    let g = alice.ok(&[
        "request", "prod-db", "--reason", REASON, "--ticket", "INC-9", "--otp", &otp,
    ]);
    let id = g["id"].as_str().unwrap().to_string();
    alice.ok(&["revoke", &id, "--reason", "fixed"]);
    let cookie = format!("breakglass={}", token_of(&sam));
    let (status, page) = http_raw(
        "GET",
        &server.url,
        &format!("/reviews/{id}"),
        &[("Cookie", cookie.clone())],
        None,
    );
    assert_eq!(status, 200, "{page}");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the review form's token")
        .to_string();
    let code = sam.otp();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let origin = server.url.clone();
    let sent: Vec<_> = (0..8)
        .map(|i| {
            let (b, url, path) = (
                barrier.clone(),
                server.url.clone(),
                format!("/reviews/{id}"),
            );
            let headers = [
                ("Cookie", cookie.clone()),
                ("Origin", origin.clone()),
                (
                    "Content-Type",
                    "application/x-www-form-urlencoded".to_string(),
                ),
            ];
            let body = format!("csrf={csrf}&verdict=appropriate&notes=form+{i}&otp={code}");
            std::thread::spawn(move || {
                b.wait();
                http_raw("POST", &url, &path, &headers, Some(body.as_bytes())).0
            })
        })
        .collect();
    let mut codes: Vec<u16> = sent.into_iter().map(|h| h.join().unwrap()).collect();
    codes.sort();
    assert_eq!(codes.iter().filter(|c| **c == 303).count(), 1, "{codes:?}");
    assert!(
        codes.iter().all(|c| *c == 303 || (400..500).contains(c)),
        "{codes:?}"
    );
    let r = sam.ok(&["review", "list", "--all"]);
    let mine = r
        .as_array()
        .and_then(|l| l.iter().find(|x| x["grant"] == id.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(mine["entries"].as_array().map(Vec::len), Some(1), "{mine}");
}
