//! Hostile API input: a clear 4xx problem, no panic, nothing changed.

use crate::harness::*;
use serde_json::Value;

#[test]
fn hostile_input_gets_clear_errors() {
    let s = Server::start(POLICY);
    let bob = s.user("bob", &["oncall"]);
    let tok = token_of(&bob);
    let t = Some(tok.as_str());
    let long_id = format!("/api/v1/grants/{}", "x".repeat(5000));
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("POST", "/api/v1/grants", b"{not json".to_vec(), 400, "invalid-request"),
        ("POST", "/api/v1/grants", br#"{"resource":"prod-db","reason":"x","evil":1}"#.to_vec(), 400, "invalid-request"),
        ("POST", "/api/v1/grants", br#"{"resource":["a"],"reason":"x"}"#.to_vec(), 400, "invalid-request"),
        ("POST", "/api/v1/grants", br#"{"resource":"prod-db","reason":"orders table locked badly","ticket":"INC-1","duration":"-5m"}"#.to_vec(), 400, "invalid-request"),
        ("POST", "/api/v1/grants", format!(r#"{{"resource":"prod-db","reason":"{}"}}"#, "a".repeat(100_000)).into_bytes(), 413, "too-large"),
        ("POST", "/api/v1/grants", format!(r#"{{"resource":"prod-db","reason":"{}","ticket":"INC-1"}}"#, "a".repeat(5000)).into_bytes(), 400, "invalid-request"),
        ("POST", "/api/v1/grants/g-nope/approve", br#"{"otp":"123456"}"#.to_vec(), 404, "not-found"),
        ("POST", "/api/v1/grants/g-nope/extend", br#"{"by":"zz"}"#.to_vec(), 400, "invalid-request"),
        ("GET", long_id.as_str(), vec![], 404, "not-found"),
        ("POST", "/api/v1/login", br#"{"user":"bob","password":"wrong"}"#.to_vec(), 401, "invalid-credentials"),
        ("POST", "/api/v1/login", br#"{"user":"../../etc","password":"x"}"#.to_vec(), 401, "invalid-credentials"),
        ("GET", "/api/v1/nope", vec![], 404, "not-found"),
    ];
    for (method, path, body, status, slug) in &cases {
        let (code, text) = http(
            method,
            &s.url,
            path,
            (!body.is_empty()).then_some(body.as_slice()),
            t,
        );
        assert_eq!(code, *status, "{method} {path:.60}: {text:.300}");
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path:.60}: not JSON: {text:.300}"));
        assert!(
            v["type"].as_str().unwrap_or("").ends_with(slug),
            "{method} {path:.60}: {v}"
        );
        assert!(!v["detail"].as_str().unwrap_or("").is_empty());
    }
    // Without a token.
    let (code, text) = http("GET", &s.url, "/api/v1/grants", None, None);
    assert_eq!(code, 401, "{text}");
    let (code, _) = http("GET", &s.url, "/api/v1/grants", None, Some("bgs_forged"));
    assert_eq!(code, 401);
    // Nothing was granted, and the server is healthy.
    assert_eq!(bob.ok(&["status"]).as_array().unwrap().len(), 0);
    let (code, _) = s.get("/healthz");
    assert_eq!(code, 200);
    let (code, body) = s.get("/metrics");
    assert_eq!(code, 200);
    assert!(body.contains("breakglass_requests_refused_total"));
    let (code, body) = s.get("/api/v1/openapi.json");
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

/// HTTPS with rustls: the CLI breaks glass over TLS when it trusts the CA, and refuses an
/// unknown certificate.
#[test]
fn https_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_ca(dir.path());
    let mut s = Server::start_with(
        POLICY,
        &[],
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(s.url.starts_with("https://"), "{}", s.url);
    s.cli_env
        .push(("BREAKGLASS_CA_FILE".into(), ca.display().to_string()));
    let bob = s.user("bob", &["oncall"]);
    let g = bob.break_glass("prod-db", "INC-1");
    assert_eq!(g["state"], "active");
    // Without the CA the client refuses the server.
    let out = std::process::Command::new(BIN)
        .args(["--server", &s.url, "status"])
        .env("XDG_CONFIG_HOME", bob.config.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach") || err.contains("certificate"),
        "{err}"
    );
}
