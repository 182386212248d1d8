//! Node faults: `breakglass-bench --node-faults [--grants N] [--seed S] [--clients C] [--keep]`.
//!
//! Three real `breakglass serve` processes on one store in a testkit PostgreSQL (each node
//! logs in with its own role), with credentials at a real PostgreSQL target and a real sshd,
//! alerts to a webhook receiver, and a mixed load of grants lasting seconds spread over the
//! live nodes (the crash trials' load, behind a load balancer's view of which nodes are up).
//! While it runs, in order: one node is killed with SIGKILL (and started again), one is
//! SIGSTOPped for longer than the store's idle-in-transaction timeout (then SIGCONT), the
//! store's PostgreSQL is crashed and restarted (`pg_ctl stop -m immediate`), and one node is
//! cut off from the store (its role NOLOGIN + pg_terminate_backend), then let back. Meanwhile
//! one TOTP code at a time is sent to several nodes at once and once more afterwards: at most
//! one may be accepted. At the end, from outside: the chain is gapless and `audit verify`
//! passes, checkpoints never fork, every grant expired within 1 s of its deadline (by the
//! store's own commit timestamps; deadlines while the store was down are listed apart),
//! every alert arrived, no credential is left at a target without an open grant. Printed as a
//! table; the exit status is non-zero when any check fails. docs/NODE-FAULTS.md explains it.

mod replay;
mod report;

use crate::crash::checks::{self, Memory};
use crate::crash::rng::Rng;
use crate::crash::{sample_roles, start_nodes};
use anyhow::{Result, bail};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct Options {
    /// Grants to request in all (the load runs until this many were granted and every fault
    /// was injected).
    pub grants: u64,
    pub seed: u64,
    pub clients: usize,
    pub keep: bool,
    /// The CI run: timings are reported, not gated (see `report::Row::timed`).
    pub smoke: bool,
}

const NODES: usize = 3;

/// One injected fault: what, on which node, from when to when (Unix ms).
pub struct Fault {
    pub what: &'static str,
    pub node: Option<usize>,
    pub from_ms: i64,
    pub to_ms: i64,
    /// What was seen while it lasted (e.g. how the cut-off node answered).
    pub seen: String,
}

fn now_ms() -> i64 {
    crate::crash::load::now_ms()
}

fn granted(load: &crate::crash::load::Load) -> u64 {
    load.ledger.lock().map(|l| l.ops.requests).unwrap_or(0)
}

/// Waits `d` while the load runs (a fault's length, or the gap between two).
async fn hold(d: Duration) {
    tokio::time::sleep(d).await;
}

pub async fn run(o: Options) -> Result<()> {
    let started = Instant::now();
    println!(
        "node faults: {NODES} nodes on one PostgreSQL store, {} grants, seed {} (rerun: breakglass-bench --node-faults --grants {} --seed {})",
        o.grants, o.seed, o.grants, o.seed
    );
    let rng = Rng::new(o.seed);
    let (mut rig, load) = start_nodes(&rng, o.clients, 1, NODES, true).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..o.clients)
        .map(|c| {
            let r = rng.fork((c + 1) as u64);
            tokio::spawn(crate::crash::load::client(load.clone(), c, r, stop.clone()))
        })
        .collect();
    let replays = tokio::spawn(replay::run(
        load.clone(),
        load.requesters[o.clients].clone(),
        stop.clone(),
    ));
    let sampler = tokio::spawn(sample_roles(rig.pg_pool.clone(), stop.clone()));
    let mut faults = Vec::new();
    let gap = Duration::from_secs(3);
    hold(gap).await;

    // 1. SIGKILL node 1; started again 4 s later.
    let from = now_ms();
    load.live[1].store(false, Ordering::SeqCst);
    rig.kill_node(1).await?;
    hold(Duration::from_secs(4)).await;
    let up = rig.start_node(1).await?;
    load.live[1].store(true, Ordering::SeqCst);
    faults.push(Fault {
        what: "kill -9, restart after 4 s",
        node: Some(1),
        from_ms: from,
        to_ms: now_ms(),
        seen: format!("up again in {} ms", up.as_millis()),
    });
    hold(gap).await;

    // 2. SIGSTOP node 2 for 17 s, far longer than idle_in_transaction_session_timeout (750 ms).
    let from = now_ms();
    load.live[2].store(false, Ordering::SeqCst);
    rig.pause_node(2, true).await?;
    hold(Duration::from_secs(17)).await;
    rig.pause_node(2, false).await?;
    let back = wait_healthy(&rig.nodes[2].base, Duration::from_secs(30)).await;
    load.live[2].store(true, Ordering::SeqCst);
    faults.push(Fault {
        what: "SIGSTOP 17 s, SIGCONT",
        node: Some(2),
        from_ms: from,
        to_ms: now_ms(),
        seen: match back {
            Some(d) => format!("healthy {} ms after SIGCONT", d.as_millis()),
            None => "NOT healthy 30 s after SIGCONT".into(),
        },
    });
    hold(gap).await;

    // 3. The store's PostgreSQL crashes and restarts.
    let from = now_ms();
    let db = rig.store.as_ref().map(|s| s.pg.port);
    {
        let store = rig.store.take();
        let store = tokio::task::spawn_blocking(move || {
            if let Some(s) = &store {
                s.pg.crash_restart();
            }
            store
        })
        .await?;
        rig.store = store;
    }
    let restarted = now_ms();
    let healthy = wait_all_healthy(&rig, Duration::from_secs(30)).await;
    faults.push(Fault {
        what: "store PostgreSQL: pg_ctl stop -m immediate + start",
        node: None,
        from_ms: from,
        to_ms: restarted,
        seen: format!(
            "port {}; database back after {} ms; all nodes healthy {}",
            db.unwrap_or(0),
            restarted - from,
            match healthy {
                Some(d) => format!("{} ms after", d.as_millis()),
                None => "NOT within 30 s".into(),
            }
        ),
    });
    hold(gap).await;

    // 4. Node 0 cut off from the store (left in the load balancer: it must refuse cleanly).
    let from = now_ms();
    if let Some(s) = &rig.store {
        s.cut_off(0).await?;
    }
    hold(Duration::from_secs(2)).await;
    let while_cut = probe(&rig.nodes[0].base).await;
    hold(Duration::from_secs(6)).await;
    if let Some(s) = &rig.store {
        s.restore(0).await?;
    }
    let back = wait_healthy(&rig.nodes[0].base, Duration::from_secs(30)).await;
    faults.push(Fault {
        what: "cut off from the store (NOLOGIN + pg_terminate_backend) 8 s",
        node: Some(0),
        from_ms: from,
        to_ms: now_ms(),
        seen: format!(
            "while cut off: {while_cut}; {}",
            match back {
                Some(d) => format!("healthy {} ms after LOGIN", d.as_millis()),
                None => "NOT healthy 30 s after LOGIN".into(),
            }
        ),
    });

    // The rest of the grants, then the load stops.
    let cap = Instant::now() + Duration::from_secs(900);
    while granted(&load) < o.grants && Instant::now() < cap {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await?;
    }
    let replay = replays.await?;
    let mut mem = Memory::default();
    mem.roles_seen.extend(sampler.await?);
    let load_ended = now_ms();
    eprintln!(
        "load stopped after {:.0} s: {} grants; waiting for the last to expire",
        started.elapsed().as_secs_f64(),
        granted(&load)
    );
    // Every grant of the load lasts ≤ 8 s (extensions add ≤ 30 min: those are revoked by the
    // checks' wait or stay active and are checked as active).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let outbox = rig.outbox().await?;
    let f = checks::round(&rig, &load, &mut mem, &outbox).await?;
    let expiry = report::expiry(&rig, &faults).await?;
    let late_active = report::overdue_active(&rig).await?;
    rig.stop().await?;
    let chain = report::chain(&rig).await?;
    let rows = report::rows(report::Inputs {
        findings: &f,
        chain: &chain,
        expiry: &expiry,
        late_active: &late_active,
        replay: &replay,
        hook: &rig.hook,
        outbox: outbox.len(),
    });
    report::print(
        o.smoke,
        &faults,
        &rows,
        &load,
        &replay,
        load_ended,
        started.elapsed(),
    );
    let failed = rows
        .iter()
        .filter(|r| !(r.ok || (r.timed && o.smoke)))
        .count();
    if failed > 0 {
        let kept = rig.keep_files();
        bail!(
            "{failed} check(s) failed; the nodes' data directories and logs are kept in {}",
            kept.map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    if o.keep
        && let Some(p) = rig.keep_files()
    {
        println!("files kept in {}", p.display());
    }
    Ok(())
}

/// `/healthz` answered 200 within `within`: how long it took.
async fn wait_healthy(base: &str, within: Duration) -> Option<Duration> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let t = Instant::now();
    while t.elapsed() < within {
        let ok = http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn wait_all_healthy(rig: &crate::crash::rig::Rig, within: Duration) -> Option<Duration> {
    let t = Instant::now();
    for n in &rig.nodes {
        wait_healthy(&n.base, within.saturating_sub(t.elapsed())).await?;
    }
    Some(t.elapsed())
}

/// How a node answers `/healthz` now: status and the start of the body.
async fn probe(base: &str) -> String {
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return "no client".into();
    };
    match http.get(format!("{base}/healthz")).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            let body: String = body.chars().take(120).collect();
            format!("/healthz {status} {body}")
        }
        Err(e) => format!("/healthz: no answer ({e})"),
    }
}
