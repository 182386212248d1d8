//! Crash trials: `breakglass-bench --crash-trials N [--seed S]`.
//!
//! The real server binary runs on the embedded SQLite store with credentials at a real
//! PostgreSQL (a role per grant) and a real sshd (certificates, KRL), and alerts to a webhook
//! receiver run here. A few clients put a mixed load on it (auto and quorum requests,
//! approvals, pickups, revocations, extensions, grants of seconds that expire on their own)
//! and the server is killed with SIGKILL at a random moment, N times, and started again on the
//! same data directory. Each kill is followed, with the server stopped, by `audit verify
//! --data-dir` and a reading of its whole alert outbox; after the restart the checks in
//! `checks` and `at_targets` run from outside. In one trial of five the kill falls early,
//! while the restarted server is still catching up (sweeps, revocations, alert retries); the
//! checks then run after the next restart.

pub(crate) mod api;
pub(crate) mod at_targets;
pub(crate) mod checks;
pub(crate) mod hook;
pub(crate) mod load;
pub(crate) mod rig;
pub(crate) mod rng;
mod rules;
pub mod soak;

use anyhow::{Result, bail};
use checks::{Findings, Memory};
use load::Load;
use rng::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct Options {
    pub trials: usize,
    pub seed: u64,
    pub clients: usize,
    /// Print every finding and note of every round.
    pub verbose: bool,
    /// Keep the data directory, server log and SSH host files even when all is well.
    pub keep: bool,
}

#[derive(Default)]
struct Totals {
    rounds: usize,
    kills_in_load: usize,
    kills_in_recovery: usize,
    orphans: Vec<String>,
    lost_alerts: Vec<String>,
    events_without_changes: Vec<String>,
    grants_without_events: Vec<String>,
    acked_lost: Vec<String>,
    verify_failures: Vec<String>,
    notes: Vec<String>,
    grants_checked: usize,
    krl_certs_checked: usize,
    ssh_refusals: usize,
    ssh_control_logins: usize,
    restart_ms: Vec<f64>,
}

impl Totals {
    fn add(&mut self, trial: usize, f: Findings, verbose: bool) {
        self.rounds += 1;
        let tag = |v: Vec<String>| {
            v.into_iter()
                .map(move |s| format!("[after kill {trial}] {s}"))
        };
        for (what, list) in [
            ("orphan", &f.orphans),
            ("lost alert", &f.lost_alerts),
            ("event without change", &f.events_without_changes),
            ("grant without events", &f.grants_without_events),
            ("acknowledged change lost", &f.acked_lost),
        ] {
            for l in list {
                eprintln!("  FINDING ({what}) after kill {trial}: {l}");
            }
        }
        if verbose {
            for n in &f.notes {
                eprintln!("  note after kill {trial}: {n}");
            }
        }
        self.orphans.extend(tag(f.orphans));
        self.lost_alerts.extend(tag(f.lost_alerts));
        self.events_without_changes
            .extend(tag(f.events_without_changes));
        self.grants_without_events
            .extend(tag(f.grants_without_events));
        self.acked_lost.extend(tag(f.acked_lost));
        self.notes.extend(tag(f.notes));
        self.grants_checked += f.grants_checked;
        self.krl_certs_checked += f.krl_certs_checked;
        self.ssh_refusals += f.ssh_refusals;
        self.ssh_control_logins += f.ssh_control_logins;
    }

    fn failures(&self) -> usize {
        self.orphans.len()
            + self.lost_alerts.len()
            + self.events_without_changes.len()
            + self.grants_without_events.len()
            + self.acked_lost.len()
            + self.verify_failures.len()
    }
}

/// Samples the tagged roles at PostgreSQL every 100 ms until `stop`.
pub(crate) async fn sample_roles(
    pool: sqlx::PgPool,
    stop: Arc<AtomicBool>,
) -> BTreeMap<String, String> {
    let mut seen = BTreeMap::new();
    while !stop.load(Ordering::SeqCst) {
        if let Ok(roles) = rig::pg_roles(&pool).await {
            seen.extend(roles);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

/// The rig (server, PostgreSQL, sshd, webhook receiver) with `clients` clients' users seeded,
/// and the load they share.
pub(crate) async fn start_rig(rng: &Rng, clients: usize) -> Result<(rig::Rig, Arc<Load>)> {
    start_nodes(rng, clients, 0, 0, false).await
}

/// [`start_rig`] with `nodes` nodes on a PostgreSQL store (0: one on SQLite) and `extra`
/// requesters more (a list of 30 each) for callers' own clients; `short`: grants of seconds.
pub(crate) async fn start_nodes(
    rng: &Rng,
    clients: usize,
    extra: usize,
    nodes: usize,
    short: bool,
) -> Result<(rig::Rig, Arc<Load>)> {
    let hook = hook::Hook::start(rng.fork(1_000_000)).await?;
    let requesters: Vec<Vec<String>> = (0..clients + extra)
        .map(|c| (0..30).map(|k| format!("r{c}-{k}")).collect())
        .collect();
    let approvers: Vec<String> = (0..40).map(|k| format!("a{k}")).collect();
    let rig = rig::Rig::new(&requesters, &approvers, hook, nodes).await?;
    for (i, n) in rig.nodes.iter().enumerate() {
        eprintln!(
            "node {i}: {} (pid {}) on {} (data {}, log {})",
            rig.bin.display(),
            n.pid().unwrap_or(0),
            n.base,
            n.data.display(),
            n.log.display()
        );
    }
    let load = Arc::new(Load {
        bases: rig.nodes.iter().map(|n| n.base.clone()).collect(),
        live: rig
            .nodes
            .iter()
            .map(|_| std::sync::atomic::AtomicBool::new(true))
            .collect(),
        short,
        totp: load::Totp::new(rig.secret.clone()),
        ledger: Default::default(),
        requesters,
        approvers,
        ssh_public_key: rig.public_key.clone(),
    });
    Ok((rig, load))
}

pub async fn run(o: Options) -> Result<()> {
    let started = Instant::now();
    println!(
        "crash trials: {} trials, seed {} (rerun: breakglass-bench --crash-trials {} --seed {}), {} clients",
        o.trials, o.seed, o.trials, o.seed, o.clients
    );
    let rng = Rng::new(o.seed);
    let (mut rig, load) = start_rig(&rng, o.clients).await?;
    let mut mem = Memory::default();
    let mut t = Totals::default();
    let mut trial_rng = rng.fork(0);
    let mut outbox = Vec::new();
    for trial in 1..=o.trials {
        // Early: the kill falls while the restarted server is still catching up.
        let early = trial > 1 && trial_rng.chance(0.2);
        if trial > 1 && !early {
            let f = checks::round(&rig, &load, &mut mem, &outbox).await?;
            t.add(trial - 1, f, o.verbose);
        }
        let delay = if early {
            trial_rng.between(30, 1_500)
        } else {
            trial_rng.between(300, 4_000)
        };
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..o.clients)
            .map(|c| {
                let r = rng.fork((trial * 100 + c + 1) as u64);
                tokio::spawn(load::client(load.clone(), c, r, stop.clone()))
            })
            .collect();
        let sampler = tokio::spawn(sample_roles(rig.pg_pool.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(delay)).await;
        rig.kill().await?;
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.await?;
        }
        mem.roles_seen.extend(sampler.await?);
        if early {
            t.kills_in_recovery += 1;
        } else {
            t.kills_in_load += 1;
        }
        // (5) with the server stopped, then the outbox as the kill left it.
        if let Some(why) = rig.verify().await? {
            eprintln!("  FINDING (verify) after kill {trial}: {why}");
            t.verify_failures
                .push(format!("[after kill {trial}] {}", why.trim()));
        }
        outbox = rig.outbox().await?;
        let up = rig.start().await?;
        t.restart_ms.push(up.as_secs_f64() * 1000.0);
        let ops = load.ledger.lock().map(|l| l.ops).unwrap_or_default();
        eprintln!(
            "trial {trial}/{}: killed after {delay} ms ({}), {} grants so far, {} outbox rows, up again in {:.0} ms, findings so far {}",
            o.trials,
            if early { "catching up" } else { "under load" },
            ops.requests,
            outbox.len(),
            up.as_secs_f64() * 1000.0,
            t.failures()
        );
    }
    let f = checks::round(&rig, &load, &mut mem, &outbox).await?;
    t.add(o.trials, f, o.verbose);
    rig.stop().await?;
    if let Some(why) = rig.verify().await? {
        t.verify_failures
            .push(format!("[after the final stop] {}", why.trim()));
    }
    report(&o, &t, &load, &rig, &mem, started.elapsed());
    if o.keep
        && t.failures() == 0
        && let Some(p) = rig.keep_files()
    {
        println!("files kept in {}", p.display());
    }
    if t.failures() > 0 {
        let kept = rig.keep_files();
        bail!(
            "{} finding(s); the data directory and the server's log are kept in {}",
            t.failures(),
            kept.map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    Ok(())
}

fn report(o: &Options, t: &Totals, load: &Load, rig: &rig::Rig, mem: &Memory, took: Duration) {
    let ops = load.ledger.lock().map(|l| l.ops).unwrap_or_default();
    let hs = rig.hook.stats();
    let mut restart = t.restart_ms.clone();
    restart.sort_by(|a, b| a.total_cmp(b));
    println!();
    println!(
        "| trials | kills under load / catching up | check rounds | orphans | lost alerts | events without changes | grants without events | acknowledged changes lost | verify failures | time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {:.0} s |",
        o.trials,
        t.kills_in_load,
        t.kills_in_recovery,
        t.rounds,
        t.orphans.len(),
        t.lost_alerts.len(),
        t.events_without_changes.len(),
        t.grants_without_events.len(),
        t.acked_lost.len(),
        t.verify_failures.len(),
        took.as_secs_f64()
    );
    println!();
    println!(
        "load answered: {} requests, {} approvals, {} pickups, {} revocations, {} cancellations, {} extensions; {} refused, {} cut by a kill",
        ops.requests,
        ops.approvals,
        ops.pickups,
        ops.revocations,
        ops.cancels,
        ops.extensions,
        ops.refused,
        ops.unanswered
    );
    println!("{}", load.refusals_line());
    println!(
        "checked: {} grant views, {} distinct grants settled, {} roles seen at PostgreSQL, {} certificate-in-KRL checks, {} ssh logins refused for ended grants, {} control logins for active grants",
        t.grants_checked,
        mem.settled.len(),
        mem.roles_seen.len(),
        t.krl_certs_checked,
        t.ssh_refusals,
        t.ssh_control_logins
    );
    println!(
        "webhook: {} deliveries accepted ({} duplicates of an alert already received), {} refused on purpose, {} bad signatures; {} distinct alerts",
        hs.accepted,
        hs.duplicates,
        hs.refused,
        hs.bad_signatures,
        rig.hook.received().len()
    );
    let telling: Vec<String> = mem
        .telling
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!("in the audit trail at the end: {}", telling.join(", "));
    if let (Some(first), Some(last)) = (restart.first(), restart.last()) {
        println!(
            "restart to /healthz: p50 {:.0} ms, max {:.0} ms (min {:.0} ms)",
            restart[restart.len() / 2],
            last,
            first
        );
    }
    println!("notes ({}):", t.notes.len());
    for n in t.notes.iter().take(20) {
        println!("  {n}");
    }
    for (what, list) in [
        ("orphans", &t.orphans),
        ("lost alerts", &t.lost_alerts),
        ("events without changes", &t.events_without_changes),
        ("grants without events", &t.grants_without_events),
        ("acknowledged changes lost", &t.acked_lost),
        ("verify failures", &t.verify_failures),
    ] {
        if !list.is_empty() {
            println!("{what} ({}):", list.len());
            for l in list.iter().take(30) {
                println!("  {l}");
            }
        }
    }
}
