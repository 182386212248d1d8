//! The node-fault run's checks that the crash trials do not have (expiry lag by the store's
//! commit timestamps, the chain and its checkpoints in the shared database) and the tables.

use super::Fault;
use super::replay::Replay;
use crate::crash::api::Admin;
use crate::crash::checks::Findings;
use crate::crash::hook::Hook;
use crate::crash::load::{Load, parse_time};
use crate::crash::rig::Rig;
use anyhow::{Context, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// Expiries timed from outside: the deadline the event names against the moment the
/// database committed it (`track_commit_timestamp`).
#[derive(Default)]
pub struct Expiry {
    pub lags_ms: Vec<f64>,
    /// The lag the deciding node saw (its clock when it ended the grant − deadline).
    pub decided_ms: Vec<f64>,
    /// Later than 1 s, the store up: (grant, lag, the fault going on then).
    pub late: Vec<String>,
    /// Deadlines while the store itself was down (no node can end anything then).
    pub store_down: Vec<String>,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn expiry(rig: &Rig, faults: &[Fault]) -> Result<Expiry> {
    let db = rig
        .store
        .as_ref()
        .context("node faults run on a PostgreSQL store")?;
    let committed: Vec<(i64, f64)> = sqlx::query_as(
        "SELECT seq, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000)::float8 \
         FROM audit WHERE kind = 'grant.expired'",
    )
    .fetch_all(&db.pool)
    .await?;
    let at: HashMap<u64, f64> = committed
        .into_iter()
        .map(|(s, t)| (u64::try_from(s).unwrap_or(0), t))
        .collect();
    let events = Admin::new(rig.base())?.events().await?;
    let down: Vec<&Fault> = faults.iter().filter(|f| f.node.is_none()).collect();
    let mut x = Expiry::default();
    for e in events.iter().filter(|e| e.kind == "grant.expired") {
        let (Some(deadline), Some(done)) = (
            e.data["deadline"].as_str().and_then(parse_time),
            at.get(&e.seq),
        ) else {
            continue;
        };
        let lag = done - deadline as f64;
        let grant = e.grant.clone().unwrap_or_default();
        if let Some(f) = down
            .iter()
            .find(|f| deadline >= f.from_ms && deadline <= f.to_ms + 1_000)
        {
            x.store_down
                .push(format!("{grant}: {lag:.0} ms ({})", f.what));
            continue;
        }
        x.lags_ms.push(lag);
        x.decided_ms
            .push(e.data["lag_ms"].as_f64().unwrap_or(f64::NAN));
        if lag > 1_000.0 {
            let during = faults
                .iter()
                .find(|f| deadline >= f.from_ms - 1_000 && deadline <= f.to_ms + 1_000)
                .map(|f| format!("{} on node {}", f.what, f.node.unwrap_or(9)))
                .unwrap_or_else(|| "no fault".into());
            x.late.push(format!("{grant}: {lag:.0} ms late ({during})"));
        }
    }
    x.lags_ms.sort_by(|a, b| a.total_cmp(b));
    x.decided_ms.sort_by(|a, b| a.total_cmp(b));
    Ok(x)
}

/// Grants still active a second after their deadline, read from the store now.
pub async fn overdue_active(rig: &Rig) -> Result<Vec<String>> {
    let db = rig
        .store
        .as_ref()
        .context("node faults run on a PostgreSQL store")?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT id, deadline FROM grants WHERE state = 'active' AND deadline < $1 - 1000",
    )
    .bind(crate::crash::load::now_ms())
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, d)| format!("{id} (deadline {d})"))
        .collect())
}

pub struct Chain {
    pub verify_ok: bool,
    pub verify: String,
    pub events: i64,
    pub gaps: i64,
    pub checkpoints: i64,
    pub forks: i64,
}

/// With every node stopped: `audit verify` on node 0's host and the chain in the database.
pub async fn chain(rig: &Rig) -> Result<Chain> {
    let db = rig
        .store
        .as_ref()
        .context("node faults run on a PostgreSQL store")?;
    let out = tokio::process::Command::new(&rig.bin)
        .args(["--json", "audit", "verify", "--data-dir"])
        .arg(rig.data())
        .output()
        .await?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let verify = if out.status.success() {
        format!(
            "audit verify OK: {} events, {} signed checkpoints verified",
            v["events"], v["checkpoints"]
        )
    } else {
        text.trim().chars().take(400).collect()
    };
    let (events, min, max): (i64, Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), MIN(seq), MAX(seq) FROM audit")
            .fetch_one(&db.pool)
            .await?;
    let gaps: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM (SELECT seq - LAG(seq) OVER (ORDER BY seq) AS d FROM audit) t \
         WHERE d IS NOT NULL AND d <> 1",
    )
    .fetch_one(&db.pool)
    .await?;
    let gaps = gaps.0 + i64::from(min.unwrap_or(1) != 1) + i64::from(max.unwrap_or(0) != events);
    let (checkpoints,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM checkpoints")
        .fetch_one(&db.pool)
        .await?;
    // Sizes are the primary key, so a second checkpoint of a size can only be a row that
    // differs; `audit verify` checks every checkpoint's root against the chain.
    let (forks,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM (SELECT size FROM checkpoints GROUP BY size HAVING COUNT(*) > 1) t",
    )
    .fetch_one(&db.pool)
    .await?;
    Ok(Chain {
        verify_ok: out.status.success(),
        verify,
        events,
        gaps,
        checkpoints,
        forks,
    })
}

pub struct Row {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
    /// A timing (expiry lag): gates the full run, only reported by the CI smoke run (tests
    /// assert no timings; a debug build on a shared 2-core runner is no measure).
    pub timed: bool,
}

pub struct Inputs<'a> {
    pub findings: &'a Findings,
    pub chain: &'a Chain,
    pub expiry: &'a Expiry,
    pub late_active: &'a [String],
    pub replay: &'a Replay,
    pub hook: &'a Hook,
    pub outbox: usize,
}

impl Row {
    fn new(check: &'static str, ok: bool, detail: String) -> Row {
        Row {
            check,
            ok,
            detail,
            timed: false,
        }
    }
}

fn first(list: &[String], n: usize) -> String {
    let mut s: Vec<String> = list.iter().take(n).cloned().collect();
    if list.len() > n {
        s.push(format!("… {} more", list.len() - n));
    }
    s.join("; ")
}

pub fn rows(i: Inputs<'_>) -> Vec<Row> {
    let f = i.findings;
    let c = i.chain;
    let x = i.expiry;
    let hs = i.hook.stats();
    let mut rows = vec![
        Row::new(
            "chain gapless, `audit verify` passes",
            c.verify_ok && c.gaps == 0 && c.events > 0,
            format!("{} events, {} gaps; {}", c.events, c.gaps, c.verify),
        ),
        Row::new(
            "no checkpoint fork",
            c.forks == 0 && c.verify_ok && c.checkpoints > 0,
            format!(
                "{} checkpoints, {} sizes signed twice; each root checked against the chain by audit verify",
                c.checkpoints, c.forks
            ),
        ),
        Row::new(
            "every grant expired within 1 s of its deadline",
            x.late.is_empty() && !x.lags_ms.is_empty(),
            format!(
                "{} expiries: lag p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (commit time in the store − deadline; the deciding node's own view: p50 {:.0} ms, p99 {:.0} ms); {} late{}; {} deadlines fell while the store was down{}",
                x.lags_ms.len(),
                pct(&x.lags_ms, 0.5),
                pct(&x.lags_ms, 0.99),
                x.lags_ms.last().copied().unwrap_or(0.0),
                pct(&x.decided_ms, 0.5),
                pct(&x.decided_ms, 0.99),
                x.late.len(),
                if x.late.is_empty() {
                    String::new()
                } else {
                    format!(": {}", first(&x.late, 5))
                },
                x.store_down.len(),
                if x.store_down.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", first(&x.store_down, 3))
                },
            ),
        ),
        Row::new(
            "no grant active past its deadline",
            i.late_active.is_empty(),
            if i.late_active.is_empty() {
                "none at the end".into()
            } else {
                first(i.late_active, 5)
            },
        ),
        Row::new(
            "every alert arrived at least once",
            f.lost_alerts.is_empty(),
            format!(
                "{} outbox rows; {} distinct alerts received ({} duplicates, {} refused on purpose){}",
                i.outbox,
                i.hook.received().len(),
                hs.duplicates,
                hs.refused,
                if f.lost_alerts.is_empty() {
                    String::new()
                } else {
                    format!("; lost: {}", first(&f.lost_alerts, 5))
                }
            ),
        ),
        Row::new(
            "no credential at a target without an open grant",
            f.orphans.is_empty(),
            format!(
                "{} roles at PostgreSQL checked, {} ended certificates found in the KRL, {} ssh logins refused for ended grants, {} control logins{}",
                f.roles_checked,
                f.krl_certs_checked,
                f.ssh_refusals,
                f.ssh_control_logins,
                if f.orphans.is_empty() {
                    String::new()
                } else {
                    format!("; {}", first(&f.orphans, 5))
                }
            ),
        ),
        Row::new(
            "a TOTP code never accepted twice across nodes",
            i.replay.accepted_twice.is_empty() && i.replay.accepted_once > 0,
            format!(
                "{} codes sent {} times over the nodes: {} accepted once, {} more than once{}",
                i.replay.codes,
                i.replay.sent,
                i.replay.accepted_once,
                i.replay.accepted_twice.len(),
                if i.replay.accepted_twice.is_empty() {
                    String::new()
                } else {
                    format!(": {}", first(&i.replay.accepted_twice, 5))
                }
            ),
        ),
    ];
    for r in rows.iter_mut() {
        r.timed = r.check.starts_with("every grant expired within");
    }
    let mut consistency = f.events_without_changes.clone();
    consistency.extend(f.grants_without_events.iter().cloned());
    consistency.extend(f.acked_lost.iter().cloned());
    rows.push(Row::new(
        "what clients were told holds; every event backed by a change",
        consistency.is_empty(),
        if consistency.is_empty() {
            format!("{} grant views checked", f.grants_checked)
        } else {
            first(&consistency, 5)
        },
    ));
    rows
}

fn clock(ms: i64) -> String {
    breakglass_core::time::rfc3339(breakglass_core::time::Timestamp(ms))
}

pub fn print(
    smoke: bool,
    faults: &[Fault],
    rows: &[Row],
    load: &Load,
    replay: &Replay,
    load_ended: i64,
    took: Duration,
) {
    println!();
    println!("| fault | node | from | for | seen |");
    println!("|---|---|---|---|---|");
    for f in faults {
        println!(
            "| {} | {} | {} | {:.1} s | {} |",
            f.what,
            f.node
                .map(|n| n.to_string())
                .unwrap_or_else(|| "all".into()),
            clock(f.from_ms),
            (f.to_ms - f.from_ms) as f64 / 1000.0,
            f.seen
        );
    }
    println!();
    println!("| check | result | detail |");
    println!("|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} |",
            r.check,
            match (r.ok, r.timed && smoke) {
                (true, _) => "ok",
                (false, true) => "late (a timing: gates the full run, not this smoke run)",
                (false, false) => "FAILED",
            },
            r.detail.replace('|', "/")
        );
    }
    println!();
    let ops = load.ledger.lock().map(|l| l.ops).unwrap_or_default();
    println!(
        "load answered: {} requests, {} approvals, {} pickups, {} revocations, {} extensions; {} refused, {} unanswered; load ended {}; run took {:.0} s",
        ops.requests,
        ops.approvals,
        ops.pickups,
        ops.revocations,
        ops.extensions,
        ops.refused,
        ops.unanswered,
        clock(load_ended),
        took.as_secs_f64()
    );
    println!("{}", load.refusals_line());
    let a: Vec<String> = replay
        .answers
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    println!("replayed codes' answers: {}", a.join("; "));
}
