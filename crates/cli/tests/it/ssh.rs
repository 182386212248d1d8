//! SSH certificates against a real OpenSSH server (Debian's openssh-server) on a loopback port:
//! sshd trusts breakglass's CA and reads breakglass's KRL; logins work during the grant, are
//! refused after expiry and after early revocation once the host refreshed its KRL, and a live
//! session is closed at expiry by the certificate's force-command (`breakglass session`).

use crate::harness::*;
use breakglass_testkit::sshd::{Sshd, keygen};
use breakglass_testkit::{free_port, whoami};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn request(u: &User, key: &Path, dur: &str) -> serde_json::Value {
    u.ok(&[
        "request",
        "bastion",
        "--reason",
        "root shell needed to restart the stuck replica",
        "--for",
        dur,
        "--ssh-key",
        &format!("{}.pub", key.display()),
    ])
}

/// What both tests start from: a directory, the local user (the certificates' principal), a
/// free port for sshd, `dir/<host_krl>` (the KRL the sessions watch), and a server whose one
/// resource, `bastion`, is that sshd on 127.0.0.1; oncall (alice, returned last) may break
/// glass to it without MFA or approval, and security administers.
fn bastion(host_krl: &str) -> (tempfile::TempDir, String, u16, PathBuf, Server, User) {
    let user = whoami();
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let krl = tmp.path().join(host_krl);
    let policy = bastion_policy(&user, port, &krl, "");
    let server = Server::start(&policy);
    let alice = server.user("alice", &["oncall"]);
    (tmp, user, port, krl, server, alice)
}

/// What the host's cron/timer does: `breakglass ssh krl --out FILE`.
fn refresh_krl(u: &User, krl: &Path) {
    u.ok(&["ssh", "krl", "--out", &krl.display().to_string()]);
}

#[test]
fn ssh_certificates_work_during_the_grant_and_not_after() {
    let (tmp, user, port, krl, server, alice) = bastion("revoked.krl");
    let dir = tmp.path();
    let sec = server.user("sam", &["security"]);
    // The host: CA key and an (empty) KRL from the server, as the docs tell operators to do.
    let ca = alice.ok(&["ssh", "ca-key"]);
    let ca_line = ca["public_key"].as_str().unwrap().to_string();
    assert!(ca_line.starts_with("ssh-ed25519 "), "{ca_line}");
    refresh_krl(&alice, &krl);
    let sshd = Sshd::start(dir, &ca_line, &krl, port);

    // An SSH resource without a key says how to give one, and grants nothing.
    let r = alice.run(&[
        "request",
        "bastion",
        "--reason",
        "root shell needed to restart the stuck replica",
        "--ssh-key",
        "/nonexistent/id.pub",
    ]);
    assert!(
        !r.ok && (r.stderr + &r.stdout).contains("--ssh-key"),
        "{}",
        r.stdout
    );

    // 1. Login works during the grant; the certificate is written beside the key.
    let k1 = dir.join("id1");
    keygen(&k1);
    let g1 = request(&alice, &k1, "1h");
    let id1 = g1["id"].as_str().unwrap().to_string();
    let cred = &g1["credential"];
    assert_eq!(
        cred["path"].as_str().unwrap(),
        format!("{}-cert.pub", k1.display())
    );
    assert!(
        cred["certificate"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519-cert-v01@openssh.com ")
    );
    let info = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(format!("{}-cert.pub", k1.display()))
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains(&format!("grant={id1}")) && info.contains("user=alice"),
        "{info}"
    );
    assert!(
        info.contains("permit-pty") && !info.contains("permit-agent-forwarding"),
        "{info}"
    );
    assert!(info.contains("force-command"), "{info}");
    let out = sshd.ssh(
        &k1,
        &user,
        "echo logged-in-as-$(id -un) grant=$BREAKGLASS_GRANT",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("logged-in-as-{user} grant={id1}")),
        "login during the grant failed: {stdout}{}\nsshd: {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&sshd.log).unwrap_or_default()
    );
    // Status shows the serial, never the certificate.
    let st = alice.ok(&["status", &id1]);
    assert_eq!(st["credential_status"]["serial"], cred["serial"]);
    assert!(st.get("credential").is_none() || st["credential"].is_null());
    // `breakglass ssh GRANT -- cmd` runs ssh with the grant's certificate.
    let out = Command::new(BIN)
        .args(["--server", &server.url, "ssh", &id1, "--ssh-key"])
        .arg(format!("{}.pub", k1.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
        ])
        .args(["--", "echo", "via-breakglass-ssh"])
        .env("XDG_CONFIG_HOME", alice.config.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("via-breakglass-ssh"),
        "breakglass ssh: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // 2. Early revocation: refused once the host has refreshed its KRL; others unaffected.
    let k2 = dir.join("id2");
    keygen(&k2);
    let g2 = request(&alice, &k2, "1h");
    let id2 = g2["id"].as_str().unwrap().to_string();
    assert!(sshd.ssh(&k2, &user, "true").status.success());
    sec.login();
    alice.ok(&["revoke", &id2, "--reason", "done early"]);
    poll(
        "the revocation to be confirmed",
        Duration::from_secs(20),
        || (alice.ok(&["status", &id2])["credential_status"]["state"] == "revoked").then_some(()),
    );
    refresh_krl(&alice, &sshd.krl);
    let q = Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(&krl)
        .arg(format!("{}-cert.pub", k2.display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&q.stdout).contains("REVOKED"),
        "ssh-keygen -Q: {}",
        String::from_utf8_lossy(&q.stdout)
    );
    let out = sshd.ssh(&k2, &user, "true");
    assert!(!out.status.success(), "a revoked certificate still logs in");
    assert!(
        sshd.ssh(&k1, &user, "true").status.success(),
        "an unrevoked certificate was refused"
    );

    // 3. A live session is closed at expiry; logins are refused afterwards.
    let k3 = dir.join("id3");
    keygen(&k3);
    let g3 = request(&alice, &k3, "6s");
    let id3 = g3["id"].as_str().unwrap().to_string();
    let mut live = sshd
        .ssh_cmd(&k3, &user, "echo session-open; sleep 600")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = poll(
        "the live session to be closed at expiry",
        Duration::from_secs(30),
        || live.try_wait().unwrap(),
    );
    let out = live.wait_with_output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        o.contains("session-open"),
        "the session never opened: {o}{e}"
    );
    assert!(
        !status.success() && e.contains(&format!("grant {id3} expired")),
        "{status:?} {o}{e}"
    );
    assert!(
        unix_now() >= g3["expires_at_ms"].as_i64().unwrap_or(0) / 1000,
        "closed before expiry"
    );
    let out = sshd.ssh(&k3, &user, "true");
    assert!(
        !out.status.success(),
        "an expired certificate still logs in"
    );
    let _ = id3;
}

/// `breakglass session` fails closed on the KRL it watches (`--krl`, the resource's
/// `host_krl`): missing or corrupt, no session starts, and a live one ends. Here the session
/// watches its own copy, so sshd (which refuses every key when its RevokedKeys file is bad)
/// still lets the login through to the force-command.
#[test]
fn ssh_sessions_fail_closed_when_the_host_krl_is_missing_or_corrupt() {
    let (tmp, user, port, krl, _server, alice) = bastion("session.krl");
    let dir = tmp.path();
    let sshd_krl = dir.join("revoked.krl");
    let ca = alice.ok(&["ssh", "ca-key"]);
    refresh_krl(&alice, &sshd_krl);
    refresh_krl(&alice, &krl);
    let sshd = Sshd::start(dir, ca["public_key"].as_str().unwrap(), &sshd_krl, port);
    let key = dir.join("id");
    keygen(&key);
    request(&alice, &key, "1h");
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).to_string();
    // Written atomically, as a refresher would (rename over the file).
    let replace = |bytes: &[u8]| {
        let t = dir.join("session.krl.tmp");
        std::fs::write(&t, bytes).unwrap();
        std::fs::rename(&t, &krl).unwrap();
    };
    let good = std::fs::read(&krl).unwrap();
    assert!(sshd.ssh(&key, &user, "true").status.success());

    // Corrupt, then missing: refused at login, saying which file and how to fix it.
    replace(b"this is not a KRL");
    let out = sshd.ssh(&key, &user, "echo should-not-run");
    let e = stderr(&out);
    assert!(!out.status.success(), "a session started on a corrupt KRL");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("should-not-run"));
    assert!(
        e.contains(&krl.display().to_string())
            && e.contains("not a valid OpenSSH KRL")
            && e.contains("breakglass ssh krl --out"),
        "{e}"
    );
    std::fs::remove_file(&krl).unwrap();
    let out = sshd.ssh(&key, &user, "echo should-not-run");
    let e = stderr(&out);
    assert!(
        !out.status.success() && e.contains("cannot read the host KRL"),
        "{e}"
    );
    replace(&good);
    assert!(sshd.ssh(&key, &user, "true").status.success());

    // A live session ends when its KRL turns to garbage, and when it disappears.
    type Break<'a> = &'a dyn Fn();
    let garbage = || replace(b"\x00\x01garbage");
    let delete = || std::fs::remove_file(&krl).unwrap();
    for (n, (breakit, says)) in [
        (&garbage as Break, "not a valid OpenSSH KRL"),
        (&delete as Break, "cannot read the host KRL"),
    ]
    .into_iter()
    .enumerate()
    {
        replace(&good);
        let marker = dir.join(format!("opened-{n}"));
        let mut live = sshd
            .ssh_cmd(
                &key,
                &user,
                &format!("touch {}; sleep 600", marker.display()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        poll("the live session to open", Duration::from_secs(20), || {
            marker.exists().then_some(())
        });
        breakit();
        let status = poll(
            "the live session to be closed",
            Duration::from_secs(20),
            || live.try_wait().unwrap(),
        );
        let e = stderr(&live.wait_with_output().unwrap());
        assert!(
            !status.success() && e.contains("cannot be checked any more") && e.contains(says),
            "{status:?} {e}"
        );
    }
}

/// A new user has no `~/.ssh/id_ed25519.pub`: requesting an SSH resource creates a key pair of
/// breakglass's own (private 0600) in the CLI's config directory, says where, and
/// `breakglass ssh GRANT_ID` finds it and logs in with it. A non-SSH request creates nothing.
#[test]
fn a_user_without_an_ssh_key_gets_one_of_breakglass_own() {
    use std::os::unix::fs::PermissionsExt;
    let user = whoami();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let krl = dir.join("revoked.krl");
    let policy = format!(
        r#"
admins: {{ groups: [security] }}
resources:
  - name: bastion
    kind: ssh
    principals: [{user}]
    host: 127.0.0.1
    port: {port}
    session_command: {BIN}
    host_krl: {krl}
  - {{ name: db, kind: exec, grant: ["/bin/true"], revoke: ["/bin/true"] }}
policies:
  - name: emergency
    resources: [bastion, db]
    who: {{ groups: [oncall] }}
    require: {{ mfa: false }}
    approval: {{ mode: auto }}
    duration: {{ default: 30m, max: 2h }}
"#,
        krl = krl.display()
    );
    let server = Server::start(&policy);
    let mut alice = server.user("alice", &["oncall"]);
    // A home without ~/.ssh, as on a fresh account.
    let home = dir.join("home");
    std::fs::create_dir(&home).unwrap();
    alice.set_env("HOME", home.to_str().unwrap());
    let ca = alice.ok(&["ssh", "ca-key"]);
    refresh_krl(&alice, &krl);
    let sshd = Sshd::start(dir, ca["public_key"].as_str().unwrap(), &krl, port);
    let own = alice.config.path().join("breakglass").join("ssh");
    let reason = "root shell needed to restart the stuck replica";

    let r = alice.run(&["request", "db", "--reason", reason]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(!own.exists(), "a key was created for a non-SSH resource");

    let r = alice.run(&["request", "bastion", "--reason", reason]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let private = own.join("id_ed25519");
    let public = own.join("id_ed25519.pub");
    assert!(
        r.stderr.contains(&private.display().to_string()) && r.stderr.contains("0600"),
        "the message does not say where the key is: {}",
        r.stderr
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&private), 0o600);
    assert_eq!(mode(&own), 0o700);
    // OpenSSH reads the pair: the public half derived from the private key is the .pub file.
    let derived = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&private)
        .output()
        .unwrap();
    assert!(derived.status.success(), "{derived:?}");
    let pub_text = std::fs::read_to_string(&public).unwrap();
    assert!(pub_text.starts_with("ssh-ed25519 "), "{pub_text}");
    assert_eq!(
        String::from_utf8_lossy(&derived.stdout)
            .split_whitespace()
            .nth(1),
        pub_text.split_whitespace().nth(1)
    );
    assert_eq!(
        r.json["credential"]["path"].as_str().unwrap(),
        format!("{}-cert.pub", private.display())
    );
    let id = r.json["id"].as_str().unwrap().to_string();

    // `breakglass ssh GRANT_ID`, no --ssh-key: it finds breakglass's key and logs in with it.
    let out = alice.run_plain(&[
        "ssh",
        &id,
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "--",
        "echo",
        "via-breakglass-own-key",
    ]);
    assert!(
        out.stdout.contains("via-breakglass-own-key"),
        "breakglass ssh: {}{}\nsshd: {}",
        out.stdout,
        out.stderr,
        std::fs::read_to_string(&sshd.log).unwrap_or_default()
    );

    // The next request uses the same key and says nothing about creating one.
    let before = std::fs::read(&private).unwrap();
    let r = alice.run(&["request", "bastion", "--reason", reason]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("created"), "{}", r.stderr);
    assert_eq!(std::fs::read(&private).unwrap(), before);
}
