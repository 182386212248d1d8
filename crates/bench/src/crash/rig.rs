//! The world of a crash trial: a real PostgreSQL cluster and sshd (breakglass-testkit), the
//! webhook receiver, a data directory with seeded users, and the real `breakglass serve`
//! process (the release binary beside this one) that is killed and started again on it. For
//! the node-fault runs the rig has several nodes on one store in a second PostgreSQL cluster,
//! each node logging in with its own role there (so one node alone can be cut off).

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
    policy: PathBuf,
    pub nodes: Vec<Node>,
    /// The nodes' shared store (node-fault runs); `None`: node 0 alone on SQLite.
    pub store: Option<StoreDb>,
    pub pg: Pg,
    pub pg_pool: sqlx::PgPool,
    pub sshd: Sshd,
    pub krl: PathBuf,
    pub ssh_dir: PathBuf,
    pub key: PathBuf,
    pub public_key: String,
    pub hook: Hook,
    pub secret: Vec<u8>,
}

/// The store's own PostgreSQL cluster: database `breakglass` owned by role `bgstore`; node `i`
/// logs in as `node{i}` (a member whose sessions act as `bgstore`).
pub struct StoreDb {
    pub pg: Pg,
    /// As the cluster's superuser, on the `breakglass` database.
    pub pool: sqlx::PgPool,
}

impl StoreDb {
    fn start(nodes: usize) -> Result<StoreDb> {
        let pg = Pg::start_with(&["max_connections=200", "track_commit_timestamp=on"]);
        pg.sql("CREATE ROLE bgstore NOLOGIN");
        pg.sql("CREATE DATABASE breakglass OWNER bgstore");
        for i in 0..nodes {
            pg.sql(&format!(
                "CREATE ROLE node{i} LOGIN PASSWORD 'node{i}-pw' IN ROLE bgstore; \
                 ALTER ROLE node{i} SET role = 'bgstore'"
            ));
        }
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy(&Self::admin_db_url(&pg))?;
        Ok(StoreDb { pg, pool })
    }

    fn admin_db_url(pg: &Pg) -> String {
        let admin = pg.admin_url();
        format!(
            "{}/breakglass",
            admin.strip_suffix("/postgres").unwrap_or(&admin)
        )
    }

    /// Node `i`'s database URL (its own login role).
    pub fn url(&self, i: usize) -> String {
        format!(
            "postgres://node{i}:node{i}-pw@127.0.0.1:{}/breakglass",
            self.pg.port
        )
    }

    /// Cuts node `i` off: its role may not log in and its sessions are ended.
    pub async fn cut_off(&self, i: usize) -> Result<()> {
        sqlx::query(&format!("ALTER ROLE node{i} NOLOGIN"))
            .execute(&self.pool)
            .await?;
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
            .bind(format!("node{i}"))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Lets node `i` log in again.
    pub async fn restore(&self, i: usize) -> Result<()> {
        sqlx::query(&format!("ALTER ROLE node{i} LOGIN"))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// One `breakglass serve` process of the rig and its data directory.
pub struct Node {
    pub data: PathBuf,
    listen: String,
    pub base: String,
    child: Option<tokio::process::Child>,
    pub log: PathBuf,
    starts: u32,
    /// SIGSTOPped: running, but answers nothing.
    pub paused: bool,
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
    /// `nodes` = 0: one node on the embedded SQLite store; otherwise that many nodes on one
    /// PostgreSQL store (the same key-encryption key, copied as an operator would).
    pub async fn new(
        requesters: &[Vec<String>],
        approvers: &[String],
        hook: Hook,
        nodes: usize,
    ) -> Result<Rig> {
        let bin = server_binary()?;
        let tmp = tempfile::tempdir()?;
        let store = if nodes > 0 {
            Some(StoreDb::start(nodes)?)
        } else {
            None
        };
        let count = nodes.max(1);
        let datas: Vec<PathBuf> = (0..count)
            .map(|i| {
                if store.is_some() {
                    tmp.path().join(format!("node{i}"))
                } else {
                    tmp.path().join("data")
                }
            })
            .collect();
        for (i, data) in datas.iter().enumerate() {
            if let Some(db) = &store {
                std::fs::create_dir_all(data)?;
                std::fs::write(data.join("database.url"), db.url(i))?;
                if i > 0 {
                    let keys = data.join("keys");
                    std::fs::create_dir_all(&keys)?;
                    std::fs::copy(datas[0].join("keys/kek.key"), keys.join("kek.key"))?;
                }
            }
            let out = std::process::Command::new(&bin)
                .args(["init", "--data-dir"])
                .arg(data)
                .output()?;
            ensure!(
                out.status.success(),
                "breakglass init (node {i}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let data = datas[0].clone();
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
        let key = ssh_dir.join("id_ed25519");
        breakglass_testkit::sshd::keygen(&key);
        let public_key = std::fs::read_to_string(ssh_dir.join("id_ed25519.pub"))?
            .trim()
            .to_string();
        let nodes = datas
            .into_iter()
            .enumerate()
            .map(|(i, data)| {
                let listen = format!("127.0.0.1:{}", breakglass_testkit::free_port());
                let log = if count == 1 {
                    tmp.path().join("server.log")
                } else {
                    tmp.path().join(format!("node{i}.log"))
                };
                Node {
                    base: format!("http://{listen}"),
                    listen,
                    data,
                    child: None,
                    log,
                    starts: 0,
                    paused: false,
                }
            })
            .collect();
        let mut rig = Rig {
            bin,
            policy,
            nodes,
            store,
            pg_pool,
            sshd,
            krl,
            ssh_dir,
            key,
            public_key,
            hook,
            secret,
            pg,
            tmp: Some(tmp),
        };
        rig.start().await?;
        rig.refresh_krl().await?;
        Ok(rig)
    }

    /// Starts every node that is not running.
    pub async fn start(&mut self) -> Result<Duration> {
        let mut longest = Duration::ZERO;
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                longest = longest.max(self.start_node(i).await?);
            }
        }
        Ok(longest)
    }

    /// Starts `breakglass serve` as node `i` and waits until it answers /healthz.
    pub async fn start_node(&mut self, i: usize) -> Result<Duration> {
        let target_url = self.pg.admin_url();
        let (bin, policy) = (self.bin.clone(), self.policy.clone());
        let n = &mut self.nodes[i];
        ensure!(n.child.is_none(), "node {i} is already running");
        n.starts += 1;
        n.paused = false;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)?;
        use std::io::Write;
        writeln!(log, "===== crash trials: start {} =====", n.starts)?;
        let t = Instant::now();
        let child = tokio::process::Command::new(&bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(&n.data)
            .arg("--policy")
            .arg(&policy)
            .args(["--listen", &n.listen])
            .args(["--sweep-every", "1s", "--alert-backoff", "1s"])
            .args(["--alert-lease", "5s", "--checkpoint-events", "100"])
            .args(["--checkpoint-every", "2s"])
            .env("CRASH_HOOK_SECRET", hook::SECRET)
            .env("BREAKGLASS_PG_ADMIN_URL", target_url)
            .env("BREAKGLASS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        n.child = Some(child);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(0)
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = http
                .get(format!("{}/healthz", n.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return Ok(t.elapsed());
            }
            if let Some(c) = n.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                n.child = None;
                bail!(
                    "node {i} exited at start ({st}):\n{}",
                    self.nodes[i].log_tail(20)
                );
            }
            ensure!(
                Instant::now() < deadline,
                "node {i} did not answer /healthz within 60 s:\n{}",
                n.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The first node running and not paused (the checks read through it).
    pub fn base(&self) -> &str {
        self.nodes
            .iter()
            .find(|n| n.child.is_some() && !n.paused)
            .unwrap_or(&self.nodes[0])
            .base
            .as_str()
    }

    /// Node 0's data directory (the one node of a crash trial).
    pub fn data(&self) -> &Path {
        &self.nodes[0].data
    }

    /// Node 0's log.
    pub fn log(&self) -> &Path {
        &self.nodes[0].log
    }

    /// Keeps the run's files (data directory, server log, SSH host) after the end; returns
    /// where they are.
    pub fn keep_files(&mut self) -> Option<PathBuf> {
        self.tmp.take().map(|t| t.keep())
    }

    /// Node 0's process id.
    pub fn pid(&self) -> Option<u32> {
        self.nodes[0].pid()
    }

    /// SIGKILL every node: no shutdown of any kind.
    pub async fn kill(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.kill_node(i).await?;
        }
        Ok(())
    }

    /// SIGKILL node `i`.
    pub async fn kill_node(&mut self, i: usize) -> Result<()> {
        let n = &mut self.nodes[i];
        if let Some(mut c) = n.child.take() {
            c.start_kill()?;
            c.wait().await?;
        }
        n.paused = false;
        Ok(())
    }

    /// SIGSTOP (`pause`) or SIGCONT node `i`.
    pub async fn pause_node(&mut self, i: usize, pause: bool) -> Result<()> {
        let n = &mut self.nodes[i];
        let pid = n.pid().context("the node is not running")?;
        let st = tokio::process::Command::new("kill")
            .arg(if pause { "-STOP" } else { "-CONT" })
            .arg(pid.to_string())
            .status()
            .await?;
        ensure!(st.success(), "kill -STOP/-CONT {pid} failed");
        n.paused = pause;
        Ok(())
    }

    /// SIGTERM every node and wait (the end of the run).
    pub async fn stop(&mut self) -> Result<()> {
        for n in &mut self.nodes {
            n.stop().await?;
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
            .get(format!("{}/api/v1/ssh/krl", self.base()))
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
            .arg(self.data())
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
        if let Some(db) = &self.store {
            return Ok(
                sqlx::query_as("SELECT dedup_key, state FROM alerts ORDER BY id")
                    .fetch_all(&db.pool)
                    .await?,
            );
        }
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(self.data().join("breakglass.db"))
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

impl Node {
    /// The last `n` lines of the node's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// SIGTERM (after SIGCONT if paused) and wait; SIGKILL after 20 s.
    async fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                for sig in ["-CONT", "-TERM"] {
                    let _ = tokio::process::Command::new("kill")
                        .arg(sig)
                        .arg(pid.to_string())
                        .status()
                        .await;
                }
            }
            if tokio::time::timeout(Duration::from_secs(20), c.wait())
                .await
                .is_err()
            {
                c.start_kill()?;
                c.wait().await?;
            }
        }
        self.paused = false;
        Ok(())
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
