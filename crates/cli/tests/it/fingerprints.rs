//! Credential fingerprints in the audit trail are keyed (HMAC-SHA256 under a key the server
//! derives from its KEK): whoever reads the audit cannot test guesses of a weak credential.

use crate::harness::*;
use sha2::{Digest, Sha256};

const POLICY: &str = r#"
admins: { groups: [security] }
resources:
  - name: legacy
    kind: exec
    grant: ["/bin/echo", "hunter2"]
    revoke: ["/bin/true"]
policies:
  - name: legacy-emergency
    resources: [legacy]
    who: { groups: [oncall] }
    require: { mfa: false }
    approval: { mode: auto }
    duration: { default: 30m, max: 2h }
"#;

/// Every `hmac-sha256:…` fingerprint in the server's audit export, and the export itself.
fn fingerprints(s: &Server) -> (Vec<String>, String) {
    let sam = User::new(s, "sam");
    sam.login();
    let text = sam.run(&["audit", "export"]).stdout;
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("hmac-sha256:") {
        let tail = &rest[i + "hmac-sha256:".len()..];
        let hex: String = tail.chars().take_while(char::is_ascii_hexdigit).collect();
        out.push(hex);
        rest = tail;
    }
    (out, text)
}

fn grant_twice(s: &Server) {
    s.add_user("sam", &["security"]);
    let alice = s.user("alice", &["oncall"]);
    for _ in 0..2 {
        let g = alice.ok(&[
            "request",
            "legacy",
            "--reason",
            "legacy admin console needed",
        ]);
        assert_eq!(g["credential"], "hunter2", "{g}");
        let id = g["id"].as_str().unwrap();
        alice.ok(&["revoke", id, "--reason", "done"]);
    }
}

#[test]
fn exec_credential_fingerprints_are_keyed_and_stable_within_a_server() {
    let s1 = Server::start(POLICY);
    grant_twice(&s1);
    let (f1, text) = fingerprints(&s1);
    assert!(
        f1.len() >= 2,
        "no keyed fingerprint in the audit trail:\n{text}"
    );
    assert!(f1.iter().all(|f| f.len() == 32 && *f == f1[0]), "{f1:?}");
    // Not the plain SHA-256 of the credential, nor a prefix of it (the old format).
    for plain in [&b"hunter2"[..], b"hunter2\n"] {
        let h = hex::encode(Sha256::digest(plain));
        assert!(!h.contains(&f1[0]) && !text.contains(&h[..16]), "{h}");
    }
    assert!(
        !text.contains("\"sha256:"),
        "an unkeyed fingerprint is still audited"
    );
    // Another installation (another KEK): another fingerprint for the same credential.
    let s2 = Server::start(POLICY);
    grant_twice(&s2);
    let (f2, _) = fingerprints(&s2);
    assert!(!f2.is_empty() && f2[0] != f1[0], "{f1:?} {f2:?}");
}
