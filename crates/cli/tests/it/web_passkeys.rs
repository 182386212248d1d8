//! Passkeys, recovery codes and the account page in a real browser (`web_passkeys.py`, Chrome's
//! virtual WebAuthn authenticator through Selenium) against the real server, served under
//! `--public-url http://localhost:PORT` (a passkey's RP ID is a host name). The attacks send real
//! assertions where they do not belong; raw HTTP checks the new POSTs refuse other origins.

use crate::harness::{BIN, PASSWORD, Server, User, http_raw};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

const REASON: &str = "bastion down <script>window.__pwned=1</script> & \"quoted\"";

fn policy() -> &'static str {
    r#"
admins: { groups: [security] }
resources:
  - { name: bastion, kind: exec, grant: ["/bin/echo", "ssh-token-7f3a"], revoke: ["/bin/true"] }
policies:
  - name: bastion-with-approval
    resources: [bastion]
    who: { groups: [oncall] }
    require: { mfa: true, ticket: "^INC-[0-9]+$" }
    approval: { mode: quorum, count: 1, from: [security], timeout: 10m, on_timeout: deny }
    duration: { default: 15m, max: 1h }
"#
}

fn drive(server: &Server, url: &str, users: &[&User]) -> Value {
    let _one = crate::web::BROWSER
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    assert!(
        std::path::Path::new("/usr/bin/chromedriver").exists(),
        "the browser tests need Debian chromium and chromium-driver (scripts/test.sh installs them)"
    );
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/web-screenshots");
    let mut cfg = json!({
        "url": url, "scenario": "passkeys", "js": true, "shots": shots, "reason": REASON,
        "users": {}, "db": server.data_dir().join("breakglass.db"),
    });
    for u in users {
        cfg["users"][&u.name] = json!({
            "password": PASSWORD,
            "secret": u.secret.lock().unwrap().clone(),
            "last_step": u.last_step(),
        });
    }
    // carol: added without an authenticator (she sets one up in the browser).
    cfg["users"]["carol"] = json!({"password": PASSWORD, "secret": "", "last_step": 0});
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/web_passkeys.py");
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
    let out = child.wait_with_output().expect("web_passkeys.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "web_passkeys.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).expect("web_passkeys.py prints JSON")
}

fn audit_kinds(server: &Server) -> String {
    let out = Command::new(BIN)
        .args(["audit", "export", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Register a passkey → sign in with it → break glass with it → a second user registers one and
/// approves with it on a 390×844 phone → revoke; recovery codes: made once (10, shown once),
/// sign in with one, the same one again refused; replayed, re-bound and cloned assertions refused.
#[test]
fn passkey_break_glass_approve_revoke_and_recovery_codes() {
    let mut server = Server::start(policy());
    let url = server.public_localhost();
    let alice = server.user("alice", &["oncall"]);
    let bob = server.user("bob", &["security"]);
    server.add_user("carol", &["oncall"]);
    let v = drive(&server, &url, &[&alice, &bob]);

    // carol set up TOTP from the QR code; then her password alone no longer signs her in.
    assert_eq!(v["carol_secret_len"], 32, "{v}");
    let without = v["carol_without_code"].as_str().unwrap();
    assert!(without.contains("Enter the 6-digit code"), "{without}");

    assert!(
        v["account"].as_str().unwrap().contains("alice phone"),
        "{v}"
    );
    let codes: Vec<&str> = v["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 10, "{v}");
    for c in &codes {
        // 24 base32 characters (120 bits) in groups of 4.
        assert_eq!(c.len(), 29, "{c}");
        assert_eq!(c.chars().filter(|x| x.is_ascii_alphanumeric()).count(), 24);
    }
    let mut unique = codes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10);
    assert_eq!(v["remaining_after_new"], "10");
    // Shown once: the account page later shows the count only.
    let again = v["account_again"].as_str().unwrap();
    assert!(!codes.iter().any(|c| again.contains(c)), "{again}");
    assert_eq!(v["remaining_after_use"], "9");

    // The grant was broken with alice's passkey, approved with bob's, revoked by alice.
    let gid = v["grant"].as_str().unwrap();
    let status = alice.ok(&["status", gid]);
    assert_eq!(status["state"], "revoked", "{status}");
    assert_eq!(status["approvals"][0]["by"], "bob", "{status}");

    // Attack: an assertion made for denying, offered to approve: refused.
    let wrong = &v["other_action"];
    assert!(wrong["status"].as_u64().unwrap() >= 400, "{wrong}");
    assert!(
        wrong["text"]
            .as_str()
            .unwrap()
            .contains("ceremony-for-another-action"),
        "{wrong}"
    );
    // Attack: the same login assertion twice: the second is refused.
    let replay = &v["replay"];
    assert_eq!(replay["first"], 200, "{replay}");
    assert!(replay["again"].as_u64().unwrap() >= 400, "{replay}");
    assert!(
        replay["again_text"]
            .as_str()
            .unwrap()
            .contains("no-such-ceremony"),
        "{replay}"
    );
    // Attack: alice's passkey cannot sign in bob.
    let as_bob = &v["as_bob"];
    assert!(as_bob["status"].as_u64().unwrap() >= 400, "{as_bob}");
    assert!(
        as_bob["text"]
            .as_str()
            .unwrap()
            .contains("ceremony-of-another-user"),
        "{as_bob}"
    );
    // Attack: a recovery code used twice.
    let reuse = v["reuse"].as_str().unwrap();
    assert!(reuse.contains("recovery-code-used-before"), "{reuse}");
    assert!(!reuse.contains("Signed in as"), "{reuse}");
    // Attack: a counter that went backwards (a cloned authenticator).
    let cloned = &v["cloned"];
    assert!(cloned["status"].as_u64().unwrap() >= 400, "{cloned}");
    assert!(
        cloned["text"]
            .as_str()
            .unwrap()
            .contains("counter-went-back"),
        "{cloned}"
    );

    let trail = audit_kinds(&server);
    for kind in [
        "mfa.passkey_added",
        "mfa.recovery_codes_regenerated",
        "mfa.recovery_code_used",
        "mfa.passkey_clone_suspected",
        "\"method\":\"passkey\"",
    ] {
        assert!(trail.contains(kind), "no {kind} in the audit trail");
    }
    // The requester's markup stayed text on every page (the grant's reason is stored as typed).
    assert_eq!(status["reason"], REASON);
}

/// The new state-changing endpoints refuse a request from another origin before doing anything.
#[test]
fn passkey_endpoints_refuse_other_origins() {
    let mut server = Server::start(policy());
    server.public_localhost();
    let alice = server.user("alice", &["oncall"]);
    let cookie = format!("breakglass={}", crate::harness::token_of(&alice));
    let base = server.url.clone();
    for path in [
        "/account/passkeys/start",
        "/account/passkeys/finish",
        "/account/passkeys/pk_x/remove",
        "/account/recovery",
        "/account/totp",
        "/webauthn/challenge",
        "/login/passkey/challenge",
        "/login/passkey",
    ] {
        let (status, body) = http_raw(
            "POST",
            &base,
            path,
            &[
                ("Origin", "http://evil.example".to_string()),
                ("Cookie", cookie.clone()),
                (
                    "Content-Type",
                    "application/x-www-form-urlencoded".to_string(),
                ),
            ],
            Some(b"user=alice&name=x&otp=123456&purpose=approve&subject=g"),
        );
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("not sent from this site"), "{path}: {body}");
    }
    let trail = audit_kinds(&server);
    assert!(
        !trail.contains("mfa.passkey"),
        "a refused request changed something"
    );
}
