//! Hostile API input: a clear 4xx problem, no panic, nothing changed.

use crate::harness::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

mod login;
mod net;

/// A raw response: status, head (lower-cased header names), body.
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The problem slug (`busy`, `login-throttled`, …).
    pub fn slug(&self) -> String {
        self.json()["type"]
            .as_str()
            .and_then(|t| t.rsplit("/problems/").next())
            .unwrap_or("")
            .to_string()
    }
}

pub fn addr_of(base: &str) -> SocketAddr {
    base.trim_start_matches("http://")
        .parse()
        .expect("server address")
}

/// A TCP connection to the server from the loopback address `src` (Linux routes all of
/// 127.0.0.0/8 to lo), so tests can play several client addresses on one host.
pub fn connect_from(src: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(src, 0).into())?;
    sock.connect_timeout(&to.into(), Duration::from_secs(30))?;
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    Ok(s)
}

/// One request from `src` with `Connection: close`; `None` when the server closed without a
/// response.
pub fn request_from(
    src: IpAddr,
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<Resp> {
    let to = addr_of(base);
    let mut s = connect_from(src, to).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Resp {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

pub const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// The audit events of `kind`, read from the data directory (the server keeps running).
pub fn audit_events(s: &Server, kind: &str) -> Vec<Value> {
    let out = std::process::Command::new(BIN)
        .args(["audit", "export", "--format", "jsonl", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .expect("audit export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "event")
        .map(|v| v["event"].clone())
        .filter(|e| e["kind"] == kind)
        .collect()
}

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
