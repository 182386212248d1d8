//! `cargo run --release -p breakglass-bench [-- --events N]` prints the figures recorded in
//! BENCHMARKS.md. Everything runs against the real SQLite store on disk (durable commits) and,
//! for throughput, the real HTTP server on loopback. `--crash-trials N [--seed S]` runs the crash
//! trials instead (`crash/`, RELIABILITY.md).

use anyhow::{Context, Result};
use breakglass_core::audit::NewEvent;
use breakglass_core::grant::AnyGrant;
use breakglass_core::mfa;
use breakglass_core::time::Timestamp;
use breakglass_server::engine::{
    self, Clock, Engine, EngineConfig, Principal, RequestInput, SystemClock,
};
use breakglass_server::keys::{self, DataDir};
use breakglass_store::{Change, GrantFilter, Session, User};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const POLICY: &str = r#"
admins: { groups: [security] }
resources:
  - name: prod-db
    kind: secret   # no target round trip: this measures breakglass itself
policies:
  - name: dba-emergency
    resources: [prod-db]
    who: { groups: [oncall] }
    require: { mfa: true, ticket: "^INC-[0-9]+$", min_reason: 15 }
    approval: { mode: auto }
    duration: { default: 30m, max: 2h }
"#;

mod crash;
mod faults;
mod gateway;
mod recording;
mod streams;
mod targets;
mod web;

/// Utime + stime of a `/proc/.../stat` line, in seconds (100 ticks a second).
fn stat_secs(stat: &str) -> f64 {
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds this process (the server, and in-process clients) has used.
pub(crate) fn cpu_secs() -> f64 {
    stat_secs(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// CPU seconds per kind of thread of this process (name with its digits dropped, e.g.
/// `sqlx-sqlite-worker-`, `tokio-runtime-worker`).
pub(crate) fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in dir.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let kind: String = comm
            .trim()
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect();
        let secs = stat_secs(&std::fs::read_to_string(p.join("stat")).unwrap_or_default());
        *out.entry(kind).or_insert(0.0) += secs;
    }
    out
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) struct Fixture {
    pub dir: tempfile::TempDir,
    pub engine: Arc<Engine>,
    pub secret: Vec<u8>,
}

/// A data dir with `users` responders, each with a confirmed TOTP secret (the same secret for
/// all, so codes can be computed here) and a session token `tok-<i>`.
async fn fixture(users: usize) -> Result<Fixture> {
    fixture_with(users, POLICY).await
}

/// As [`fixture`], with another policy.
async fn fixture_with(users: usize, policy_text: &str) -> Result<Fixture> {
    fixture_cfg(users, policy_text, EngineConfig::default()).await
}

/// As [`fixture_with`], with engine settings.
async fn fixture_cfg(users: usize, policy_text: &str, config: EngineConfig) -> Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let dd = DataDir::new(dir.path().join("data"));
    keys::init(&dd, SystemClock.now()).await?;
    let (store, keys) = keys::open(&dd).await?;
    let policy = engine::load_policy_text(policy_text, None).map_err(anyhow::Error::msg)?;
    let hash = engine::hash_password("benchmark-password-1").map_err(|e| anyhow::anyhow!("{e}"))?;
    let secret = b"bench-secret-20bytes".to_vec();
    let now = SystemClock.now();
    let mut changes = Vec::new();
    for i in 0..users {
        let name = format!("u{i}");
        changes.push(Change::AddUser(User {
            name: name.clone(),
            password_hash: hash.clone(),
            groups: vec!["oncall".into()],
            disabled: false,
            created_at: now,
        }));
        changes.push(Change::PutTotp {
            user: name.clone(),
            sealed: Some(keys.kek.seal(&format!("totp:{name}"), &secret)),
            confirmed: true,
        });
        changes.push(Change::CreateSession {
            token_hash: engine::token_hash(&format!("tok-{i}")),
            session: Session {
                user: name,
                created_at: now,
                expires_at: now.plus(Duration::from_secs(86_400)),
            },
        });
    }
    store.commit(changes, vec![]).await?;
    let engine = Arc::new(Engine::new(
        store,
        keys,
        policy,
        Arc::new(SystemClock),
        config,
    ));
    Ok(Fixture {
        dir,
        engine,
        secret,
    })
}

fn input(code: String, dur: &str) -> RequestInput {
    RequestInput {
        resource: "prod-db".into(),
        reason: "orders table locked, checkout down".into(),
        ticket: Some("INC-4711".into()),
        duration: Some(dur.into()),
        otp: Some(code),
        ssh_public_key: None,
    }
}

async fn time_to_grant(n: usize) -> Result<()> {
    let f = fixture(n).await?;
    let step = mfa::step_at(SystemClock.now());
    let code = mfa::code_for_step(&f.secret, step);
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let who = Principal {
            name: format!("u{i}"),
            groups: vec!["oncall".into()],
        };
        let t = Instant::now();
        let g = f.engine.request(&who, input(code.clone(), "30m")).await;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        let g = g.map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(g.state == "active");
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "time-to-grant (engine: policy + TOTP + grant + 3 audit events, one durable SQLite commit), n={n}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );
    Ok(())
}

/// The machine's durable-commit limit, measured beside the figure it bounds: single-row
/// `INSERT` commits into a fresh SQLite file on the same disk, with the store's settings (WAL,
/// `synchronous=FULL`), one after another for 2 s (what one request at a time could reach if
/// nothing but its commit cost anything).
fn sqlite_commit_limit(dir: &std::path::Path) -> Result<f64> {
    let db = rusqlite::Connection::open(dir.join("commit-limit.db"))?;
    db.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
         CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
    )?;
    let body = vec![7u8; 300];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        db.execute("INSERT INTO t (body) VALUES (?1)", [&body])?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

async fn activations_per_sec(clients: usize, total: usize) -> Result<()> {
    let f = fixture(total).await?;
    // Serve the fixture's engine over real HTTP on loopback.
    let app = breakglass_server::api::router(f.engine.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let limit = sqlite_commit_limit(f.dir.path())?;
    let code = mfa::code_for_step(&f.secret, mfa::step_at(SystemClock.now()));
    let http = reqwest::Client::new();
    let per = total / clients;
    let (cpu0, threads0) = (cpu_secs(), cpu_by_thread());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = http.clone();
        let code = code.clone();
        let url = format!("http://{addr}/api/v1/grants");
        tasks.push(tokio::spawn(async move {
            for k in 0..per {
                let i = c * per + k;
                let r = http
                    .post(&url)
                    .bearer_auth(format!("tok-{i}"))
                    .json(&serde_json::json!({"resource": "prod-db", "reason": "orders table locked, checkout down", "ticket": "INC-1", "duration": "30m", "otp": code}))
                    .send()
                    .await?;
                anyhow::ensure!(r.status().as_u16() == 201, "status {}: {}", r.status(), r.text().await.unwrap_or_default());
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let n = (per * clients) as f64;
    println!(
        "activations over HTTP, {clients} concurrent clients, {} grants with MFA: {:.0} activations/s ({:.2} s); machine limit in this run: {limit:.0} single-row durable SQLite commits/s (ratio {:.2})",
        per * clients,
        n / secs,
        secs,
        n / secs / limit
    );
    // CPU per activation (server and the in-process HTTP clients) is what bounds the rate on a
    // small machine, and it depends less on what else runs than the rate does.
    let mut by: Vec<(String, f64)> = cpu_by_thread()
        .into_iter()
        .map(|(k, v)| {
            let before = threads0.get(&k).copied().unwrap_or(0.0);
            (k, v - before)
        })
        .filter(|(_, v)| *v > 0.0)
        .collect();
    by.sort_by(|a, b| b.1.total_cmp(&a.1));
    let parts: Vec<String> = by
        .iter()
        .map(|(k, v)| format!("{k} {:.0} µs", v * 1e6 / n))
        .collect();
    println!(
        "  CPU per activation: {:.0} µs in all ({}); load average at the end: {}",
        (cpu_secs() - cpu0) * 1e6 / n,
        parts.join(", "),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    Ok(())
}

async fn expiry_lag(n: usize) -> Result<()> {
    let f = fixture(n).await?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let timer = tokio::spawn(breakglass_server::tasks::expiry_timer(f.engine.clone(), rx));
    let code = mfa::code_for_step(&f.secret, mfa::step_at(SystemClock.now()));
    // Deadlines spread over 2..=11 s.
    for i in 0..n {
        let who = Principal {
            name: format!("u{i}"),
            groups: vec!["oncall".into()],
        };
        let dur = format!("{}s", 2 + (i % 10));
        f.engine
            .request(&who, input(code.clone(), &dur))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let active = f.engine.store.count_grants("active").await?;
        if active == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "grants did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = tx.send(true);
    let _ = timer.await;
    let all = f
        .engine
        .store
        .grants(&GrantFilter {
            user: None,
            states: vec!["expired".into()],
            limit: 1_000_000,
        })
        .await?;
    let mut lag: Vec<f64> = all
        .iter()
        .filter_map(|g| match g {
            AnyGrant::Ended(e) => e
                .state
                .window
                .as_ref()
                .map(|w| (e.state.ended_at.0 - w.expires_at.0) as f64),
            _ => None,
        })
        .collect();
    lag.sort_by(|a, b| a.total_cmp(b));
    println!(
        "expiry lag (deadline → expiry committed), {} grants over 10 s: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lag.len(),
        pct(&lag, 0.5),
        pct(&lag, 0.99),
        pct(&lag, 1.0)
    );
    Ok(())
}

async fn verify_rate(events: u64) -> Result<()> {
    let f = fixture(0).await?;
    let store = f.engine.store.clone();
    let t = Instant::now();
    let batch = 10_000u64;
    let mut written = 0;
    let mut cp = breakglass_server::audit::Checkpointer::load(&f.engine).await?;
    while written < events {
        let n = batch.min(events - written);
        let evs: Vec<NewEvent> = (0..n)
            .map(|i| {
                engine::event(
                    Timestamp(1_700_000_000_000 + (written + i) as i64),
                    "bench.event",
                    Some("u1"),
                    None,
                    serde_json::json!({"i": written + i, "note": "a typical small event body"}),
                )
            })
            .collect();
        store.commit(vec![], evs).await?;
        written += n;
        if written % 100_000 == 0 || written == events {
            cp.catch_up(&f.engine).await?;
            cp.sign(&f.engine, None).await?;
        }
    }
    let gen_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let report = breakglass_server::audit::verify_store(
        store.as_ref(),
        f.engine.keys.audit_public(),
        &f.engine.keys.origin,
    )
    .await?
    .map_err(|e| anyhow::anyhow!("verify failed: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "audit verify (SQLite store, every leaf + link + {} checkpoints): {} events in {:.2} s = {:.0} events/s (writing them took {:.1} s)",
        report.checkpoints,
        report.events,
        secs,
        report.events as f64 / secs,
        gen_secs
    );
    Ok(())
}

/// The value after `flag` on the command line (not another flag).
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .filter(|v| !v.starts_with("--"))
}

/// A flag's unsigned value, or `default` when the flag is absent.
fn num(v: Option<&String>, what: &str, default: u64) -> Result<u64> {
    v.map(|v| v.parse::<u64>())
        .transpose()
        .with_context(|| format!("{what} (an unsigned integer)"))
        .map(|v| v.unwrap_or(default))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let events = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse::<u64>())
        .transpose()
        .context("--events N")?
        .unwrap_or(1_000_000);
    println!(
        "breakglass benchmarks ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    if let Some(i) = args.iter().position(|a| a == "--crash-trials") {
        let value = |flag: &str| flag_value(&args, flag);
        let trials = args
            .get(i + 1)
            .filter(|v| !v.starts_with("--"))
            .map(|v| v.parse::<usize>())
            .transpose()
            .context("--crash-trials N")?
            .unwrap_or(100);
        let seed = match value("--seed") {
            Some(s) => s.parse::<u64>().context("--seed S (an unsigned integer)")?,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        };
        let clients = value("--clients")
            .map(|v| v.parse::<usize>())
            .transpose()
            .context("--clients N")?
            .unwrap_or(4);
        return crash::run(crash::Options {
            trials,
            seed,
            clients: clients.max(1),
            verbose: args.iter().any(|a| a == "--verbose"),
            keep: args.iter().any(|a| a == "--keep"),
        })
        .await;
    }
    if args.iter().any(|a| a == "--node-faults") {
        let value = |flag: &str| flag_value(&args, flag);
        let smoke = args.iter().any(|a| a == "--smoke");
        return faults::run(faults::Options {
            grants: num(
                value("--grants"),
                "--grants N",
                if smoke { 150 } else { 2000 },
            )?,
            smoke,
            seed: num(value("--seed"), "--seed S", 14)?,
            clients: num(value("--clients"), "--clients N", 6)?.max(1) as usize,
            keep: args.iter().any(|a| a == "--keep"),
        })
        .await;
    }
    if let Some(i) = args.iter().position(|a| a == "--soak") {
        let value = |flag: &str| flag_value(&args, flag);
        return crash::soak::run(crash::soak::Options {
            minutes: num(
                args.get(i + 1).filter(|v| !v.starts_with("--")),
                "--soak MINUTES",
                60,
            )?,
            clients: num(value("--clients"), "--clients N", 2)?.max(1) as usize,
            seed: num(value("--seed"), "--seed S", 16)?,
            sample_every: Duration::from_secs(
                num(value("--sample-every"), "--sample-every SECS", 60)?.max(1),
            ),
        })
        .await;
    }
    if args.iter().any(|a| a == "--ssh-sessions-only") {
        return targets::ssh_session_end(100).await;
    }
    if args.iter().any(|a| a == "--activations-only") {
        return activations_per_sec(8, 8000).await;
    }
    if args.iter().any(|a| a == "--gateway-only") {
        return gateway::gateway(10).await;
    }
    if args.iter().any(|a| a == "--web-only") {
        return web::page_weight().await;
    }
    if args.iter().any(|a| a == "--recording-only") {
        return recording::all().await;
    }
    if args.iter().any(|a| a == "--streams-only") {
        return streams::all(100_000).await;
    }
    time_to_grant(2000).await?;
    activations_per_sec(8, 8000).await?;
    expiry_lag(1000).await?;
    verify_rate(events).await?;
    streams::all(100_000).await?;
    web::page_weight().await?;
    if args.iter().any(|a| a == "--no-targets") {
        return Ok(());
    }
    targets::ssh_time_to_credential(1000).await?;
    targets::postgres(200, 100).await?;
    targets::ssh_session_end(100).await?;
    recording::all().await?;
    gateway::gateway(10).await?;
    Ok(())
}
