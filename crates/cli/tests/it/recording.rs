//! Session recording against a real OpenSSH server on loopback: an interactive `ssh -tt` driven
//! through a pseudo-terminal (Python's pty), non-PTY commands, the live watch, revocation
//! ending the session at once, fail-closed starts and ends, the size cap, audited views, replay
//! with Debian's `asciinema`, and `audit verify` catching a tampered recording.

use crate::harness::*;
use crate::hostile::audit_events;
use breakglass_testkit::sshd::{Sshd, keygen};
use breakglass_testkit::{free_port, whoami};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Rig {
    tmp: tempfile::TempDir,
    user: String,
    server: Server,
    alice: User,
    sam: User,
    sshd: Sshd,
    key: PathBuf,
}

/// A server whose `bastion` (extra `settings` lines allowed) is a real sshd on loopback; alice
/// (oncall) breaks glass without MFA, sam (security) administers.
fn rig(settings: &str) -> Rig {
    rig_with(settings, &[])
}

fn rig_with(settings: &str, serve_args: &[&str]) -> Rig {
    let user = whoami();
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let krl = tmp.path().join("host.krl");
    let policy = bastion_policy(&user, port, &krl, settings);
    let server = Server::start_with(&policy, &[], serve_args);
    let alice = server.user("alice", &["oncall"]);
    let sam = server.user("sam", &["security"]);
    let ca = alice.ok(&["ssh", "ca-key"]);
    alice.ok(&["ssh", "krl", "--out", &krl.display().to_string()]);
    let sshd = Sshd::start(tmp.path(), ca["public_key"].as_str().unwrap(), &krl, port);
    let key = tmp.path().join("id");
    keygen(&key);
    Rig {
        tmp,
        user,
        server,
        alice,
        sam,
        sshd,
        key,
    }
}

impl Rig {
    fn grant(&self) -> String {
        let g = self.alice.ok(&[
            "request",
            "bastion",
            "--reason",
            "replica stuck, need a root shell",
            "--for",
            "30m",
            "--ssh-key",
            &format!("{}.pub", self.key.display()),
        ]);
        g["id"].as_str().unwrap().to_string()
    }

    fn ssh(&self, cmd: &str) -> std::process::Output {
        self.sshd.ssh(&self.key, &self.user, cmd)
    }

    /// `ssh -tt` through a pseudo-terminal, following `steps` (see pty_drive.py).
    fn interactive(&self, steps: Value) -> Value {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/pty_drive.py");
        let out = Command::new("python3")
            .arg(script)
            .arg(steps.to_string())
            .arg("--")
            .args(["ssh", "-tt"])
            .args(self.sshd.ssh_args(&self.key, &self.user))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "pty driver failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// A session running `cmd` in the background (stdout and stderr piped).
    fn live(&self, cmd: &str) -> std::process::Child {
        self.sshd
            .ssh_cmd(&self.key, &self.user, cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn verify(&self) -> (bool, String) {
        let out = Command::new(BIN)
            .args(["audit", "verify", "--data-dir"])
            .arg(self.server.data_dir())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    fn db(&self, sql: &str) -> String {
        sqlite(&self.server.data_dir(), sql)
    }
}

#[test]
fn an_interactive_session_is_recorded_keys_and_all_except_what_is_typed_with_echo_off() {
    let r = rig("");
    let gid = r.grant();
    let t = r.interactive(serde_json::json!([
        {"send": "echo READY-$((40+2))\r"},
        {"expect": "READY-42"},
        {"send": "read -s -p 'pw: ' P; echo; echo got-${#P}\r"},
        {"expect": "pw: "},
        {"send": "", "pause": 0.5},
        {"send": "hunter2-secret\r"},
        {"expect": "got-14"},
        {"resize": [120, 40]},
        {"send": "stty size\r"},
        {"expect": "40 120"},
        {"send": "exit 3\r"},
        {"eof": 15}
    ]));
    assert!(t["failed"].is_null(), "{t}");
    assert_eq!(t["status"], 3, "the shell's exit status is ssh's: {t}");

    // The export replays in stock asciinema and holds output, keystrokes, resize and exit,
    // never the password.
    let cast = r.tmp.path().join("s.cast");
    r.sam
        .ok(&["recording", &gid, "--out", &cast.display().to_string()]);
    let text = std::fs::read_to_string(&cast).unwrap();
    let mut lines = text.lines();
    let head: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(
        (
            head["version"].as_u64(),
            head["width"].as_u64(),
            head["height"].as_u64()
        ),
        (Some(2), Some(100), Some(30))
    );
    let events: Vec<Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    let of = |code: &str| -> String {
        events
            .iter()
            .filter(|e| e[1] == code)
            .map(|e| e[2].as_str().unwrap().to_string())
            .collect()
    };
    assert!(of("o").contains("READY-42"), "{text}");
    assert!(
        of("i").contains("echo READY-$((40+2))"),
        "typed keys are recorded: {text}"
    );
    assert!(
        !text.contains("hunter2"),
        "a password typed with echo off was recorded: {text}"
    );
    assert!(
        of("m").contains("keystroke byte(s) typed with echo off"),
        "{text}"
    );
    assert!(of("r").contains("120x40"), "{text}");
    assert!(of("m").contains("exit status 3"), "{text}");
    // asciinema reads keys from /dev/tty: give it a terminal, as a reviewer has.
    for verb in [&["cat"][..], &["play", "-s", "20", "-i", "0.2"][..]] {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/pty_drive.py");
        let out = Command::new("python3")
            .arg(script)
            .arg(r#"[{"eof": 30}]"#)
            .args(["--", "asciinema"])
            .args(verb)
            .arg(&cast)
            .output()
            .unwrap();
        let played: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            played["status"] == 0 && played["transcript"].as_str().unwrap().contains("READY-42"),
            "asciinema {verb:?}: {played}"
        );
    }
    // The transcript has no terminal escapes.
    let tr = r.sam.run(&["recording", &gid, "--format", "text"]);
    assert!(tr.ok, "{}", tr.stderr);
    assert!(
        tr.stdout.contains("READY-42") && tr.stdout.contains("exit status 3"),
        "{}",
        tr.stdout
    );
    assert!(
        !tr.stdout.contains('\u{1b}') && !tr.stdout.contains("hunter2"),
        "{}",
        tr.stdout
    );

    // The trail: started, chunks, ended with the status; each view by whom.
    let started = audit_events(&r.server, "session.started");
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0]["data"]["kind"], "pty");
    let ended = audit_events(&r.server, "session.ended");
    assert_eq!(ended[0]["data"]["exit_status"], 3, "{ended:?}");
    let views = audit_events(&r.server, "recording.viewed");
    assert_eq!(views.len(), 2, "{views:?}");
    assert!(views.iter().all(|v| v["actor"] == "sam"), "{views:?}");
    assert!(!audit_events(&r.server, "recording.chunk").is_empty());
    let (_, metrics) = r.server.get("/metrics");
    assert!(
        metrics.contains("breakglass_recorded_sessions_total 1")
            && !metrics.contains("breakglass_recorded_chunks_total 0"),
        "{metrics}"
    );
    let (ok, out) = r.verify();
    assert!(ok, "{out}");
    assert!(out.contains("1 recorded session"), "{out}");
    // The incident report lists the session and how to replay it.
    let sid = started[0]["data"]["session"].as_str().unwrap();
    let rep = r.sam.run(&["report", &gid]);
    assert!(rep.ok, "{}", rep.stderr);
    assert!(
        rep.stdout.contains("## Sessions")
            && rep.stdout.contains(sid)
            && rep.stdout.contains("the shell exited"),
        "{}",
        rep.stdout
    );
    // Someone who may not see the grant may not read its recording.
    let eve = r.server.user("eve", &["interns"]);
    let denied = eve.run(&["recording", &gid]);
    assert!(!denied.ok, "{}", denied.stdout);
}

#[test]
fn tampering_with_a_stored_recording_fails_audit_verify_naming_session_and_chunk() {
    let r = rig("");
    r.grant();
    let out = r.ssh("seq 1 500000");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\n500000\n"));
    let (ok, report) = r.verify();
    assert!(ok, "{report}");
    let sid = r.db("select id from recording_sessions");
    let sid = sid.trim_matches(|c| "[](),' \n".contains(c)).to_string();
    let chunks: u64 = r
        .db("select count(*) from recording_chunks")
        .trim_matches(|c| "[](),' \n".contains(c))
        .parse()
        .unwrap();
    assert!(chunks >= 3, "expected several chunks, got {chunks}");

    // One byte changed.
    r.db("update recording_chunks set payload = cast(substr(payload,1,20) || 'X' || substr(payload,22) as blob) where seq = 1");
    let (ok, report) = r.verify();
    assert!(
        !ok && report.contains(&sid) && report.contains("chunk 1 was altered"),
        "{report}"
    );
    // Dropped.
    r.db("delete from recording_chunks where seq = 1");
    let (ok, report) = r.verify();
    assert!(
        !ok && report.contains("chunk 1") && report.contains("missing"),
        "{report}"
    );
    // Reordered: chunk 2 renumbered as 1.
    r.db("update recording_chunks set seq = 1 where seq = 2");
    let (ok, report) = r.verify();
    assert!(!ok && report.contains(&sid), "{report}");
}

#[test]
fn no_recording_server_means_no_shell_and_a_refused_session_is_audited() {
    let mut r = rig("");
    let gid = r.grant();
    // The grant is revoked but the host has not refreshed its KRL: the server refuses the
    // session at once (audited), no waiting for the host's cron job.
    r.sam.ok(&["revoke", &gid, "--reason", "test"]);
    let out = r.ssh("echo should-not-run");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !out.status.success() && !o.contains("should-not-run"),
        "{o}{e}"
    );
    assert!(
        e.contains("was revoked") && e.contains("does not start"),
        "{e}"
    );
    let refused = audit_events(&r.server, "session.refused");
    assert_eq!(refused.len(), 1, "{refused:?}");

    // A valid grant, but the server is gone: no shell.
    let gid2 = r.grant();
    r.server.kill();
    let out = r.ssh("echo should-not-run");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !out.status.success() && !o.contains("should-not-run"),
        "{o}{e}"
    );
    assert!(
        e.contains("cannot reach the recording server") && e.contains(&gid2),
        "{e}"
    );
}

#[test]
fn revocation_ends_the_live_session_at_once_and_watch_follows_it() {
    let r = rig("");
    let gid = r.grant();
    let watch_out = r.tmp.path().join("watch.out");
    let mut watch = Command::new(BIN)
        .args(["--server", &r.sam.url, "watch", &gid])
        .env("XDG_CONFIG_HOME", r.sam.config.path())
        .stdout(std::fs::File::create(&watch_out).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut live = r.live("echo live-marker-$((6*7)); sleep 600");
    poll(
        "watch to show the live output",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(&watch_out)
                .unwrap_or_default()
                .contains("live-marker-42")
                .then_some(())
        },
    );
    let t0 = Instant::now();
    r.sam.ok(&["revoke", &gid, "--reason", "suspicious"]);
    poll(
        "the live session to end after revocation",
        Duration::from_secs(10),
        || live.try_wait().unwrap(),
    );
    let took = t0.elapsed();
    eprintln!("revocation → live session closed: {} ms", took.as_millis());
    let out = live.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains(&format!("grant {gid} was revoked")), "{e}");
    let ended = audit_events(&r.server, "session.ended");
    assert!(
        ended[0]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{ended:?}"
    );
    // The watcher stops by itself once the grant is over and its sessions ended.
    poll("watch to finish", Duration::from_secs(10), || {
        watch.try_wait().unwrap()
    });
    let views = audit_events(&r.server, "recording.viewed");
    assert!(
        views
            .iter()
            .any(|v| v["data"]["purpose"] == "watch" && v["actor"] == "sam")
    );
}

#[test]
fn a_session_whose_server_stops_acknowledging_pauses_then_ends() {
    let mut r = rig("    recording_ack_timeout: 1s");
    r.grant();
    let mut live = r.live("echo open; while sleep 0.2; do echo tick; done");
    poll(
        "the recorded session to open",
        Duration::from_secs(20),
        || (!audit_events(&r.server, "recording.chunk").is_empty()).then_some(()),
    );
    r.server.kill();
    let t0 = Instant::now();
    poll(
        "the session to end without the server",
        Duration::from_secs(15),
        || live.try_wait().unwrap(),
    );
    eprintln!(
        "server killed → session ended: {} ms",
        t0.elapsed().as_millis()
    );
    let out = live.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("has not acknowledged"), "{e}");
}

#[test]
fn a_big_command_without_a_terminal_is_recorded_and_capped() {
    let r = rig("    recording_max_bytes: 256KiB\n    on_recording_cap: end");
    r.grant();
    let out = r.ssh("head -c 3000000 /dev/zero | base64");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("recording cap"), "{e}");
    assert!(
        out.stdout.len() < 3_000_000,
        "the cap did not end the session"
    );
    let capped = audit_events(&r.server, "recording.capped");
    assert_eq!(capped.len(), 1, "{capped:?}");
    assert_eq!(
        audit_events(&r.server, "session.started")[0]["data"]["kind"],
        "exec"
    );
    let (ok, report) = r.verify();
    assert!(ok, "{report}");
}

fn event_count(s: &Server) -> usize {
    let out = Command::new(BIN)
        .args(["audit", "export", "--format", "jsonl", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"type\":\"event\""))
        .count()
}

#[test]
fn past_the_cap_a_continue_session_goes_on_with_a_marker() {
    let r = rig("    recording_max_bytes: 64KiB\n    on_recording_cap: continue");
    let gid = r.grant();
    let out = r.ssh("head -c 600000 /dev/zero | base64 | wc -c; echo done-$((1+1))");
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && o.contains("done-2"),
        "{o}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = r.ssh("head -c 600000 /dev/zero | base64; echo done-$((1+2))");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("done-3"));
    assert_eq!(audit_events(&r.server, "recording.capped").len(), 1);
    let tr = r.sam.run(&["recording", &gid, "--format", "text"]);
    assert!(
        tr.stdout.contains("recording cap reached") && tr.stdout.contains("exit status 0"),
        "{}",
        tr.stdout
    );
    let (ok, report) = r.verify();
    assert!(ok, "{report}");
}

#[test]
fn best_effort_keeps_the_session_through_an_outage_and_audits_the_gap() {
    let mut r = rig("    recording: best_effort\n    recording_ack_timeout: 1s");
    r.grant();
    let mut live = r.live("for i in $(seq 1 40); do echo tick-$i; sleep 0.2; done");
    poll(
        "the recorded session to open",
        Duration::from_secs(20),
        || (!audit_events(&r.server, "recording.chunk").is_empty()).then_some(()),
    );
    r.server.kill();
    // The outage itself: the server stays down for 3 s (longer than the 1 s ack timeout).
    std::thread::sleep(Duration::from_secs(3));
    r.server.restart();
    poll("the session to finish", Duration::from_secs(30), || {
        live.try_wait().unwrap()
    });
    let out = live.wait_with_output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("tick-40"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    poll("the gap to be audited", Duration::from_secs(10), || {
        let g = audit_events(&r.server, "recording.gap");
        (!g.is_empty()).then_some(g)
    });
    let (ok, report) = r.verify();
    assert!(ok, "{report}");
}

#[test]
fn retention_deletes_payloads_but_keeps_the_digests_so_the_trail_still_verifies() {
    let r = rig_with("    recording_retention: 1s", &["--sweep-every", "1s"]);
    let gid = r.grant();
    let out = r.ssh("echo kept-$((2*21))");
    assert!(out.status.success());
    let purged = poll(
        "retention to delete the payloads",
        Duration::from_secs(20),
        || {
            let p = audit_events(&r.server, "recording.purged");
            (!p.is_empty()).then_some(p)
        },
    );
    assert_eq!(purged[0]["actor"], "system");
    let tr = r.sam.run(&["recording", &gid, "--format", "text"]);
    assert!(tr.ok, "{}", tr.stderr);
    assert!(
        !tr.stdout.contains("kept-42") && tr.stdout.contains("deleted by the retention policy"),
        "{}",
        tr.stdout
    );
    let (ok, report) = r.verify();
    assert!(ok && report.contains("deleted by retention"), "{report}");
}

/// A POST with any headers (the recorder's endpoints are not the CLI's).
fn raw(base: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    http_raw("POST", base, path, headers, Some(body))
}

fn force_command(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(format!("{}-cert.pub", key.display()))
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&out.stdout).to_string();
    info.lines()
        .find(|l| l.contains("force-command"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn hostile_recorder_requests_get_clear_errors_and_change_nothing() {
    let r = rig("");
    let gid = r.grant();
    let fc = force_command(&r.key);
    let token = fc
        .split_whitespace()
        .find_map(|w| w.strip_prefix("BREAKGLASS_RECORDER_TOKEN="))
        .unwrap()
        .to_string();
    let serial: u64 = fc
        .split_whitespace()
        .skip_while(|w| *w != "--serial")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let url = &r.server.url;
    let json = ("content-type", "application/json".to_string());
    let hello = |token: &str, serial: u64| {
        serde_json::json!({"grant": gid, "serial": serial, "token": token, "host": "h", "client": "c", "kind": "exec"})
            .to_string()
    };
    let events_before = event_count(&r.server);
    // A wrong token: refused, and nothing written (anyone may send this).
    let (st, body) = raw(
        url,
        "/api/v1/recordings",
        std::slice::from_ref(&json),
        hello("AAAA", serial).as_bytes(),
    );
    assert_eq!(st, 403, "{body}");
    assert_eq!(event_count(&r.server), events_before);
    // The right token with another certificate's serial: refused, audited.
    let (st, _) = raw(
        url,
        "/api/v1/recordings",
        std::slice::from_ref(&json),
        hello(&token, serial ^ 1).as_bytes(),
    );
    assert_eq!(st, 403);
    assert_eq!(audit_events(&r.server, "session.refused").len(), 1);
    // Garbage JSON.
    let (st, _) = raw(
        url,
        "/api/v1/recordings",
        std::slice::from_ref(&json),
        b"{\"grant\": [",
    );
    assert_eq!(st, 400);
    // A session, as the recorder would open it.
    let (st, body) = raw(
        url,
        "/api/v1/recordings",
        std::slice::from_ref(&json),
        hello(&token, serial).as_bytes(),
    );
    assert_eq!(st, 200, "{body}");
    let start: Value = serde_json::from_str(&body).unwrap();
    let sid = start["session"].as_str().unwrap();
    let secret = start["secret"].as_str().unwrap();
    let path = format!("/api/v1/recordings/{sid}/chunks");
    let auth = ("authorization", format!("Recorder {secret}"));
    let mut good = Vec::new();
    breakglass_core::recording::encode_record(
        &mut good,
        breakglass_core::recording::Kind::Output,
        1,
        b"hi",
    );
    // Without the session secret, with a wrong one.
    assert_eq!(raw(url, &path, &[("x-chunk", "0".into())], &good).0, 401);
    assert_eq!(
        raw(
            url,
            &path,
            &[
                ("authorization", "Recorder nope".into()),
                ("x-chunk", "0".into())
            ],
            &good
        )
        .0,
        403
    );
    // Not a chunk; a gap; too large; a bad number.
    assert_eq!(
        raw(
            url,
            &path,
            &[auth.clone(), ("x-chunk", "0".into())],
            b"\xff\x00garbage"
        )
        .0,
        400
    );
    assert_eq!(
        raw(url, &path, &[auth.clone(), ("x-chunk", "5".into())], &good).0,
        409
    );
    assert_eq!(
        raw(
            url,
            &path,
            &[auth.clone(), ("x-chunk", "0".into())],
            &vec![b'o'; 1100 * 1024]
        )
        .0,
        413
    );
    assert_eq!(
        raw(url, &path, &[auth.clone(), ("x-chunk", "-1".into())], &good).0,
        400
    );
    // Compressed chunks: a bomb claiming 4 GiB, and a damaged block.
    for bad in [
        vec![b'Z', 0xff, 0xff, 0xff, 0xff, 0x1f, 0x41],
        vec![b'Z', 0x40, 0, 0, 0, 0xf0, 0x00, 0x01],
    ] {
        assert_eq!(
            raw(url, &path, &[auth.clone(), ("x-chunk", "0".into())], &bad).0,
            400
        );
    }
    assert!(audit_events(&r.server, "recording.chunk").is_empty());
    // The real chunk, and its repeat (a retransmission) is acknowledged once.
    let (st, body) = raw(url, &path, &[auth.clone(), ("x-chunk", "0".into())], &good);
    assert_eq!(st, 200, "{body}");
    let (st, body) = raw(url, &path, &[auth.clone(), ("x-chunk", "0".into())], &good);
    assert_eq!(st, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["next"], 1);
    assert_eq!(audit_events(&r.server, "recording.chunk").len(), 1);
    // Many copies of chunks 1–4 at once, in any order: each stored once, in order, gapless.
    let threads: Vec<_> = (0..24)
        .map(|i| {
            let (url, path, auth, good) = (url.clone(), path.clone(), auth.clone(), good.clone());
            std::thread::spawn(move || {
                let seq = 4 - (i % 4);
                raw(&url, &path, &[auth, ("x-chunk", seq.to_string())], &good).0
            })
        })
        .collect();
    let codes: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    let chunks = audit_events(&r.server, "recording.chunk");
    let seqs: Vec<u64> = chunks
        .iter()
        .map(|e| e["data"]["chunk"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4], "{seqs:?}");
    let (ok, report) = r.verify();
    assert!(ok, "{report}");
}
