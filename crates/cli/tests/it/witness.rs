//! The checkpoint witness: every signed checkpoint copied to a directory and a webhook, and
//! `audit verify --witness DIR` catching what the log alone cannot show: a truncation or a
//! rewrite (every hash recomputed) after the last local checkpoint, the local checkpoints
//! deleted with it.

use crate::harness::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "witness-secret-0123";

/// Every POST the webhook got: (headers, body).
type Posts = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

fn webhook() -> (String, Posts) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/checkpoints", l.local_addr().unwrap());
    let posts: Posts = Arc::default();
    let p = posts.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap_or(0);
            let mut headers = Vec::new();
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap_or(());
            p.lock()
                .unwrap()
                .push((headers, String::from_utf8_lossy(&body).to_string()));
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, posts)
}

fn hmac_openssl(data: &str) -> String {
    openssl_hmac_sha256(SECRET, data)
}

fn header<'a>(h: &'a [(String, String)], k: &str) -> &'a str {
    h.iter()
        .find(|(n, _)| n == k)
        .map_or("", |(_, v)| v.as_str())
}

/// oncall may break glass on `db` without MFA (many events, no waiting for TOTP steps).
const OPEN: &str = r#"
admins: { groups: [security] }
resources:
  - { name: db, kind: exec, grant: ["/bin/true"], revoke: ["/bin/true"] }
policies:
  - name: open
    resources: [db]
    who: { groups: [oncall] }
    require: { mfa: false }
    approval: { mode: auto }
    duration: { default: 30m, max: 2h }
"#;

/// A server with a witness directory and (optionally) a webhook.
fn start(witness: &Path, url: Option<&str>) -> Server {
    let mut w = format!("witness:\n  dir: {}\n", witness.display());
    if let Some(u) = url {
        w.push_str(&format!("  url: {u}\n  secret_env: WITNESS_SECRET\n"));
    }
    Server::start_with(&format!("{OPEN}{w}"), &[("WITNESS_SECRET", SECRET)], &[])
}

/// Local checkpoints: (size, note).
fn local_checkpoints(s: &Server) -> Vec<(u64, String)> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys,json\nc=sqlite3.connect(sys.argv[1])\n\
             print(json.dumps(c.execute('SELECT size, note FROM checkpoints ORDER BY size').fetchall()))",
        )
        .arg(s.data_dir().join("breakglass.db"))
        .output()
        .unwrap();
    let v: Vec<(u64, String)> = serde_json::from_slice(&out.stdout).unwrap();
    v
}

fn witnessed(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name()?.to_str()?.to_string();
            let size = name
                .strip_prefix("checkpoint-")?
                .strip_suffix(".note")?
                .parse()
                .ok()?;
            Some((size, p))
        })
        .collect();
    out.sort();
    out
}

/// Breaks glass three times, waits until the newest local checkpoint is witnessed (in the
/// directory, and by the webhook when there is one), then kills the server (no final
/// checkpoint: the witness holds the newest one).
fn populated(witness: &Path, hook: Option<(&str, &Posts)>) -> Server {
    let mut s = start(witness, hook.map(|(u, _)| u));
    s.add_user("bob", &["oncall"]);
    let bob = User::new(&s, "bob");
    bob.login();
    for t in 1..=3 {
        bob.ok(&[
            "request",
            "db",
            "--reason",
            &format!("orders table locked, try {t}"),
            "--for",
            "30m",
        ]);
    }
    poll(
        "the newest checkpoint witnessed",
        Duration::from_secs(60),
        || {
            let head: u64 = sqlite(&s.data_dir(), "SELECT MAX(seq) FROM audit")
                .trim_matches(|c| "[](),".contains(c))
                .parse()
                .ok()?;
            let newest = local_checkpoints(&s).last()?.0;
            let posted = hook.is_none_or(|(_, p)| {
                p.lock()
                    .unwrap()
                    .iter()
                    .any(|(h, _)| header(h, "x-breakglass-checkpoint-size") == newest.to_string())
            });
            (newest == head && posted && witnessed(witness).last().map(|w| w.0) == Some(newest))
                .then_some(())
        },
    );
    s.kill();
    s
}

fn verify(s: &Server, witness: Option<&Path>) -> (bool, Value) {
    let mut c = Command::new(BIN);
    c.args(["--json", "audit", "verify", "--data-dir"])
        .arg(s.data_dir());
    if let Some(w) = witness {
        c.arg("--witness").arg(w);
    }
    let o = c.output().unwrap();
    (
        o.status.success(),
        serde_json::from_slice(&o.stdout).unwrap_or(Value::Null),
    )
}

#[test]
fn every_checkpoint_is_copied_off_the_host_and_verify_passes() {
    let w = tempfile::tempdir().unwrap();
    let (url, posts) = webhook();
    let s = populated(w.path(), Some((&url, &posts)));
    let local = local_checkpoints(&s);
    let copies = witnessed(w.path());
    assert!(copies.len() >= 2, "{copies:?}");
    // The same signed text, one file per checkpoint, public.
    assert_eq!(copies.len(), local.len(), "{copies:?} vs {local:?}");
    for ((size, path), (lsize, note)) in copies.iter().zip(&local) {
        assert_eq!(size, lsize);
        assert_eq!(&std::fs::read_to_string(path).unwrap(), note);
    }
    // The webhook got each note with its size, origin and the alert webhooks' signature.
    assert!(posts.lock().unwrap().len() >= local.len());
    for (h, body) in posts.lock().unwrap().iter() {
        let size: u64 = header(h, "x-breakglass-checkpoint-size").parse().unwrap();
        let (_, note) = local.iter().find(|(s, _)| *s == size).unwrap();
        assert_eq!(body, note);
        assert!(header(h, "x-breakglass-origin").starts_with("breakglass/"));
        let ts = header(h, "x-breakglass-timestamp");
        assert_eq!(
            header(h, "x-breakglass-signature"),
            format!("v1={}", hmac_openssl(&format!("{ts}.{body}")))
        );
    }
    let (ok, v) = verify(&s, Some(w.path()));
    assert!(ok, "{v}");
    assert_eq!(v["witness"]["copies"], copies.len());
    assert_eq!(v["witness"]["newest_size"], local.last().unwrap().0);
    // A clean stop copies its final checkpoint before the server exits.
    let mut s = s;
    s.restart();
    s.stop();
    let newest = local_checkpoints(&s).last().unwrap().clone();
    assert!(
        newest.0 > copies.last().unwrap().0,
        "{newest:?} {copies:?}\n{}",
        s.log.lock().unwrap()
    );
    let (size, path) = witnessed(w.path()).pop().unwrap();
    assert_eq!((size, std::fs::read_to_string(path).unwrap()), newest);
    // An empty witness proves nothing: it is an error, not a pass.
    let empty = tempfile::tempdir().unwrap();
    let (ok, v) = verify(&s, Some(empty.path()));
    assert!(!ok, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("holds no checkpoint copies"),
        "{v}"
    );
}

#[test]
fn truncation_past_the_last_local_checkpoint_is_caught_by_the_witness() {
    let w = tempfile::tempdir().unwrap();
    let s = populated(w.path(), None);
    let (newest, file) = witnessed(w.path()).pop().unwrap();
    // Drop the newest events and the local checkpoints that covered them.
    let cut = newest - 3;
    sqlite(
        &s.data_dir(),
        &[
            "DROP TRIGGER IF EXISTS audit_no_delete",
            &format!("DELETE FROM audit WHERE seq > {cut}"),
            &format!("DELETE FROM checkpoints WHERE size > {cut}"),
        ]
        .join(";\n"),
    );
    // The log alone looks fine.
    let (ok, v) = verify(&s, None);
    assert!(ok, "the local log cannot tell: {v}");
    // The witness cannot be fooled, and names the checkpoint that proves it.
    let (ok, v) = verify(&s, Some(w.path()));
    assert!(!ok, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("log truncated"), "{e}");
    assert!(e.contains(&format!("at size {newest}")), "{e}");
    assert!(
        e.contains(file.file_name().unwrap().to_str().unwrap()),
        "{e}"
    );
    assert_eq!(v["seq"], cut + 1);
    // An export of the truncated log, checked against the witness with the trusted key.
    let export = s.dir.path().join("audit.jsonl");
    let o = Command::new(BIN)
        .args(["audit", "export", "--data-dir"])
        .arg(s.data_dir())
        .arg("--out")
        .arg(&export)
        .output()
        .unwrap();
    assert!(o.status.success());
    let key = s.data_dir().join("audit-key.pem");
    let o = Command::new(BIN)
        .args(["--json", "audit", "verify", "--file"])
        .arg(&export)
        .arg("--key")
        .arg(&key)
        .arg("--witness")
        .arg(w.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("log truncated"),
        "{v}"
    );
    // Without the trusted key the witness check is refused (the export's own key proves nothing).
    let o = Command::new(BIN)
        .args(["audit", "verify", "--file"])
        .arg(&export)
        .arg("--witness")
        .arg(w.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs --key"));
}

#[test]
fn a_rewrite_with_every_hash_recomputed_is_caught_by_the_witness() {
    let w = tempfile::tempdir().unwrap();
    let s = populated(w.path(), None);
    let copies = witnessed(w.path());
    let k: u64 = sqlite(
        &s.data_dir(),
        "SELECT MAX(seq) FROM audit WHERE kind = 'grant.requested'",
    )
    .trim_matches(|c| "[](),".contains(c))
    .parse()
    .unwrap();
    // Change one reason, recompute every leaf and chain hash from there, and delete the local
    // checkpoints that would show it (what someone with the database file and time can do).
    let script = "import sqlite3,sys,hashlib\n\
        c=sqlite3.connect(sys.argv[1]); k=int(sys.argv[2])\n\
        c.execute('DROP TRIGGER IF EXISTS audit_no_update')\n\
        prev=c.execute('SELECT chain FROM audit WHERE seq=?',(k-1,)).fetchone()[0]\n\
        for seq,body in c.execute('SELECT seq, body FROM audit WHERE seq>=? ORDER BY seq',(k,)).fetchall():\n\
        \x20 body=bytes(body)\n\
        \x20 if seq==k: body=body.replace(b'orders table locked',b'routine maintenance')\n\
        \x20 leaf=hashlib.sha256(b'\\x00'+body).digest(); prev=hashlib.sha256(prev+leaf).digest()\n\
        \x20 c.execute('UPDATE audit SET body=?, leaf=?, chain=? WHERE seq=?',(body,leaf,prev,seq))\n\
        c.execute('DELETE FROM checkpoints WHERE size>=?',(k,))\n\
        c.commit(); c.close()";
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(s.data_dir().join("breakglass.db"))
        .arg(k.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (ok, v) = verify(&s, None);
    assert!(ok, "the local log cannot tell: {v}");
    let (ok, v) = verify(&s, Some(w.path()));
    assert!(!ok, "{v}");
    let e = v["error"].as_str().unwrap();
    // The first witnessed checkpoint that covers the change is named.
    let (first, file) = copies.iter().find(|(size, _)| *size >= k).unwrap();
    assert!(e.contains("log rewritten"), "{e}");
    assert!(e.contains(&format!("at size {first}")), "{e}");
    assert!(
        e.contains(file.file_name().unwrap().to_str().unwrap()),
        "{e}"
    );
    assert!(e.contains("consistency proof"), "{e}");
}

#[test]
fn a_forged_witness_copy_is_reported_as_forged() {
    let w = tempfile::tempdir().unwrap();
    let s = populated(w.path(), None);
    let (size, path) = witnessed(w.path()).remove(0);
    let note = std::fs::read_to_string(&path).unwrap();
    // Claim a different root for the same size (say, to cover up a rewrite).
    let lines: Vec<&str> = note.split('\n').collect();
    let forged = note.replacen(lines[2], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 1);
    let name = format!("checkpoint-{:012}.note", size + 1_000_000);
    std::fs::write(w.path().join(&name), forged).unwrap();
    let (ok, v) = verify(&s, Some(w.path()));
    assert!(!ok, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains(&name) && e.contains("forged or edited"), "{e}");
    // Something that is no checkpoint at all.
    std::fs::remove_file(w.path().join(&name)).unwrap();
    std::fs::write(w.path().join("checkpoint-x.note"), "hello\n").unwrap();
    let (ok, v) = verify(&s, Some(w.path()));
    assert!(!ok);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("is not a checkpoint note"),
        "{v}"
    );
}
