//! Post-incident review and the incident report.

use crate::harness::*;
use serde_json::Value;
use std::time::Duration;

#[test]
fn review_opens_when_access_ends_and_report_is_verifiable() {
    let s = Server::start(POLICY);
    let bob = s.user("bob", &["oncall"]);
    let sam = s.user("sam", &["security"]);
    let eve = s.user("eve", &["oncall"]);
    let g = bob.break_glass("prod-db", "INC-4711");
    let id = g["id"].as_str().unwrap().to_string();
    sam.ok(&["revoke", &id, "--reason", "fixed"]);
    let reviews = sam.ok(&["review", "list"]);
    let r = reviews
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["grant"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(r["state"], "open");
    assert_eq!(r["by"], serde_json::json!(["security"]));

    // The requester may not review, nor may someone outside `by`.
    let otp = bob.otp();
    let e = bob.run(&[
        "review",
        &id,
        "--verdict",
        "appropriate",
        "--notes",
        "all good",
        "--otp",
        &otp,
    ]);
    assert_eq!(e.slug(), "forbidden", "{}", e.stdout);
    let otp = eve.otp();
    let e = eve.run(&[
        "review",
        &id,
        "--verdict",
        "appropriate",
        "--notes",
        "all good",
        "--otp",
        &otp,
    ]);
    assert_eq!(e.slug(), "forbidden", "{}", e.stdout);
    let e = sam.run(&[
        "review",
        &id,
        "--verdict",
        "fine",
        "--notes",
        "x",
        "--otp",
        "000000",
    ]);
    assert_eq!(e.slug(), "invalid-request", "{}", e.stdout);

    let otp = sam.otp();
    let v = sam.ok(&[
        "review",
        &id,
        "--verdict",
        "appropriate",
        "--notes",
        "checked the session log: only the lock was cleared",
        "--otp",
        &otp,
    ]);
    assert_eq!(v["state"], "done");
    // A correction is a new entry; the first stays.
    let otp = sam.otp();
    let v = sam.ok(&[
        "review",
        &id,
        "--verdict",
        "inappropriate",
        "--notes",
        "correction: a table was dropped",
        "--otp",
        &otp,
    ]);
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
    let st = bob.ok(&["status", &id]);
    assert_eq!(st["review"]["entries"][0]["verdict"], "appropriate");

    // The report, once a checkpoint covers the events (poll; checkpoints every 1 s in tests).
    let rep = poll("a covering checkpoint", Duration::from_secs(20), || {
        let r = sam.ok(&["report", &id, "--format", "json"]);
        r["checkpoint"].is_object().then_some(r)
    });
    let kinds: Vec<&str> = rep["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in [
        "mfa.verified",
        "grant.requested",
        "grant.activated",
        "grant.revoked",
        "review.opened",
        "review.recorded",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    // Each event verifies against the signed checkpoint with its inclusion proof.
    use breakglass_core::audit::{Checkpoint, merkle};
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let key =
        ed25519_dalek::VerifyingKey::from_public_key_pem(rep["public_key_pem"].as_str().unwrap())
            .unwrap();
    let origin = rep["origin"].as_str().unwrap();
    let cp = Checkpoint::open(rep["checkpoint"]["note"].as_str().unwrap(), &key, origin).unwrap();
    for e in rep["timeline"].as_array().unwrap() {
        let leaf = merkle::leaf_hash(e["body"].as_str().unwrap().as_bytes());
        let proof: Vec<[u8; 32]> = e["inclusion_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                hex::decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect();
        let seq = e["seq"].as_u64().unwrap();
        assert!(
            merkle::verify_inclusion(&leaf, seq - 1, cp.size, &proof, &cp.root),
            "event {seq}"
        );
    }
    let md = std::process::Command::new(BIN)
        .args(["--server", &s.url, "report", &id, "--format", "md"])
        .env("XDG_CONFIG_HOME", sam.config.path())
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(
        md.contains("# Incident report") && md.contains("INC-4711") && md.contains("inappropriate"),
        "{md}"
    );
    let v: Value = bob.ok(&["report", &id, "--format", "json"]);
    assert_eq!(v["grant"]["id"], id.as_str());
}

#[test]
fn overdue_reviews_escalate_once() {
    let s = Server::start(&POLICY.replace(
        "review: { within: 72h, by: [security] }",
        "review: { within: 1s, by: [security] }",
    ));
    let bob = s.user("bob", &["oncall"]);
    let sam = s.user("sam", &["security"]);
    let g = bob.break_glass("prod-db", "INC-1");
    let id = g["id"].as_str().unwrap().to_string();
    bob.ok(&["revoke", &id]);
    let r = poll("escalation", Duration::from_secs(30), || {
        let l = sam.ok(&["review", "list"]);
        l.as_array()
            .unwrap()
            .iter()
            .find(|r| r["grant"] == id.as_str() && r["escalated_at"].is_string())
            .cloned()
    });
    assert_eq!(r["overdue"], true);
    let out = std::process::Command::new(BIN)
        .args(["audit", "export", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("\"review.overdue\"").count(),
        1,
        "escalated exactly once"
    );
}

#[test]
fn period_summary_maps_evidence_to_controls() {
    let s = Server::start(POLICY);
    let bob = s.user("bob", &["oncall"]);
    let sam = s.user("sam", &["security"]);
    bob.break_glass("prod-db", "INC-1");
    let r = sam.ok(&["report", "--since", "2020-01-01", "--format", "json"]);
    assert_eq!(r["grants"], 1);
    assert_eq!(r["per_resource"]["prod-db"], 1);
    let controls: Vec<&str> = r["controls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["control"].as_str().unwrap())
        .collect();
    for c in ["AC-2(2)", "AC-6(9)", "AU-9(3)", "AU-10", "IA-2(1)", "IR-4"] {
        assert!(controls.contains(&c), "{c}");
    }
    assert_eq!(
        bob.run(&["report", "--since", "2020-01-01"]).slug(),
        "forbidden"
    );
    assert_eq!(
        sam.run(&["report", "--since", "last tuesday"]).slug(),
        "invalid-request"
    );
    let md = std::process::Command::new(BIN)
        .args([
            "--server",
            &s.url,
            "report",
            "--since",
            "2020-01-01",
            "--format",
            "md",
        ])
        .env("XDG_CONFIG_HOME", sam.config.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&md.stdout).contains("NIST SP 800-53"));
}

/// Requester text cannot forge report sections: a reason carrying a Markdown heading and a
/// table row renders as one escaped line inside its cell. Bidi and invisible characters are
/// refused at the API, naming the field and the code point, for requests and review notes.
#[test]
fn report_escapes_requester_text_and_invisible_characters_are_refused() {
    let s = Server::start(POLICY);
    let bob = s.user("bob", &["oncall"]);
    let sam = s.user("sam", &["security"]);

    let token = token_of(&bob);
    for (field, c) in [
        ("reason", '\u{202E}'),
        ("reason", '\u{200B}'),
        ("ticket", '\u{2066}'),
    ] {
        let mut body = serde_json::json!({
            "resource": "prod-db",
            "reason": "orders table locked, checkout down",
            "ticket": "INC-4711",
        });
        body[field] = Value::String(format!("INC-4711 {c}evil"));
        let (status, text) = http(
            "POST",
            &s.url,
            "/api/v1/grants",
            Some(body.to_string().as_bytes()),
            Some(&token),
        );
        assert_eq!(status, 400, "{text}");
        let want = format!(
            "{field} contains the invisible character U+{:04X}",
            u32::from(c)
        );
        assert!(text.contains(&want), "{want} not in {text}");
    }

    let forged = "orders table locked\n\n## Review\n| verdict | appropriate |";
    let otp = bob.otp();
    let g = bob.ok(&[
        "request", "prod-db", "--reason", forged, "--ticket", "INC-4711", "--otp", &otp,
    ]);
    let id = g["id"].as_str().unwrap().to_string();
    bob.ok(&["revoke", &id]);
    let otp = sam.otp();
    let e = sam.run(&[
        "review",
        &id,
        "--verdict",
        "appropriate",
        "--notes",
        "looks fine \u{202E}enif skool",
        "--otp",
        &otp,
    ]);
    assert_eq!(e.slug(), "invalid-request", "{}", e.stdout);
    assert!(
        e.stdout
            .contains("notes contains the invisible character U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        "{}",
        e.stdout
    );

    let md = std::process::Command::new(BIN)
        .args(["--server", &s.url, "report", &id, "--format", "md"])
        .env("XDG_CONFIG_HOME", sam.config.path())
        .output()
        .unwrap();
    assert!(md.status.success());
    let md = String::from_utf8_lossy(&md.stdout);
    let reviews = md.lines().filter(|l| l.starts_with("## Review")).count();
    assert_eq!(reviews, 1, "one Review heading, ours:\n{md}");
    assert!(
        !md.lines().any(|l| l.starts_with("| verdict")),
        "no forged table row:\n{md}"
    );
    assert!(
        md.contains(
            "| Reason | orders table locked␤␤\\#\\# Review␤\\| verdict \\| appropriate \\| |"
        ),
        "{md}"
    );
    let html = std::process::Command::new(BIN)
        .args(["--server", &s.url, "report", &id, "--format", "html"])
        .env("XDG_CONFIG_HOME", sam.config.path())
        .output()
        .unwrap();
    let html = String::from_utf8_lossy(&html.stdout);
    assert!(
        html.contains("orders table locked␤␤## Review␤| verdict | appropriate |"),
        "{html}"
    );
}
