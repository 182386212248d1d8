//! The PostgreSQL gateway against a real PostgreSQL server, driven by real `psql` and Python's
//! psycopg: statements on record before they run, the grant's own credential only, cut at
//! expiry.

use crate::harness::*;
use breakglass_testkit::free_port;
use breakglass_testkit::pg::{Pg, psql};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn policy(gw_port: u16, extra: &str) -> String {
    format!(
        r#"
admins: {{ groups: [security] }}
resources:
  - name: prod-db
    kind: postgres
    admin_url_env: BREAKGLASS_PG_ADMIN_URL
    grant_roles: [app_admin]
    connection_limit: 4
    gateway: {{ listen: "127.0.0.1:{gw_port}" }}
{extra}
policies:
  - name: dba-emergency
    resources: [prod-db]
    who: {{ groups: [oncall] }}
    require: {{ mfa: false }}
    approval: {{ mode: auto }}
    duration: {{ default: 30m, max: 2h }}
"#
    )
}

struct Rig {
    pg: Pg,
    server: Server,
    alice: User,
    sec: User,
    gw: u16,
}

fn rig(extra: &str) -> Rig {
    let pg = Pg::start();
    pg.sql(
        "CREATE ROLE app_admin NOLOGIN; CREATE TABLE orders(id int, note text); \
         INSERT INTO orders VALUES (1, 'one'), (2, 'two'); \
         GRANT ALL ON orders TO app_admin; GRANT CREATE ON SCHEMA public TO app_admin",
    );
    let gw = free_port();
    let url = pg.admin_url();
    let server = Server::start_with(
        &policy(gw, extra),
        &[("BREAKGLASS_PG_ADMIN_URL", &url)],
        &[],
    );
    let alice = server.user("alice", &["oncall"]);
    let sec = server.user("sam", &["security"]);
    Rig {
        pg,
        server,
        alice,
        sec,
        gw,
    }
}

impl Rig {
    fn grant(&self, dur: &str) -> (String, String) {
        let g = self.alice.ok(&[
            "request",
            "prod-db",
            "--reason",
            "orders table locked, checkout down",
            "--for",
            dur,
        ]);
        let id = g["id"].as_str().unwrap().to_string();
        let url = g["credential"]["url"].as_str().unwrap().to_string();
        (id, url)
    }

    fn text(&self, id: &str) -> String {
        let r = self.sec.run(&["recording", id, "--format", "text"]);
        assert!(r.ok, "{}", r.stderr);
        r.stdout
    }
}

#[test]
fn psql_through_the_gateway_is_recorded_statement_by_statement() {
    let r = rig("");
    let (id, url) = r.grant("30m");
    assert!(
        url.contains(&format!("@127.0.0.1:{}/", r.gw)),
        "the URL points at the gateway: {url}"
    );
    let (ok, out) = psql(&url, "SELECT count(*) FROM orders");
    assert!(ok, "{out}");
    assert!(out.contains('2'), "{out}");
    let t = r.text(&id);
    assert!(t.contains("SELECT count(*) FROM orders"), "{t}");
    assert!(t.contains("SELECT 1 (1 rows)"), "{t}");
    let _ = &r.pg;
}

fn client(url: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/pg_client.py");
    let o = Command::new("python3")
        .arg(script)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "pg_client.py: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// psycopg through the gateway: parameters, prepared statements, a transaction, COPY both
/// ways, an error and a cancel all work, and the recording holds each statement with its
/// parameters and outcome, the literal password redacted.
#[test]
fn a_real_driver_works_through_the_gateway_and_everything_is_on_record() {
    let r = rig("");
    let (id, url) = r.grant("30m");
    let v = client(&url);
    assert_eq!(v["param"], "two", "{v}");
    assert_eq!(v["error"], "22012", "{v}");
    assert_eq!(
        v["cancel"], "57014",
        "cancelled through the gateway's key: {v}"
    );
    assert!(v["cancel_secs"].as_f64().unwrap() < 10.0, "{v}");
    assert_eq!(v["after_cancel"], 42, "{v}");
    let ids: Vec<&str> = v["copied_out"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3", "10", "11"], "{v}");
    // The database saw it all.
    assert_eq!(
        r.pg.sql("SELECT note FROM orders WHERE id = 3").trim(),
        "tres"
    );
    let t = r.text(&id);
    for want in [
        // psycopg sends integers in binary, typed int2 in the Parse: shown as PostgreSQL would.
        "SQL SELECT note FROM orders WHERE id = $1 params [\"2\"] → SELECT 1 (1 rows)",
        "INSERT INTO orders VALUES ($1, $2) params [\"3\", \"three\"] → INSERT 0 1 (1 rows)",
        "COPY orders (id, note) FROM STDIN → COPY 2 (2 rows)",
        "SQL BEGIN",
        "SQL COMMIT",
        "ERROR 22012",
        "SELECT pg_sleep(30) → ERROR 57014",
        "[secret redacted]",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
    assert!(!t.contains("hunter2-literal"), "{t}");
    // Prepared once, run twice: both runs are on record with their parameters.
    assert!(
        t.contains("SELECT id FROM orders WHERE id = $1 params [\"1\"]")
            && t.contains("SELECT id FROM orders WHERE id = $1 params [\"2\"]"),
        "{t}"
    );
}

/// The URL's credential is the gateway's: PostgreSQL itself refuses it.
#[test]
fn the_credential_handed_out_does_not_log_in_to_postgresql_directly() {
    let r = rig("");
    let (_, url) = r.grant("30m");
    let direct = url.replace(&format!(":{}/", r.gw), &format!(":{}/", r.pg.port));
    assert_ne!(direct, url);
    let (ok, out) = psql(&direct, "SELECT 1");
    assert!(!ok, "{out}");
    assert!(out.contains("password authentication failed"), "{out}");
    // And a wrong password at the gateway is refused the same way.
    let pw = url.split(':').nth(2).unwrap().split('@').next().unwrap();
    let wrong = url.replace(pw, "not-the-password");
    let (ok, out) = psql(&wrong, "SELECT 1");
    assert!(
        !ok && out.contains("password authentication failed"),
        "{out}"
    );
    // Another role name of the same grant (another issue's, or the old `bg_<grant>` form) with
    // the right password: only the role recorded as the grant's credential gets in.
    let role = url.split("://").nth(1).unwrap().split(':').next().unwrap();
    let (stem, _) = role.rsplit_once('_').unwrap();
    for other in [format!("{stem}_00000000"), stem.to_string()] {
        let (ok, out) = psql(&url.replace(role, &other), "SELECT 1");
        assert!(
            !ok && out.contains("not the current role"),
            "{other}: {out}"
        );
    }
}

fn sleeping_psql(url: &str) -> std::process::Child {
    Command::new("psql")
        .arg(url)
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-c", "SELECT pg_sleep(60)"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn finished(child: &mut std::process::Child, within: Duration) -> String {
    let t = Instant::now();
    poll("psql to be cut off", within, || {
        child.try_wait().unwrap().map(|_| ())
    });
    let _ = t;
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

fn backends_of(pg: &Pg, role: &str) -> String {
    pg.sql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'"
    ))
    .trim()
    .to_string()
}

/// A `pg_sleep(60)` through the gateway is cut when the grant expires, with a FATAL naming the
/// grant; the statement stops at the database too, and a new login is refused.
#[test]
fn a_running_statement_is_cut_at_expiry_with_an_error_naming_the_grant() {
    let r = rig("");
    let (id, url) = r.grant("6s");
    let role = url
        .trim_start_matches("postgres://")
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let began = Instant::now();
    let mut child = sleeping_psql(&url);
    poll("the statement to run", Duration::from_secs(10), || {
        (backends_of(&r.pg, &role) == "1").then_some(())
    });
    let err = finished(&mut child, Duration::from_secs(20));
    let took = began.elapsed();
    assert!(
        err.contains("FATAL") && err.contains(&format!("grant {id} expired")),
        "{err}"
    );
    assert!(took < Duration::from_secs(12), "cut after {took:?}");
    poll("the backend to stop", Duration::from_secs(10), || {
        (backends_of(&r.pg, &role) == "0").then_some(())
    });
    let (ok, out) = psql(&url, "SELECT 1");
    assert!(!ok, "{out}");
    let t = r.text(&id);
    assert!(t.contains("SELECT pg_sleep(60) → interrupted"), "{t}");
}

/// `watch` follows the statements live; revoking the grant cuts its gateway connections at
/// once and the watcher stops.
#[test]
fn watch_follows_statements_and_revocation_cuts_gateway_connections() {
    let r = rig("");
    let (id, url) = r.grant("30m");
    let tmp = tempfile::tempdir().unwrap();
    let watch_out = tmp.path().join("watch.out");
    let mut watch = Command::new(BIN)
        .args(["--server", &r.sec.url, "watch", &id])
        .env("XDG_CONFIG_HOME", r.sec.config.path())
        .stdout(std::fs::File::create(&watch_out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = sleeping_psql(&url);
    poll(
        "watch to show the statement",
        Duration::from_secs(20),
        || {
            let _ = psql(&url, "SELECT 'watched-' || 6*7");
            std::fs::read_to_string(&watch_out)
                .unwrap_or_default()
                .contains("SQL SELECT 'watched-' || 6*7 → SELECT 1 (1 rows)")
                .then_some(())
        },
    );
    r.sec.ok(&["revoke", &id, "--reason", "incident over"]);
    let err = finished(&mut child, Duration::from_secs(10));
    assert!(err.contains("FATAL") && err.contains("revoked"), "{err}");
    poll("watch to finish", Duration::from_secs(15), || {
        watch.try_wait().unwrap()
    });
}

/// One byte changed in a stored statement chunk fails `audit verify`, naming session and chunk.
#[test]
fn a_tampered_statement_record_fails_audit_verify() {
    let r = rig("");
    let (_, url) = r.grant("30m");
    let (ok, out) = psql(&url, "SELECT 'evidence' AS note");
    assert!(ok, "{out}");
    let sid = poll("the session to end", Duration::from_secs(10), || {
        let s = sqlite(
            &r.server.data_dir(),
            "select id from recording_sessions where ended_at is not null",
        );
        s.contains("s-").then_some(s)
    });
    let verify = || {
        let o = Command::new(BIN)
            .args(["audit", "verify", "--data-dir"])
            .arg(r.server.data_dir())
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (ok, report) = verify();
    assert!(ok, "{report}");
    sqlite(
        &r.server.data_dir(),
        "update recording_chunks set payload = cast(replace(cast(payload as text), 'evidence', 'innocent') as blob)",
    );
    let (ok, report) = verify();
    let sid = sid.trim_matches(|c| "[](),' \n".contains(c)).to_string();
    assert!(
        !ok && report.contains(&sid) && report.contains("was altered"),
        "{report}"
    );
}

/// What a stranger can send before logging in: garbage, bad lengths, huge declared sizes, a
/// direct TLS handshake, an unsupported protocol, a wrong SASL mechanism. Each gets an
/// ErrorResponse (or a closed connection), nothing panics, and the gateway goes on serving.
#[test]
fn hostile_bytes_before_login_get_an_error_and_change_nothing() {
    use std::io::{Read, Write};
    let r = rig("");
    let (_, url) = r.grant("30m");
    let startup = |user: &str| {
        let mut body = Vec::new();
        body.extend_from_slice(&196_608u32.to_be_bytes());
        body.extend_from_slice(b"user\0");
        body.extend_from_slice(user.as_bytes());
        body.extend_from_slice(b"\0\0");
        let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        m.extend_from_slice(&body);
        m
    };
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("short length", vec![0, 0, 0, 3, 0, 0, 0, 0]),
        ("huge startup", vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]),
        ("direct tls", vec![0x16, 3, 1, 0, 0x80, 1, 0, 0, 0x7c]),
        ("protocol 4.0", vec![0, 0, 0, 9, 0, 4, 0, 0, 0]),
        ("no user", vec![0, 0, 0, 9, 0, 3, 0, 0, 0]),
    ];
    // Logged in far enough to be asked for SCRAM, then: a huge message, a wrong mechanism.
    let mut huge = startup("bg_00");
    huge.extend_from_slice(&[b'p', 0x7f, 0xff, 0xff, 0xff]);
    cases.push(("huge message", huge));
    let mut mech = startup("bg_00");
    mech.extend_from_slice(&[b'p', 0, 0, 0, 13]);
    mech.extend_from_slice(b"PLAIN\0\0\0\0\0");
    cases.push(("wrong mechanism", mech));
    let mut unknown = startup("postgres");
    unknown.extend_from_slice(&[b'p', 0, 0, 0, 36]);
    unknown.extend_from_slice(b"SCRAM-SHA-256\0\0\0\0\x12n,,n=,r=abcdefghijkl");
    cases.push(("not a grant role", unknown));
    for (what, bytes) in cases {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", r.gw)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.write_all(&bytes);
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        let error = got
            .windows(1)
            .position(|w| w[0] == b'E')
            .is_some_and(|i| text[i..].contains("FATAL"));
        assert!(
            error,
            "{what}: expected a FATAL ErrorResponse, got {text:?}"
        );
    }
    let (ok, out) = psql(&url, "SELECT 'still serving'");
    assert!(ok && out.contains("still serving"), "{out}");
}

/// With a server certificate, the gateway speaks TLS (sslmode=require works, and the
/// certificate verifies against the CA with sslmode=verify-full).
#[test]
fn the_gateway_speaks_tls_with_the_servers_certificate() {
    let pg = Pg::start();
    pg.sql("CREATE ROLE app_admin NOLOGIN");
    let gw = free_port();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_ca(dir.path());
    let mut server = Server::start_with(
        &policy(gw, ""),
        &[("BREAKGLASS_PG_ADMIN_URL", &pg.admin_url())],
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    server
        .cli_env
        .push(("BREAKGLASS_CA_FILE".into(), ca.display().to_string()));
    let alice = server.user("alice", &["oncall"]);
    let g = alice.ok(&[
        "request",
        "prod-db",
        "--reason",
        "tls check",
        "--for",
        "30m",
    ]);
    let url = g["credential"]["url"].as_str().unwrap().to_string();
    let tls = format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display());
    let (ok, out) = psql(&tls, "SELECT 1");
    assert!(ok, "{out}");
    let (ok, out) = psql(&format!("{url}?sslmode=require"), "SELECT 1");
    assert!(ok, "{out}");
    let o = Command::new("psql")
        .arg(format!(
            "{url}?sslmode=verify-full&sslrootcert={}",
            ca.display()
        ))
        .args(["-X", "-A", "-t", "-c", "\\conninfo"])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(info.contains("SSL connection"), "{info}");
}

/// The incident report lists the statements; SQL the responder typed stays inert in Markdown
/// and HTML.
#[test]
fn the_incident_report_lists_statements_with_hostile_text_inert() {
    let r = rig("");
    let (id, url) = r.grant("30m");
    let evil = "SELECT '| forged | cell |\n## Forged heading <script>alert(1)</script>' AS x";
    let (ok, out) = psql(&url, evil);
    assert!(ok, "{out}");
    poll(
        "the statement to be recorded",
        Duration::from_secs(10),
        || {
            let v = r.sec.ok(&["report", &id, "--format", "json"]);
            (v["statements"].as_array().is_some_and(|s| !s.is_empty())).then_some(())
        },
    );
    let md = r.sec.run(&["report", &id, "--format", "md"]).stdout;
    assert!(md.contains("## Statements"), "{md}");
    assert!(!md.contains("\n## Forged heading"), "{md}");
    assert!(!md.contains("| forged | cell |"), "{md}");
    let html = r.sec.run(&["report", &id, "--format", "html"]).stdout;
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("Forged heading"), "{html}");
}

/// A stranger holding many half-open logins from one address (127.0.0.2) cannot lock a
/// responder (127.0.0.1) out: one address gets a few login slots, the rest are refused.
#[test]
fn a_login_flood_from_one_address_does_not_lock_responders_out() {
    let r = rig("");
    let (_, url) = r.grant("30m");
    let mut held = Vec::new();
    for _ in 0..300 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(
            &"127.0.0.2:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        if s.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], r.gw)).into())
            .is_ok()
        {
            held.push(s);
        }
    }
    let (ok, out) = psql(&url, "SELECT 'served despite the flood'");
    assert!(ok && out.contains("served despite the flood"), "{out}");
    // Most of the flood was turned away at once (closed), not held.
    use std::io::Read;
    let mut closed = 0;
    for s in &held {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut t: std::net::TcpStream = s.try_clone().unwrap().into();
        let mut b = [0u8; 1];
        if matches!(t.read(&mut b), Ok(0)) {
            closed += 1;
        }
    }
    assert!(closed >= 250, "only {closed} of {} closed", held.len());
}

/// Fail closed: when the statement cannot be recorded (the store refuses the chunk), it does
/// not reach the database and the client is told why.
#[test]
fn a_statement_that_cannot_be_recorded_is_not_run() {
    let r = rig("");
    let (_, url) = r.grant("30m");
    let (ok, out) = psql(&url, "SELECT 1");
    assert!(ok, "{out}");
    sqlite(
        &r.server.data_dir(),
        "CREATE TRIGGER test_disk_full BEFORE INSERT ON recording_chunks BEGIN SELECT RAISE(ABORT, 'simulated: disk full'); END",
    );
    let (ok, out) = psql(&url, "INSERT INTO orders VALUES (99, 'must not exist')");
    assert!(!ok, "{out}");
    assert!(
        out.contains("FATAL") && out.contains("could not record the statement, so it was not run"),
        "{out}"
    );
    assert_eq!(
        r.pg.sql("SELECT count(*) FROM orders WHERE id = 99").trim(),
        "0"
    );
    sqlite(&r.server.data_dir(), "DROP TRIGGER test_disk_full");
    let (ok, out) = psql(&url, "SELECT 'recording again'");
    assert!(ok && out.contains("recording again"), "{out}");
}

/// A grant holder cannot fill the disk through the statement log: past `recording_max_bytes`
/// the connection ends, and what ran before is on record.
#[test]
fn the_recording_cap_ends_a_flooding_connection() {
    let r = rig("    recording_max_bytes: 8KiB");
    let (id, url) = r.grant("30m");
    let filler = "x".repeat(400);
    let script: String = (0..100)
        .map(|i| format!("SELECT {i} AS n, '{filler}' AS pad;\n"))
        .collect();
    let o = Command::new("psql")
        .arg(&url)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    // One multi-statement query string is one message: refused whole.
    assert!(err.contains("recording cap of 8192 bytes"), "{err}");
    // Statement by statement (psql -f sends each as its own query): cut part-way.
    let file = r.server.dir.path().join("flood.sql");
    std::fs::write(&file, &script).unwrap();
    let o = Command::new("psql")
        .arg(&url)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !o.status.success() && err.contains("recording cap"),
        "{err}"
    );
    assert!(out.contains(" 0 |") && !out.contains(" 99 |"), "{out}");
    let t = r.text(&id);
    assert!(t.contains("SELECT 0 AS n"), "{t}");
}
