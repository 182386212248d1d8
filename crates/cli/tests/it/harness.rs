//! Test kit: starts the real `breakglass` binary on a loopback port in a temporary data
//! directory and drives it through the real CLI, one config dir per user. TOTP codes come
//! from `oathtool`, never from our own code.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const BIN: &str = env!("CARGO_BIN_EXE_breakglass");
pub const PASSWORD: &str = "correct horse battery staple";

pub const POLICY: &str = r#"
admins: { groups: [security] }
# The flow tests need no target: exec hooks that succeed and print nothing.
resources:
  - name: prod-db
    kind: exec
    grant: ["/bin/true"]
    revoke: ["/bin/true"]
  - { name: bastion, kind: exec, grant: ["/bin/true"], revoke: ["/bin/true"] }
  - { name: short, kind: exec, grant: ["/bin/true"], revoke: ["/bin/true"] }
  - { name: fallback, kind: exec, grant: ["/bin/true"], revoke: ["/bin/true"] }
policies:
  - name: dba-emergency
    resources: [prod-db]
    who: { groups: [oncall] }
    require: { mfa: true, ticket: "^INC-[0-9]+$", min_reason: 15 }
    approval: { mode: auto }
    duration: { default: 30m, max: 2h }
    review: { within: 72h, by: [security] }
  - name: bastion-with-approval
    resources: [bastion]
    who: { users: [alice], groups: [oncall] }
    require: { mfa: true, ticket: "^INC-[0-9]+$" }
    approval: { mode: quorum, count: 1, from: [security], timeout: 10m, on_timeout: deny }
    duration: { default: 15m, max: 1h }
  - name: short-approval
    resources: [short]
    who: { groups: [oncall] }
    require: { mfa: true }
    approval: { mode: quorum, count: 1, from: [security], timeout: 2s, on_timeout: deny }
    duration: { default: 15m, max: 1h }
  - name: fallback-approval
    resources: [fallback]
    who: { groups: [oncall] }
    require: { mfa: true }
    approval: { mode: quorum, count: 1, from: [security], timeout: 2s, on_timeout: auto }
    duration: { default: 15m, max: 1h }
"#;

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Polls `f` until it returns Some or the deadline passes.
pub use breakglass_testkit::wait_for as poll;

pub struct Server {
    pub dir: tempfile::TempDir,
    pub policy_path: PathBuf,
    pub url: String,
    child: Option<Child>,
    pub log: Arc<Mutex<String>>,
    listen: String,
    env: Vec<(String, String)>,
    args: Vec<String>,
    /// Environment for CLI runs against this server (e.g. BREAKGLASS_CA_FILE for HTTPS).
    pub cli_env: Vec<(String, String)>,
}

impl Server {
    pub fn start(policy: &str) -> Server {
        Self::start_with(policy, &[], &[])
    }

    /// Starts with extra environment variables and `serve` arguments.
    pub fn start_with(policy: &str, env: &[(&str, &str)], args: &[&str]) -> Server {
        Self::start_prepared(policy, env, args, |_| {})
    }

    /// Like [`Server::start_with`], calling `prepare` with the data directory's path before
    /// `breakglass init` (which creates it if `prepare` did not).
    pub fn start_prepared(
        policy: &str,
        env: &[(&str, &str)],
        args: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy_path = dir.path().join("policy.yaml");
        std::fs::write(&policy_path, policy).expect("write policy");
        let data = dir.path().join("data");
        prepare(&data);
        let out = Command::new(BIN)
            .args(["init", "--data-dir"])
            .arg(&data)
            .output()
            .expect("run init");
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = Server {
            dir,
            policy_path,
            url: String::new(),
            child: None,
            log: Arc::new(Mutex::new(String::new())),
            listen: "127.0.0.1:0".into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
            cli_env: Vec::new(),
        };
        s.spawn();
        s
    }

    /// The server process id (for /proc checks).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--checkpoint-events",
                "5",
                "--checkpoint-every",
                "1s",
                "--data-dir",
            ])
            .arg(self.data_dir())
            .arg("--policy")
            .arg(&self.policy_path)
            .args(["--listen", &self.listen])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("BREAKGLASS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("breakglass listening on ")
                    && let Some(t) = tx.take()
                {
                    let url = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = t.send(url);
                }
                if let Ok(mut l) = log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "server did not start:\n{}",
                    self.log.lock().map(|l| l.clone()).unwrap_or_default()
                )
            });
        self.listen = url.split("://").nth(1).unwrap_or("").to_string();
        self.url = url;
        self.child = Some(child);
    }

    /// SIGKILL: no graceful shutdown, no final checkpoint.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (final checkpoint written).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// Sets (or with `None` removes) an environment variable for the next start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.into(), v.into()));
        }
    }

    /// Whether the server process has exited by itself within `timeout`.
    pub fn exited_within(&mut self, timeout: Duration) -> bool {
        let Some(c) = self.child.as_mut() else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Serves under `--public-url http://localhost:PORT` from now on (passkeys need a host
    /// name as their RP ID), restarting on the same port; returns that URL for the browser.
    pub fn public_localhost(&mut self) -> String {
        let port = self.listen.rsplit(':').next().unwrap_or("").to_string();
        let public = format!("http://localhost:{port}");
        self.args.push("--public-url".into());
        self.args.push(public.clone());
        self.restart();
        public
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn sighup(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg("-HUP")
                .arg(c.id().to_string())
                .status();
        }
    }

    pub fn add_user(&self, name: &str, groups: &[&str]) {
        let mut args = vec!["admin", "user", "add", name, "--password-stdin"];
        for g in groups {
            args.push("--group");
            args.push(g);
        }
        let out = run_with_stdin(
            BIN,
            &args,
            &["--data-dir", self.data_dir().to_str().unwrap_or("")],
            PASSWORD,
            &[],
        );
        assert!(
            out.status.success(),
            "user add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A logged-in user with a confirmed TOTP authenticator.
    pub fn user(&self, name: &str, groups: &[&str]) -> User {
        self.add_user(name, groups);
        let u = User::new(self, name);
        u.login();
        u.enroll();
        u
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http("GET", &self.url, path, None, None)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn run_with_stdin(
    bin: &str,
    args: &[&str],
    extra: &[&str],
    stdin: &str,
    env: &[(&str, &Path)],
) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
        let _ = i.write_all(b"\n");
    }
    child.wait_with_output().expect("wait")
}

/// Result of one CLI run.
pub struct Run {
    pub ok: bool,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The problem slug of a failed `--json` run (`policy/ticket-mismatch`, `mfa-replayed`, …).
    pub fn slug(&self) -> String {
        self.json["error"]["type"]
            .as_str()
            .and_then(|t| t.rsplit("/problems/").next())
            .unwrap_or("")
            .to_string()
    }
}

pub struct User {
    env: Vec<(String, String)>,
    pub name: String,
    pub config: tempfile::TempDir,
    pub url: String,
    pub secret: Mutex<String>,
    pub last_step: Mutex<i64>,
}

impl User {
    pub fn new(server: &Server, name: &str) -> User {
        User {
            env: server.cli_env.clone(),
            name: name.into(),
            config: tempfile::tempdir().expect("tempdir"),
            url: server.url.clone(),
            secret: Mutex::new(String::new()),
            last_step: Mutex::new(0),
        }
    }

    /// Runs `breakglass --json ARGS` as this user.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_stdin(args, None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        self.run_as(true, args, stdin)
    }

    /// Runs `breakglass ARGS` as this user without `--json`: what a person reads.
    pub fn run_plain(&self, args: &[&str]) -> Run {
        self.run_as(false, args, None)
    }

    /// Sets an environment variable for this user's CLI runs (e.g. `HOME`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    fn run_as(&self, json: bool, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new(BIN);
        if json {
            cmd.arg("--json");
        }
        cmd.arg("--server")
            .arg(&self.url)
            .args(args)
            .env("XDG_CONFIG_HOME", self.config.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn cli");
        if let (Some(mut i), Some(s)) = (child.stdin.take(), stdin) {
            let _ = i.write_all(s.as_bytes());
            let _ = i.write_all(b"\n");
        }
        let out = child.wait_with_output().expect("wait cli");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        Run {
            ok: out.status.success(),
            json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }

    pub fn ok(&self, args: &[&str]) -> Value {
        let r = self.run(args);
        assert!(
            r.ok,
            "`breakglass {}` as {} failed:\n{}{}",
            args.join(" "),
            self.name,
            r.stdout,
            r.stderr
        );
        r.json
    }

    pub fn login(&self) {
        let r = self.run_stdin(
            &["login", "--user", &self.name, "--password-stdin"],
            Some(PASSWORD),
        );
        assert!(r.ok, "login failed: {}{}", r.stdout, r.stderr);
    }

    pub fn enroll(&self) {
        let v = self.ok(&["mfa", "totp", "enroll"]);
        let secret = v["secret_base32"].as_str().expect("secret").to_string();
        *self.secret.lock().unwrap() = secret;
        let code = self.otp();
        self.ok(&["mfa", "totp", "confirm", &code]);
    }

    /// A code for `step` computed by oathtool.
    pub fn code_at_step(&self, step: i64) -> String {
        let secret = self.secret.lock().unwrap().clone();
        let out = Command::new("oathtool")
            .args(["--totp", "-b", "--now"])
            .arg(format!("@{}", step * 30 + 1))
            .arg(&secret)
            .output()
            .expect("oathtool is needed for the tests (apt-get install oathtool)");
        assert!(
            out.status.success(),
            "oathtool failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A fresh, never-used code the server will accept now (steps now-1..=now+1 are valid;
    /// each code is single-use, so we walk forward and wait for the clock when we run out).
    pub fn otp(&self) -> String {
        let mut last = self.last_step.lock().unwrap();
        loop {
            let now = unix_now();
            let cur = now / 30;
            // Keep 3 s away from a step boundary for the oldest accepted step.
            let lo = if now % 30 < 27 { cur - 1 } else { cur };
            let step = (*last + 1).max(lo);
            if step <= cur + 1 {
                *last = step;
                return self.code_at_step(step);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Breaks glass on `resource` with a valid reason, `ticket` and a fresh code; must succeed.
    pub fn break_glass(&self, resource: &str, ticket: &str) -> Value {
        let otp = self.otp();
        self.ok(&[
            "request",
            resource,
            "--reason",
            "orders table locked, checkout down",
            "--ticket",
            ticket,
            "--otp",
            &otp,
        ])
    }

    /// The last TOTP step this user's codes used (a browser test walks on from it).
    pub fn last_step(&self) -> i64 {
        *self.last_step.lock().unwrap()
    }

    /// A code that was already accepted (for replay tests).
    pub fn used_code(&self) -> String {
        let last = *self.last_step.lock().unwrap();
        self.code_at_step(last)
    }
}

/// Writes an executable `/bin/sh` hook (`set -e`) for exec resources; returns its path.
pub fn exec_script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

/// Shell that sets `$id` to the grant id an exec hook receives as JSON on stdin.
pub const GRANT_ID_OF_STDIN: &str =
    "id=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[\"grant_id\"])')";

/// A policy whose one resource, `bastion`, is the sshd on 127.0.0.1:`port` (sessions watch
/// `krl`; `settings` are extra lines of the resource, indented four spaces); oncall may break
/// glass to it without MFA or approval, and security administers.
pub fn bastion_policy(user: &str, port: u16, krl: &Path, settings: &str) -> String {
    format!(
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
{settings}
policies:
  - name: bastion-emergency
    resources: [bastion]
    who: {{ groups: [oncall] }}
    require: {{ mfa: false }}
    approval: {{ mode: auto }}
    duration: {{ default: 30m, max: 2h }}
"#,
        krl = krl.display()
    )
}

/// A minimal HTTP/1.1 client over a raw socket, for hostile-input tests.
pub fn http(
    method: &str,
    base: &str,
    path: &str,
    body: Option<&[u8]>,
    token: Option<&str>,
) -> (u16, String) {
    let mut headers = Vec::new();
    if let Some(t) = token {
        headers.push(("Authorization", format!("Bearer {t}")));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json".to_string()));
    }
    http_raw(method, base, path, &headers, body)
}

/// [`http`] with any headers (Content-Length is added for a body).
pub fn http_raw(
    method: &str,
    base: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
) -> (u16, String) {
    use std::io::Read;
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    let _ = s.write_all(req.as_bytes());
    if let Some(b) = body {
        let _ = s.write_all(b);
    }
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

/// POSTs every (token, path, JSON body) at the same moment (threads released together);
/// returns (status, problem slug or "") per request, in order.
pub fn post_at_once(base: &str, reqs: Vec<(String, String, Value)>) -> Vec<(u16, String)> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(reqs.len()));
    let handles: Vec<_> = reqs
        .into_iter()
        .map(|(tok, path, body)| {
            let (b, url) = (barrier.clone(), base.to_string());
            std::thread::spawn(move || {
                let body = body.to_string();
                b.wait();
                let (code, text) = http("POST", &url, &path, Some(body.as_bytes()), Some(&tok));
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let slug = v["type"]
                    .as_str()
                    .and_then(|t| t.rsplit('/').next())
                    .unwrap_or("")
                    .to_string();
                (code, slug)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The saved session token of a user (for raw HTTP tests).
pub fn token_of(u: &User) -> String {
    let p = u.config.path().join("breakglass").join("session.json");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(p).expect("session file")).expect("json");
    v["token"].as_str().expect("token").to_string()
}

/// A throw-away CA and a `localhost`/127.0.0.1 server certificate it signs (rustls refuses a
/// self-signed CA as an end entity). Returns (ca.pem, cert.pem, key.pem).
pub fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    for args in [
        "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=breakglass-test-ca -keyout ca.key -out ca.pem",
        "req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout key.pem -out leaf.csr",
        "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out cert.pem",
    ] {
        let o = Command::new("openssl")
            .args(args.split(' '))
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

/// Runs `sql` (one or more `;`-separated statements) on the server's SQLite database in a child
/// `python3` process and returns the last statement's rows as Python prints them. A process of
/// its own: the database is closed for certain (files unlocked, WAL index gone) when it returns,
/// so a verifier started next never races a close still in progress.
pub fn sqlite(data_dir: &Path, sql: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nr=[]\n\
             for s in [s for s in sys.argv[2].split(';\\n') if s.strip()]:\n  r=c.execute(s).fetchall()\n\
             c.commit()\nc.close()\nprint(r)",
        )
        .arg(data_dir.join("breakglass.db"))
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sqlite {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// HMAC-SHA256 of `data` under `key`, hex, computed by `openssl dgst` (an independent
/// implementation, to check the server's signatures against).
pub fn openssl_hmac_sha256(key: &str, data: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(data.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or("")
        .to_string()
}
