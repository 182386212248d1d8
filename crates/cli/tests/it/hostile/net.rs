//! Connection-level attacks: half-sent requests, idle connections, connection floods, stalled
//! TLS handshakes; and who may read `/metrics`.

use super::*;
use std::time::Instant;

/// Whether the server closed `s` (EOF or reset) before `deadline`; any bytes it sends first
/// (a 408) are read and ignored.
fn closed_by(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true, // reset
        }
    }
}

fn healthz(url: &str) -> Option<u16> {
    request_from(LOCAL, url, "GET", "/healthz", &[], None).map(|r| r.status)
}

/// 300 connections that send half a request line: /healthz still answers while they are open,
/// and the server closes every one of them after --header-timeout. An idle keep-alive
/// connection is closed the same way.
#[test]
fn slow_and_idle_connections_are_closed() {
    let s = Server::start_with(POLICY, &[], &["--header-timeout", "1s"]);
    let to = addr_of(&s.url);
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut c = connect_from(LOCAL, to).expect("connect");
            c.write_all(b"POST /api/v1/login HT").unwrap();
            c
        })
        .collect();
    // An idle keep-alive connection after one complete request.
    let mut idle = connect_from(LOCAL, to).unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {to}\r\n\r\n").as_bytes())
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert_eq!(
        healthz(&s.url),
        Some(200),
        "healthz while 300 slow clients are open"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, c) in slow.iter_mut().enumerate() {
        assert!(closed_by(c, deadline), "slow connection {i} still open");
    }
    assert!(
        closed_by(&mut idle, deadline),
        "idle keep-alive connection still open"
    );
    assert_eq!(healthz(&s.url), Some(200));
}

/// Beyond --max-connections new connections are closed at once; once the flood is dropped
/// /healthz answers again and the server is still up.
#[test]
fn connection_limit_closes_excess_and_recovers() {
    let s = Server::start_with(
        POLICY,
        &[],
        &["--max-connections", "50", "--header-timeout", "60s"],
    );
    let to = addr_of(&s.url);
    let held: Vec<TcpStream> = (0..50)
        .map(|_| connect_from(LOCAL, to).expect("connect"))
        .collect();
    // Wait until the server has taken all 50 (a 51st is then closed unread).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut extra = loop {
        let mut c = connect_from(LOCAL, to).unwrap();
        let _ = c.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {to}\r\n\r\n").as_bytes());
        let mut buf = [0u8; 12];
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break c,
            Ok(_) => {
                // Served: the server had not yet accepted all 50; try again.
                assert!(Instant::now() < deadline, "the limit never applied");
            }
        }
    };
    assert!(closed_by(
        &mut extra,
        Instant::now() + Duration::from_secs(10)
    ));
    // More than the limit, repeatedly: each is closed, the server stays up.
    for _ in 0..100 {
        if let Ok(mut c) = connect_from(LOCAL, to) {
            assert!(closed_by(&mut c, Instant::now() + Duration::from_secs(10)));
        }
    }
    drop(held);
    poll(
        "healthz after the flood was dropped",
        Duration::from_secs(30),
        || (healthz(&s.url) == Some(200)).then_some(()),
    );
    assert!(
        s.log
            .lock()
            .unwrap()
            .matches("connection limit reached")
            .count()
            <= 2,
        "logged once per streak"
    );
}

/// A TLS client that connects and never sends a ClientHello is dropped after the timeout.
#[test]
fn stalled_tls_handshake_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (_ca, cert, key) = test_ca(dir.path());
    let s = Server::start_with(
        POLICY,
        &[],
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--header-timeout",
            "1s",
        ],
    );
    let to: SocketAddr = s.url.trim_start_matches("https://").parse().unwrap();
    let mut stalled: Vec<TcpStream> = (0..20).map(|_| connect_from(LOCAL, to).unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for c in stalled.iter_mut() {
        assert!(closed_by(c, deadline), "stalled TLS handshake still open");
    }
}

/// `/metrics` is public by default; with --metrics-token-file it needs the bearer token (401
/// problem+json otherwise), and with --metrics-listen it moves to its own listener.
#[test]
fn metrics_can_be_protected_and_moved() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics.token");
    let token = "0123456789abcdef0123456789abcdef";
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let s = Server::start_with(
        POLICY,
        &[],
        &[
            "--metrics-token-file",
            token_file.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let line = poll(
        "the metrics address in the log",
        Duration::from_secs(30),
        || {
            let log = s.log.lock().unwrap().clone();
            log.lines()
                .find_map(|l| l.strip_prefix("breakglass metrics on "))
                .map(String::from)
        },
    );
    let murl = line.trim_end_matches("/metrics").to_string();
    // Not on the main listener any more.
    let r = request_from(LOCAL, &s.url, "GET", "/metrics", &[], None).unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
    // No token, a wrong token: 401 problem+json that says what to send.
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong-token-of-some-length")],
    ] {
        let r = request_from(LOCAL, &murl, "GET", "/metrics", &headers, None).unwrap();
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.slug(), "unauthenticated");
        assert!(r.header("content-type").unwrap().contains("problem+json"));
        assert!(
            r.json()["hint"]
                .as_str()
                .unwrap()
                .contains("--metrics-token-file")
        );
        assert!(!r.body.contains("breakglass_"));
    }
    let auth = format!("Bearer {token}");
    let r = request_from(
        LOCAL,
        &murl,
        "GET",
        "/metrics",
        &[("Authorization", &auth)],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("breakglass_logins_throttled_total"));
    // The metrics listener serves nothing else.
    let r = request_from(LOCAL, &murl, "GET", "/healthz", &[], None).unwrap();
    assert_eq!(r.status, 404);

    // A token file that is too short is refused at start-up, saying how to make one.
    std::fs::write(&token_file, "short\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-token-file"])
        .arg(&token_file)
        .arg("--data-dir")
        .arg(s.data_dir())
        .arg("--policy")
        .arg(&s.policy_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("shorter than 16") && err.contains("openssl rand"),
        "{err}"
    );
}
