//! Audit streams against real receivers: a TLS (and a plain TCP) syslog listener in this
//! process that parses RFC 5424 strictly, and the JSON-lines file with rotation.

use crate::harness::*;
use crate::syslog_rx::{self, Receiver};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A resource anyone on call may take without MFA or approval: many events, fast.
fn policy(extra: &str) -> String {
    policy_with(&[], extra)
}

/// [`policy`] with more resources (each `{ name: …, … }` on one line) in the same policy.
fn policy_with(resources: &[(&str, &str)], extra: &str) -> String {
    let lines: String = resources
        .iter()
        .map(|(name, rest)| format!("  - {{ name: {name}, {rest} }}\n"))
        .collect();
    let names: String = resources.iter().map(|(n, _)| format!(", {n}")).collect();
    format!(
        r#"
admins: {{ groups: [security] }}
resources:
  - {{ name: db, kind: exec, grant: ["/bin/true"], revoke: ["/bin/true"] }}
{lines}policies:
  - name: open
    resources: [db{names}]
    who: {{ groups: [oncall] }}
    require: {{ mfa: false }}
    approval: {{ mode: auto }}
    duration: {{ default: 30m, max: 2h }}
{extra}"#
    )
}

fn syslog_stream(name: &str, port: u16, settings: &str) -> String {
    format!("  - {{ name: {name}, kind: syslog, host: 127.0.0.1, port: {port}, {settings} }}\n")
}

/// bob (oncall, no MFA) and sam (security), logged in.
fn people(s: &Server) -> (User, User) {
    s.add_user("bob", &["oncall"]);
    s.add_user("sam", &["security"]);
    let (bob, sam) = (User::new(s, "bob"), User::new(s, "sam"));
    bob.login();
    sam.login();
    (bob, sam)
}

fn requests(bob: &User, n: usize) {
    for i in 0..n {
        bob.ok(&[
            "request",
            "db",
            "--reason",
            &format!("orders table locked, attempt {i}"),
            "--for",
            "30m",
        ]);
    }
}

fn streams(sam: &User) -> Value {
    sam.ok(&["audit", "streams"])
}

fn stream<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stream {name}: {v}"))
}

/// Waits until `rx` holds every event of the log (and the stream says it is caught up).
fn all_delivered(sam: &User, name: &str, rx: &Receiver) -> u64 {
    poll("every event delivered", Duration::from_secs(60), || {
        let v = streams(sam);
        let head = v["head"].as_u64().unwrap();
        (stream(&v, name)["behind"] == 0 && rx.has_all(head)).then_some(head)
    })
}

/// The export's event lines by seq (the store's own view, to cross-check the stream).
fn export(s: &Server) -> HashMap<u64, Value> {
    let o = std::process::Command::new(BIN)
        .args(["audit", "export", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "event")
        .map(|v| (v["seq"].as_u64().unwrap(), v))
        .collect()
}

/// The canonical bytes of a JSON value (AUDIT-FORMAT §1: what serde_json writes, keys sorted).
fn leaf_of(v: &Value) -> String {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(serde_json::to_vec(v).unwrap());
    hex::encode(h.finalize())
}

#[test]
fn syslog_over_tls_carries_every_event_in_order_with_seq_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_ca(dir.path());
    let (rx, port) = syslog_rx::start(Some(syslog_rx::tls_config(&cert, &key)));
    let extra = format!(
        "streams:\n{}",
        syslog_stream(
            "siem",
            port,
            &format!(
                "ca_file: {}, hostname: bg-test, facility: local3",
                ca.display()
            )
        )
    );
    let s = Server::start(&policy(&extra));
    let (bob, sam) = people(&s);
    requests(&bob, 3);
    let head = all_delivered(&sam, "siem", &rx);
    assert!(
        rx.violations.lock().unwrap().is_empty(),
        "{:?}",
        rx.violations.lock()
    );
    assert_eq!(rx.plaintext.load(Ordering::SeqCst), 0);
    let frames = rx.frames.lock().unwrap().clone();
    // In order on every connection.
    let mut by_conn: HashMap<u32, Vec<u64>> = HashMap::new();
    for f in &frames {
        by_conn.entry(f.conn).or_default().push(f.seq());
    }
    for seqs in by_conn.values() {
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }
    // Each message matches the store: kind, hashes, and a body that re-encodes to the leaf.
    let ex = export(&s);
    for f in &frames {
        let e = &ex[&f.seq()];
        assert_eq!(f.msg, e["event"], "seq {}", f.seq());
        assert_eq!(f.param("leaf"), e["leaf"].as_str());
        assert_eq!(f.param("chain"), e["chain"].as_str());
        assert_eq!(f.param("leaf").unwrap(), leaf_of(&f.msg));
        assert_eq!(Some(f.msgid.as_str()), e["event"]["kind"].as_str());
        assert_eq!(f.hostname, "bg-test");
        assert!(f.param("origin").unwrap().starts_with("breakglass/"));
        // local3 (19): notice (5), or warning (4) for anomalies and refusals.
        assert!(f.pri == 19 * 8 + 5 || f.pri == 19 * 8 + 4, "{}", f.raw);
    }
    let requested = frames
        .iter()
        .find(|f| f.msgid == "grant.requested")
        .unwrap();
    assert_eq!(requested.param("actor"), Some("bob"));
    assert_eq!(requested.param("resource"), Some("db"));
    assert!(requested.param("grant").unwrap().starts_with("g-"));
    let v = streams(&sam);
    let st = stream(&v, "siem");
    assert_eq!(
        (st["state"].as_str(), st["position"].as_u64()),
        (Some("ok"), Some(head))
    );
    assert_eq!(st["destination"], format!("syslog+tls://127.0.0.1:{port}"));
    // Not for responders.
    assert_eq!(bob.run(&["audit", "streams"]).slug(), "forbidden");
}

#[test]
fn kill_9_mid_stream_and_restart_loses_nothing() {
    let (rx, port) = syslog_rx::start(None);
    // A slow SIEM: the server is killed while a delivery is in flight.
    *rx.delay.lock().unwrap() = Duration::from_millis(50);
    let files = tempfile::tempdir().unwrap();
    let jsonl = files.path().join("audit.jsonl");
    let extra = format!(
        "streams:\n{}  - {{ name: file, kind: jsonl, path: {} }}\n",
        syslog_stream("relay", port, "tls: none"),
        jsonl.display()
    );
    let mut s = Server::start(&policy(&extra));
    let (bob, sam) = people(&s);
    requests(&bob, 12);
    let head_before = streams(&sam)["head"].as_u64().unwrap();
    poll("a delivery under way", Duration::from_secs(30), || {
        (rx.frames.lock().unwrap().len() >= 5).then_some(())
    });
    s.kill();
    let got = rx.seqs().len() as u64;
    assert!(
        got < head_before,
        "killed mid-stream: {got} of {head_before} arrived"
    );
    *rx.delay.lock().unwrap() = Duration::ZERO;
    s.restart();
    requests(&bob, 1);
    let head = all_delivered(&sam, "relay", &rx);
    assert!(head > head_before);
    // The file stream too: every seq, in order, duplicates (if any) only re-deliveries.
    let lines = poll("the file stream caught up", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&jsonl).unwrap_or_default();
        let seqs: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        let mut uniq = seqs.clone();
        uniq.sort_unstable();
        uniq.dedup();
        (uniq == (1..=head).collect::<Vec<_>>()).then_some(seqs)
    });
    // In order; a re-delivery after the crash starts again from an earlier seq.
    assert!(lines.windows(2).all(|w| w[1] <= w[0] + 1), "{lines:?}");
}

#[test]
fn hostile_requester_text_arrives_inert() {
    let (rx, port) = syslog_rx::start(None);
    let files = tempfile::tempdir().unwrap();
    let jsonl = files.path().join("audit.jsonl");
    // A careless hook echoes the request to stderr in colour and fails: the error is audited.
    let hook = exec_script(
        files.path(),
        "hook",
        "printf '\\033[31mno\\302\\233[2J\\342\\200\\256 way\\n' >&2\nexit 1",
    );
    let extra = format!(
        "streams:\n{}  - {{ name: file, kind: jsonl, path: {} }}\n",
        syslog_stream("relay", port, "tls: none"),
        jsonl.display()
    );
    let grant = format!("kind: exec, grant: [\"{hook}\"], revoke: [\"/bin/true\"]");
    let p = policy_with(&[("careless", &grant)], &extra);
    let s = Server::start(&p);
    let (bob, sam) = people(&s);
    let hostile = "x\"] [evil@1 a=\"b\"]\n<13>1 2026-01-01T00:00:00Z host app - - - forged line\\";
    bob.ok(&["request", "db", "--reason", hostile, "--for", "30m"]);
    assert!(
        !bob.run(&[
            "request",
            "careless",
            "--reason",
            "hook please",
            "--for",
            "30m"
        ])
        .ok
    );
    all_delivered(&sam, "relay", &rx);
    assert!(
        rx.violations.lock().unwrap().is_empty(),
        "{:?}",
        rx.violations.lock()
    );
    let frames = rx.frames.lock().unwrap().clone();
    let requested = frames
        .iter()
        .find(|f| f.msgid == "grant.requested" && f.param("resource") == Some("db"))
        .unwrap();
    // The reason is in the JSON, exactly, and nowhere raw: one message, seven parameters.
    assert_eq!(requested.msg["data"]["reason"], hostile);
    let sd = requested.raw.split('\u{FEFF}').next().unwrap();
    assert!(
        !requested.raw.contains('\n') && !sd.contains("evil"),
        "{}",
        requested.raw
    );
    assert_eq!(requested.params.len(), 7, "{:?}", requested.params);
    let failed = frames
        .iter()
        .find(|f| f.msgid == "credential.issue_failed")
        .unwrap();
    let error = failed.msg["data"]["error"].as_str().unwrap();
    assert!(
        error.contains("\u{1b}[31mno\u{9b}[2J\u{202e} way"),
        "{error:?}"
    );
    for f in &frames {
        assert!(
            !f.raw
                .chars()
                .any(|c| c.is_control() || ('\u{2028}'..='\u{202e}').contains(&c)),
            "{:?}",
            f.raw
        );
    }
    assert!(
        failed.raw.contains("\\u001b[31mno\\u009b[2J\\u202e way"),
        "{}",
        failed.raw
    );
    // The file holds one line per event, none with a raw control character.
    let text = poll("the file stream", Duration::from_secs(30), || {
        let t = std::fs::read_to_string(&jsonl).unwrap_or_default();
        t.contains("issue_failed").then_some(t)
    });
    for line in text.lines() {
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        serde_json::from_str::<Value>(line).unwrap();
    }
}

#[test]
fn a_receiver_that_is_down_gets_everything_when_it_is_back() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let extra = format!("streams:\n{}", syslog_stream("relay", port, "tls: none"));
    let s = Server::start(&policy(&extra));
    let (bob, sam) = people(&s);
    requests(&bob, 2);
    let v = poll("failures recorded", Duration::from_secs(30), || {
        let v = streams(&sam);
        (stream(&v, "relay")["failures"].as_u64() >= Some(2)).then_some(v)
    });
    let st = stream(&v, "relay");
    assert_eq!(st["state"], "failing");
    assert!(
        st["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{st}"
    );
    assert!(st["behind"].as_u64().unwrap() > 0, "{st}");
    // Visible to a person and to monitoring too.
    let text = sam.run_plain(&["audit", "streams"]).stdout;
    assert!(
        text.contains("stream relay") && text.contains("failing"),
        "{text}"
    );
    let (_, metrics) = s.get("/metrics");
    assert!(
        metrics.contains("breakglass_audit_stream_failures_total{stream=\"relay\"}"),
        "{metrics}"
    );
    // The receiver comes back on its port; grants never waited for it.
    let rx = syslog_rx::serve(TcpListener::bind(("127.0.0.1", port)).unwrap(), None);
    requests(&bob, 1);
    all_delivered(&sam, "relay", &rx);
    let st = streams(&sam);
    assert_eq!(stream(&st, "relay")["state"], "ok", "{st}");
}

#[test]
fn a_bad_certificate_is_never_delivered_and_says_why() {
    let good = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let (_, cert, key) = test_ca(good.path());
    let (other_ca, _, _) = test_ca(other.path());
    let good_ca = good.path().join("ca.pem");
    let (rx, port) = syslog_rx::start(Some(syslog_rx::tls_config(&cert, &key)));
    let extra = format!(
        "streams:\n{}{}",
        syslog_stream(
            "strange-ca",
            port,
            &format!("ca_file: {}", other_ca.display())
        ),
        syslog_stream(
            "wrong-name",
            port,
            &format!(
                "ca_file: {}, server_name: siem.example.org",
                good_ca.display()
            )
        ),
    );
    let s = Server::start(&policy(&extra));
    let (bob, sam) = people(&s);
    requests(&bob, 1);
    let v = poll("both streams failing", Duration::from_secs(30), || {
        let v = streams(&sam);
        ["strange-ca", "wrong-name"]
            .iter()
            .all(|n| stream(&v, n)["failures"].as_u64() >= Some(2))
            .then_some(v)
    });
    for n in ["strange-ca", "wrong-name"] {
        let e = stream(&v, n)["last_error"].as_str().unwrap().to_string();
        assert!(
            e.contains("TLS handshake") && e.contains("certificate"),
            "{n}: {e}"
        );
        assert_eq!(stream(&v, n)["position"], 0);
    }
    assert!(rx.frames.lock().unwrap().is_empty());
    assert_eq!(rx.plaintext.load(Ordering::SeqCst), 0, "never downgraded");
    assert!(rx.handshake_failures.load(Ordering::SeqCst) >= 4);
    let (_, metrics) = s.get("/metrics");
    assert!(
        metrics.contains("breakglass_audit_stream_failures_total{stream=\"strange-ca\"}"),
        "{metrics}"
    );
}

#[test]
fn the_jsonl_file_rotates_and_keeps_n_files() {
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("audit.jsonl");
    let extra = format!(
        "streams:\n  - {{ name: file, kind: jsonl, path: {}, max_size: 4KiB, keep: 2 }}\n",
        path.display()
    );
    let s = Server::start(&policy(&extra));
    let (bob, sam) = people(&s);
    let numbered = |i: u32| files.path().join(format!("audit.jsonl.{i}"));
    let mut head = 0;
    for _ in 0..40 {
        requests(&bob, 2);
        head = poll("the file stream caught up", Duration::from_secs(30), || {
            let v = streams(&sam);
            (stream(&v, "file")["behind"] == 0).then(|| v["head"].as_u64().unwrap())
        });
        let total: u64 = (1..=2)
            .map(|i| std::fs::metadata(numbered(i)).map_or(0, |m| m.len()))
            .sum();
        if numbered(2).exists() && total + std::fs::metadata(&path).unwrap().len() > 3 * 4096 {
            break;
        }
    }
    assert!(numbered(2).exists());
    assert!(!numbered(3).exists(), "keep: 2");
    let mut seqs = Vec::new();
    for p in [numbered(2), numbered(1), path.clone()] {
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", p.display());
        assert!(meta.len() <= 4096, "{}: {}", p.display(), meta.len());
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["type"], "event");
            assert_eq!(v["leaf"].as_str().unwrap(), leaf_of(&v["event"]));
            seqs.push(v["seq"].as_u64().unwrap());
        }
    }
    // Oldest kept to newest: consecutive, ending at the head; the oldest files are gone.
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert_eq!(seqs.last(), Some(&head));
    assert!(seqs[0] > 1, "older events rotated away");
}
