//! Alerts against a real HTTP receiver on loopback that checks the HMAC signature with
//! `openssl` (not our code), refuses stale timestamps, and can fail or stall deliveries.

use crate::harness::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "whsec-test-0123456789";

#[derive(Default)]
struct Receiver {
    /// Answer 500 to this many more deliveries.
    fail_next: AtomicU32,
    /// Never answer (hold the connection) while set.
    stall: Mutex<bool>,
    /// Every verified delivery: (dedup key, body).
    seen: Mutex<Vec<(String, String)>>,
    bad_signatures: AtomicU32,
}

fn hmac_openssl(data: &str) -> String {
    openssl_hmac_sha256(SECRET, data)
}

fn start_receiver() -> (String, Arc<Receiver>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let r = Arc::new(Receiver::default());
    let rr = r.clone();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            let r = rr.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut headers = std::collections::HashMap::new();
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap_or(0);
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap_or(());
                let body = String::from_utf8_lossy(&body).to_string();
                if !request_line.contains(" /hook ") {
                    // Slack and PagerDuty endpoints: no signature, record what arrived.
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("")
                        .to_string();
                    r.seen.lock().unwrap().push((path, body));
                    let _ = s.write_all(
                        b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    return;
                }
                let ts = headers
                    .get("x-breakglass-timestamp")
                    .cloned()
                    .unwrap_or_default();
                let sig = headers
                    .get("x-breakglass-signature")
                    .cloned()
                    .unwrap_or_default();
                let fresh = ts
                    .parse::<i64>()
                    .map(|t| (unix_now() - t).abs() < 300)
                    .unwrap_or(false);
                let ok = fresh && sig == format!("v1={}", hmac_openssl(&format!("{ts}.{body}")));
                if !ok {
                    r.bad_signatures.fetch_add(1, Ordering::SeqCst);
                    let _ = s.write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    return;
                }
                let key = headers
                    .get("x-breakglass-dedup-key")
                    .cloned()
                    .unwrap_or_default();
                if *r.stall.lock().unwrap() {
                    r.seen.lock().unwrap().push((key, body));
                    std::thread::sleep(Duration::from_secs(30)); // the sender dies meanwhile
                    return;
                }
                if r.fail_next.load(Ordering::SeqCst) > 0 {
                    r.fail_next.fetch_sub(1, Ordering::SeqCst);
                    let _ = s.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    return;
                }
                r.seen.lock().unwrap().push((key, body));
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            });
        }
    });
    (url, r)
}

fn policy(url: &str) -> String {
    format!(
        "{POLICY}notify: [sec-hook]\nsinks:\n  - name: sec-hook\n    kind: webhook\n    url: {url}\n    secret_env: HOOK_SECRET\n    timeout: 2s\n"
    )
}

fn keys(r: &Receiver) -> Vec<String> {
    r.seen
        .lock()
        .unwrap()
        .iter()
        .map(|(k, _)| k.clone())
        .collect()
}

#[test]
fn alerts_are_signed_retried_and_delivered() {
    let (url, rx) = start_receiver();
    rx.fail_next.store(3, Ordering::SeqCst);
    let s = Server::start_with(
        &policy(&url),
        &[("HOOK_SECRET", SECRET)],
        &["--alert-backoff", "1s"],
    );
    let bob = s.user("bob", &["oncall"]);
    let sam = s.user("sam", &["security"]);
    let g = bob.break_glass("prod-db", "INC-4711");
    poll(
        "the alert delivered after failures",
        Duration::from_secs(60),
        || {
            let k = keys(&rx);
            k.iter()
                .any(|x| x.contains("grant.activated"))
                .then_some(())
        },
    );
    let seen = rx.seen.lock().unwrap().clone();
    let (_, body) = seen
        .iter()
        .find(|(k, _)| k.contains("grant.activated"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    // One alert for breaking glass: the request, its anomaly flag and the activation in it.
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["grant.requested", "anomaly.flagged", "grant.activated"],
        "{v}"
    );
    assert_eq!(v["anomalies"][0]["code"], "first-grant", "{v}");
    assert!(
        !keys(&rx)
            .iter()
            .any(|k| k.contains("grant.requested") || k.contains("anomaly.flagged")),
        "{:?}",
        keys(&rx)
    );
    assert_eq!(v["grant"]["id"], g["id"]);
    assert_eq!(v["grant"]["ticket"], "INC-4711");
    assert_eq!(v["grant"]["user"], "bob");
    assert!(v["grant"]["expires_at"].is_string());
    assert_eq!(rx.bad_signatures.load(Ordering::SeqCst), 0);
    let list = sam.ok(&["alerts", "--state", "delivered"]);
    let a = list.as_array().unwrap();
    assert_eq!(a.len(), 1, "{list}");
    assert!(
        a.iter().any(|x| x["attempts"].as_u64().unwrap() > 1),
        "{list}"
    );
    // Not for responders.
    assert_eq!(bob.run(&["alerts"]).slug(), "forbidden");
}

#[test]
fn dead_letter_is_audited_listed_and_retryable() {
    let (url, rx) = start_receiver();
    rx.fail_next.store(1000, Ordering::SeqCst);
    let s = Server::start_with(
        &policy(&url),
        &[("HOOK_SECRET", SECRET)],
        &["--alert-backoff", "1s", "--alert-retries", "2"],
    );
    let bob = s.user("bob", &["oncall"]);
    let sam = s.user("sam", &["security"]);
    bob.break_glass("prod-db", "INC-1");
    let failed = poll("dead letters", Duration::from_secs(60), || {
        let l = sam.ok(&["alerts", "--state", "failed"]);
        (!l.as_array().unwrap().is_empty()).then_some(l)
    });
    let id = failed[0]["id"].as_i64().unwrap();
    assert!(
        failed[0]["last_error"].as_str().unwrap().contains("500"),
        "{failed}"
    );
    let out = std::process::Command::new(BIN)
        .args(["audit", "export", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("alert.dead_lettered"));
    rx.fail_next.store(0, Ordering::SeqCst);
    sam.ok(&["alerts", "retry", &id.to_string()]);
    poll("retried alert delivered", Duration::from_secs(30), || {
        let l = sam.ok(&["alerts", "--state", "delivered"]);
        l.as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"].as_i64() == Some(id))
            .then_some(())
    });
    assert_eq!(sam.run(&["alerts", "retry", "999999"]).slug(), "not-found");
}

#[test]
fn delivery_interrupted_by_a_crash_is_completed_after_restart_once_per_key() {
    let (url, rx) = start_receiver();
    *rx.stall.lock().unwrap() = true;
    let mut s = Server::start_with(
        &policy(&url),
        &[("HOOK_SECRET", SECRET)],
        &["--alert-backoff", "1s", "--alert-lease", "2s"],
    );
    let bob = s.user("bob", &["oncall"]);
    bob.break_glass("prod-db", "INC-1");
    poll("a delivery in flight", Duration::from_secs(30), || {
        (!keys(&rx).is_empty()).then_some(())
    });
    s.kill(); // mid-delivery: the receiver got it, the server never heard back
    *rx.stall.lock().unwrap() = false;
    let first = keys(&rx)[0].clone();
    s.restart();
    poll("redelivery after restart", Duration::from_secs(60), || {
        let k = keys(&rx);
        (k.iter().filter(|x| **x == first).count() >= 2
            && k.iter().any(|x| x.contains("grant.activated")))
        .then_some(())
    });
    // Receivers deduplicate on the key: every alert arrives, and each key stands for one alert
    // (breaking glass is one: the request is inside the activation's).
    let mut distinct = keys(&rx);
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 1, "{distinct:?}");
    assert_eq!(
        distinct
            .iter()
            .filter(|k| k.contains("grant.activated"))
            .count(),
        1
    );
}

/// A server whose prod-db policy notifies Slack (`/slack`) and PagerDuty (`/pd`) at `rx`.
fn slack_and_pagerduty_server() -> (Server, Arc<Receiver>) {
    let (url, rx) = start_receiver();
    let base = url.trim_end_matches("/hook").to_string();
    let policy = format!(
        "{}sinks:\n  - name: sec-slack\n    kind: slack\n    url_env: SLACK_URL\n  - name: sec-pager\n    kind: pagerduty\n    url: {base}/pd\n    routing_key_env: PD_KEY\n",
        POLICY.replace(
            "review: { within: 72h, by: [security] }",
            "review: { within: 72h, by: [security] }\n    notify: [sec-slack, sec-pager]"
        )
    );
    let slack_url = format!("{base}/slack");
    let s = Server::start_with(
        &policy,
        &[("SLACK_URL", slack_url.as_str()), ("PD_KEY", "R0UTINGKEY")],
        &["--alert-backoff", "1s"],
    );
    (s, rx)
}

/// Deliveries received at `path`, parsed.
fn received(rx: &Receiver, path: &str) -> Vec<serde_json::Value> {
    rx.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, b)| serde_json::from_str(b).unwrap())
        .collect()
}

#[test]
fn slack_and_pagerduty_formats() {
    let (s, rx) = slack_and_pagerduty_server();
    let bob = s.user("bob", &["oncall"]);
    let g = bob.break_glass("prod-db", "INC-4711");
    let id = g["id"].as_str().unwrap().to_string();
    bob.ok(&["revoke", &id]);
    let (pd, slack) = poll(
        "slack and pagerduty deliveries",
        Duration::from_secs(30),
        || {
            let (pd, slack) = (received(&rx, "/pd"), received(&rx, "/slack"));
            let resolved = pd.iter().any(|e| e["event_action"] == "resolve");
            let said = |what: &str| {
                slack
                    .iter()
                    .any(|m| m["text"].as_str().unwrap_or("").contains(what))
            };
            (resolved && said("grant.activated") && said("grant.revoked")).then_some((pd, slack))
        },
    );
    // One Slack message per grant event that matters: breaking glass (requested, flagged as
    // bob's first grant on prod-db, activated) is one message with the flag in it; the
    // revocation another. Likewise one page, then its resolution.
    let texts: Vec<&str> = slack.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(
        texts[0].starts_with("breakglass grant.activated: bob on prod-db")
            && texts[0].contains("ANOMALY: first-grant"),
        "{texts:#?}"
    );
    assert!(
        texts[1].starts_with("breakglass grant.revoked"),
        "{texts:#?}"
    );
    assert_eq!(pd.len(), 2, "{pd:#?}");
    assert_eq!(pd[0]["payload"]["severity"], "critical", "{pd:#?}");
    let trigger = pd.iter().find(|e| e["event_action"] == "trigger").unwrap();
    let resolve = pd.iter().find(|e| e["event_action"] == "resolve").unwrap();
    assert_eq!(trigger["dedup_key"], id.as_str());
    assert_eq!(resolve["dedup_key"], id.as_str());
    assert_eq!(trigger["routing_key"], "R0UTINGKEY");
    assert!(
        trigger["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("INC-4711")
    );
    let activated = slack
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .find(|t| t.contains("grant.activated"))
        .unwrap();
    for part in ["bob", "prod-db", "INC-4711", "orders table locked", "until"] {
        assert!(activated.contains(part), "{part} missing from {activated}");
    }
}

/// The requester's reason and ticket reach Slack as text: no mention, link or entity of theirs
/// is rendered (Slack's `&amp;` `&lt;` `&gt;` escaping), and PagerDuty gets the plain text.
#[test]
fn requester_markup_is_inert_in_slack() {
    let (s, rx) = slack_and_pagerduty_server();
    let bob = s.user("bob", &["oncall"]);
    let reason = "<!channel> <https://evil.example|Approve here> & co";
    let otp = bob.otp();
    bob.ok(&[
        "request", "prod-db", "--reason", reason, "--ticket", "INC-4711", "--otp", &otp,
    ]);
    let (slack, pd) = poll("slack and pagerduty", Duration::from_secs(30), || {
        let (slack, pd) = (received(&rx, "/slack"), received(&rx, "/pd"));
        let activated = |v: &serde_json::Value| v.to_string().contains("grant.activated");
        (slack.iter().any(activated) && pd.iter().any(activated)).then_some((slack, pd))
    });
    for m in &slack {
        let text = m["text"].as_str().unwrap();
        assert!(
            text.contains("&lt;!channel&gt; &lt;https://evil.example|Approve here&gt; &amp; co"),
            "{text}"
        );
        assert!(!text.contains("<!channel>"), "{text}");
        assert!(!text.contains("<https://evil"), "{text}");
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
    }
    let trigger = pd.iter().find(|e| e["event_action"] == "trigger").unwrap();
    let summary = trigger["payload"]["summary"].as_str().unwrap();
    assert!(summary.contains(reason), "{summary}");
    assert!(summary.chars().count() <= 1024);
    assert_eq!(
        trigger["payload"]["custom_details"]["grant"]["reason"],
        reason
    );
}

/// A real SMTP server (Python's aiosmtpd) requiring STARTTLS with a throw-away certificate.
#[test]
fn email_alerts_arrive_over_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_ca(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mail_log = dir.path().join("mail.log");
    let mut smtp = std::process::Command::new("python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "--tlscert",
        ])
        .arg(&cert)
        .arg("--tlskey")
        .arg(&key)
        .stdout(std::fs::File::create(&mail_log).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m aiosmtpd (scripts/test.sh installs it)");
    poll("SMTP server", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let policy = format!(
        "{POLICY}notify: [sec-mail]\nsinks:\n  - name: sec-mail\n    kind: email\n    host: localhost\n    port: {port}\n    tls: starttls\n    ca_file: {}\n    from: breakglass@example.org\n    to: [security@example.org]\n",
        ca.display()
    );
    let s = Server::start_with(&policy, &[], &["--alert-backoff", "1s"]);
    let bob = s.user("bob", &["oncall"]);
    // The API refuses CR; a LF-only reason is accepted and must not reach a header either.
    let otp = bob.otp();
    let e = bob.run(&[
        "request",
        "prod-db",
        "--reason",
        "orders table locked\r\nBcc: x@evil.example",
        "--ticket",
        "INC-4711",
        "--otp",
        &otp,
    ]);
    assert_eq!(e.slug(), "invalid-request", "{}", e.stdout);
    let otp = bob.otp();
    bob.ok(&[
        "request",
        "prod-db",
        "--reason",
        "orders table locked\nBcc: x@evil.example\nSubject: approved",
        "--ticket",
        "INC-4711",
        "--otp",
        &otp,
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let t = std::fs::read_to_string(&mail_log).unwrap_or_default();
        if t.contains("grant.activated") {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no email arrived; server log:\n{}",
            s.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = smtp.kill();
    let _ = smtp.wait();
    assert!(text.contains("security@example.org"), "{text}");
    assert!(text.contains("INC-4711"), "{text}");
    assert!(
        text.contains("Subject: [breakglass] grant.activated bob on prod-db"),
        "{text}"
    );
    // The reason is in the body, on the summary's line: no line of the received mail (headers
    // or body) is a Bcc or a second Subject, and nobody else was a recipient.
    assert!(
        text.contains("orders table locked Bcc: x@evil.example"),
        "{text}"
    );
    for line in text.lines() {
        assert!(!line.starts_with("Bcc:"), "{text}");
        assert!(!line.starts_with("Subject: approved"), "{text}");
        if line.starts_with("X-RcptTo:") {
            assert!(!line.contains("evil"), "{text}");
        }
    }
}
