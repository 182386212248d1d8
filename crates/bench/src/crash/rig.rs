//! The world of a crash trial: a real PostgreSQL cluster and sshd (breakglass-testkit), the
//! webhook receiver, a data directory with seeded users, and the real `breakglass serve`
//! process (the release binary beside this one) that is killed and started again on it.

use super::hook::{self, Hook};
use super::load::token;
use anyhow::{Context, Result, anyhow, bail, ensure};
use breakglass_server::engine::{self, Clock, SystemClock};
use breakglass_server::keys::{self, DataDir};
use breakglass_store::{Change, Session, User};
use breakglass_testkit::pg::Pg;
use breakglass_testkit::sshd::Sshd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub const ADMIN: &str = "auditor";
pub const PG_MANAGED_TAG: &str = breakglass_connectors::postgres::TAG;

pub struct Rig {
    /// Everything of the run (data directory, SSH host, log): removed at the end.
    tmp: Option<tempfile::TempDir>,
    pub bin: PathBuf,
    pub data: PathBuf,
    policy: PathBuf,
    listen: String,
    pub base: String,
    pub pg: Pg,
    pub pg_pool: sqlx::PgPool,
    pub sshd: Sshd,
    pub krl: PathBuf,
    pub ssh_dir: PathBuf,
    pub key: PathBuf,
    pub public_key: String,
    pub hook: Hook,
    pub secret: Vec<u8>,
    child: Option<tokio::process::Child>,
    pub log: PathBuf,
    starts: u32,
}

fn policy_text(hook_url: &str, bin: &Path, ssh_port: u16, krl: &Path) -> String {
    let db = |name: &str| {
        format!(
            "  - name: {name}\n    kind: postgres\n    admin_url_env: BREAKGLASS_PG_ADMIN_URL\n    grant_roles: [app_admin]\n    connection_limit: 2\n    sweep_grace: 1s\n"
        )
    };
    let ssh = |name: &str| {
        format!(
            "  - name: {name}\n    kind: ssh\n    principals: [{}]\n    host: 127.0.0.1\n    port: {ssh_port}\n    session_command: {}\n    host_krl: {}\n    recording: off\n",
            breakglass_testkit::whoami(),
            bin.display(),
            krl.display()
        )
    };
    format!(
        r#"admins: {{ groups: [security] }}
notify: [hook]
sinks:
  - name: hook
    kind: webhook
    url: {hook_url}
    secret_env: CRASH_HOOK_SECRET
    timeout: 2s
resources:
{}{}{}{}policies:
  - name: db-auto
    resources: [db-auto]
    who: {{ groups: [oncall] }}
    require: {{ mfa: true }}
    approval: {{ mode: auto }}
    duration: {{ default: 1m, max: 2h }}
  - name: ssh-auto
    resources: [ssh-auto]
    who: {{ groups: [oncall] }}
    require: {{ mfa: false }}
    approval: {{ mode: auto }}
    duration: {{ default: 1m, max: 2h }}
  - name: db-quorum
    resources: [db-quorum]
    who: {{ groups: [oncall] }}
    require: {{ mfa: false }}
    approval: {{ mode: quorum, count: 1, from: [security], timeout: 8s, on_timeout: deny }}
    duration: {{ default: 1m, max: 2h }}
  - name: ssh-quorum
    resources: [ssh-quorum]
    who: {{ groups: [oncall] }}
    require: {{ mfa: false }}
    approval: {{ mode: quorum, count: 2, from: [security], timeout: 6s, on_timeout: auto }}
    duration: {{ default: 1m, max: 2h }}
"#,
        db("db-auto"),
        db("db-quorum"),
        ssh("ssh-auto"),
        ssh("ssh-quorum"),
    )
}

/// The `breakglass` release binary beside this one (or `BREAKGLASS_BIN`).
fn server_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("BREAKGLASS_BIN") {
        // Absolute: it goes into the certificates' force-command.
        return std::fs::canonicalize(&p)
            .with_context(|| format!("BREAKGLASS_BIN={}", PathBuf::from(&p).display()));
    }
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(|d| d.join("breakglass"))
        .filter(|p| p.exists())
        .context("build the server first: cargo build --release -p breakglass (scripts/crash-trials.sh does)")
}

/// Users straight into the new store (as the other benchmarks do): requesters per client
/// (oncall), approvers and the auditor (security), each with a confirmed TOTP secret and a
/// session token `tok-<name>`. Returns the SSH CA's public line and an empty KRL of it, for the
/// SSH host.
async fn seed_users(
    data: &Path,
    secret: &[u8],
    names: &[(String, &str)],
) -> Result<(String, Vec<u8>)> {
    let (store, keys) = keys::open(&DataDir::new(data)).await?;
    let hash = engine::hash_password("crash-trial-password-1").map_err(|e| anyhow!("{e}"))?;
    let now = SystemClock.now();
    let mut changes = Vec::new();
    for (name, group) in names {
        changes.push(Change::AddUser(User {
            name: name.clone(),
            password_hash: hash.clone(),
            groups: vec![group.to_string()],
            disabled: false,
            created_at: now,
        }));
        changes.push(Change::PutTotp {
            user: name.clone(),
            sealed: Some(keys.kek.seal(&format!("totp:{name}"), secret)),
            confirmed: true,
        });
        changes.push(Change::CreateSession {
            token_hash: engine::token_hash(&token(name)),
            session: Session {
                user: name.clone(),
                created_at: now,
                expires_at: now.plus(Duration::from_secs(7 * 86_400)),
            },
        });
    }
    store.commit(changes, vec![]).await?;
    drop(store);
    let krl = breakglass_connectors::krl::encode(
        &keys.ssh_ca.public_blob(),
        &[],
        0,
        u64::try_from(now.unix_secs()).unwrap_or(0),
        "crash trials: before the first start",
    );
    Ok((keys.ssh_ca.public_line(), krl))
}

impl Rig {
    pub async fn new(requesters: &[Vec<String>], approvers: &[String], hook: Hook) -> Result<Rig> {
        let bin = server_binary()?;
        let tmp = tempfile::tempdir()?;
        let data = tmp.path().join("data");
        let out = std::process::Command::new(&bin)
            .args(["init", "--data-dir"])
            .arg(&data)
            .output()?;
        ensure!(
            out.status.success(),
            "breakglass init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let secret = b"crash-trial-secret-20".to_vec();
        let mut names: Vec<(String, &str)> = requesters
            .iter()
            .flatten()
            .map(|n| (n.clone(), "oncall"))
            .collect();
        names.extend(approvers.iter().map(|n| (n.clone(), "security")));
        names.push((ADMIN.to_string(), "security"));
        let (ca, empty_krl) = seed_users(&data, &secret, &names).await?;

        // PostgreSQL logs its DDL (role creation and drops) beside the server's log.
        let pg_log = tmp.path().join("pg-log");
        std::fs::create_dir_all(&pg_log)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))?;
            std::fs::set_permissions(&pg_log, std::fs::Permissions::from_mode(0o777))?;
        }
        let log_dir = format!("log_directory={}", pg_log.display());
        let pg = Pg::start_with(&[
            "max_connections=300",
            "logging_collector=on",
            &log_dir,
            "log_statement=ddl",
            "log_line_prefix=%m[%p]",
        ]);
        pg.sql("CREATE ROLE app_admin NOLOGIN; CREATE TABLE orders(id int); GRANT ALL ON orders TO app_admin");
        let pg_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&pg.admin_url())
            .await?;

        let ssh_dir = tmp.path().join("ssh");
        std::fs::create_dir_all(&ssh_dir)?;
        let krl = ssh_dir.join("host.krl");
        std::fs::write(&krl, empty_krl)?;
        let ssh_port = breakglass_testkit::free_port();
        let sshd = Sshd::start(&ssh_dir, &ca, &krl, ssh_port);
        let policy = tmp.path().join("policy.yaml");
        std::fs::write(&policy, policy_text(&hook.url, &bin, ssh_port, &krl))?;
        let port = breakglass_testkit::free_port();
        let listen = format!("127.0.0.1:{port}");
        let log = tmp.path().join("server.log");
        let key = ssh_dir.join("id_ed25519");
        breakglass_testkit::sshd::keygen(&key);
        let public_key = std::fs::read_to_string(ssh_dir.join("id_ed25519.pub"))?
            .trim()
            .to_string();
        let mut rig = Rig {
            base: format!("http://{listen}"),
            listen,
            bin,
            data,
            policy,
            pg_pool,
            sshd,
            krl,
            ssh_dir,
            key,
            public_key,
            hook,
            secret,
            child: None,
            log,
            starts: 0,
            pg,
            tmp: Some(tmp),
        };
        rig.start().await?;
        rig.refresh_krl().await?;
        Ok(rig)
    }

    /// Starts `breakglass serve` on the data directory and waits until it answers /healthz.
    pub async fn start(&mut self) -> Result<Duration> {
        ensure!(self.child.is_none(), "the server is already running");
        self.starts += 1;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        use std::io::Write;
        writeln!(log, "===== crash trials: start {} =====", self.starts)?;
        let t = Instant::now();
        let child = tokio::process::Command::new(&self.bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--policy")
            .arg(&self.policy)
            .args(["--listen", &self.listen])
            .args(["--sweep-every", "1s", "--alert-backoff", "1s"])
            .args(["--alert-lease", "5s", "--checkpoint-events", "100"])
            .args(["--checkpoint-every", "2s"])
            .env("CRASH_HOOK_SECRET", hook::SECRET)
            .env("BREAKGLASS_PG_ADMIN_URL", self.pg.admin_url())
            .env("BREAKGLASS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(0)
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = http
                .get(format!("{}/healthz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return Ok(t.elapsed());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                self.child = None;
                bail!("the server exited at start ({st}):\n{}", self.log_tail(20));
            }
            ensure!(
                Instant::now() < deadline,
                "the server did not answer /healthz within 60 s:\n{}",
                self.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Keeps the run's files (data directory, server log, SSH host) after the end; returns
    /// where they are.
    pub fn keep_files(&mut self) -> Option<PathBuf> {
        self.tmp.take().map(|t| t.keep())
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The running server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// SIGKILL: no shutdown of any kind.
    pub async fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.start_kill()?;
            c.wait().await?;
        }
        Ok(())
    }

    /// SIGTERM and wait (the end of the run).
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                let _ = tokio::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()
                    .await;
            }
            if tokio::time::timeout(Duration::from_secs(20), c.wait())
                .await
                .is_err()
            {
                c.start_kill()?;
                c.wait().await?;
            }
        }
        Ok(())
    }

    /// Fetches the server's KRL and installs it for sshd atomically (what the hosts' cron
    /// line does); returns its bytes.
    pub async fn refresh_krl(&self) -> Result<Vec<u8>> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()?;
        let resp = http
            .get(format!("{}/api/v1/ssh/krl", self.base))
            .send()
            .await?;
        ensure!(resp.status().is_success(), "KRL: {}", resp.status());
        let bytes = resp.bytes().await?.to_vec();
        let tmp = self.krl.with_extension("krl.new");
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &self.krl)?;
        Ok(bytes)
    }

    /// `breakglass audit verify --data-dir` (the server must be stopped): Ok(None) when it
    /// passes, Ok(Some(why)) when it fails.
    pub async fn verify(&self) -> Result<Option<String>> {
        let out = tokio::process::Command::new(&self.bin)
            .args(["--json", "audit", "verify", "--data-dir"])
            .arg(&self.data)
            .output()
            .await?;
        if out.status.success() {
            return Ok(None);
        }
        Ok(Some(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }

    /// Every alert in the outbox (dedup key, state), read from the stopped server's database:
    /// the API lists only the newest 500.
    pub async fn outbox(&self) -> Result<Vec<(String, String)>> {
        use sqlx::{ConnectOptions, Connection};
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(self.data.join("breakglass.db"))
            .create_if_missing(false)
            .connect()
            .await?;
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT dedup_key, state FROM alerts ORDER BY id")
                .fetch_all(&mut conn)
                .await?;
        conn.close().await?;
        Ok(rows)
    }

    /// Roles at PostgreSQL of breakglass's naming scheme: see [`pg_roles`].
    pub async fn pg_roles(&self) -> Result<Vec<(String, String)>> {
        pg_roles(&self.pg_pool).await
    }
}

/// Roles at PostgreSQL of breakglass's naming scheme (`bg_…`): (role, grant id from its tag,
/// or `untagged`).
pub async fn pg_roles(pool: &sqlx::PgPool) -> Result<Vec<(String, String)>> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE starts_with(rolname, 'bg_')",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, comment)| {
            // No one else here makes `bg_` roles: an untagged one would be ours, half made.
            let grant = comment
                .filter(|c| c.starts_with(PG_MANAGED_TAG))
                .and_then(|c| {
                    c.split_whitespace()
                        .find_map(|w| w.strip_prefix("grant="))
                        .map(String::from)
                })
                .unwrap_or_else(|| "untagged".to_string());
            (name, grant)
        })
        .collect())
}
