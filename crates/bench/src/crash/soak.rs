//! Soak: `breakglass-bench --soak MINUTES [--clients N] [--seed S] [--sample-every SECS]`.
//!
//! The crash trials' rig and load (the real server binary on SQLite, credentials at a real
//! PostgreSQL and sshd, alerts to a webhook receiver; auto and quorum requests, approvals,
//! pickups, revocations, extensions, expiries) at a steady pace for MINUTES, never killed. Every
//! sample (a minute by default): the server's resident memory and open file descriptors, the
//! latency of the load's calls since the last sample (p50, p99, max), calls answered, and lines
//! at WARN or ERROR in the server's log. At the end: growth after warm-up (the first fifth of the
//! run, at least one sample), `audit verify` over the data directory, and the table.

use super::load::{self, Load};
use super::rng::Rng;
use anyhow::{Result, bail};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct Options {
    pub minutes: u64,
    pub clients: usize,
    pub seed: u64,
    pub sample_every: Duration,
}

struct Sample {
    at_s: u64,
    rss_kib: u64,
    fds: usize,
    calls: usize,
    p50: f64,
    p99: f64,
    max: f64,
    warn: usize,
    error: usize,
}

/// `VmRSS` of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// WARN and ERROR lines of the server's log after byte `from` (only those bytes are read);
/// returns the new end too. The server writes no colour codes off a terminal.
fn log_levels(path: &std::path::Path, from: u64) -> (usize, usize, u64, Vec<String>) {
    use std::io::{Read, Seek, SeekFrom};
    let mut new = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.seek(SeekFrom::Start(from));
        let _ = f.read_to_end(&mut new);
    }
    let end = from + new.len() as u64;
    let (mut warn, mut error, mut examples) = (0, 0, Vec::new());
    for l in String::from_utf8_lossy(&new).lines() {
        if l.contains(" ERROR ") {
            error += 1;
            if examples.len() < 5 {
                examples.push(l.chars().take(300).collect());
            }
        } else if l.contains(" WARN ") {
            warn += 1;
        }
    }
    (warn, error, end, examples)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub async fn run(o: Options) -> Result<()> {
    println!(
        "soak: {} min, {} clients, seed {}, a sample every {} s",
        o.minutes,
        o.clients,
        o.seed,
        o.sample_every.as_secs()
    );
    let rng = Rng::new(o.seed);
    let (mut rig, load) = super::start_rig(&rng, o.clients).await?;
    let pid = rig
        .pid()
        .ok_or_else(|| anyhow::anyhow!("the server has no pid"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..o.clients)
        .map(|c| {
            tokio::spawn(load::client(
                load.clone(),
                c,
                rng.fork(c as u64 + 1),
                stop.clone(),
            ))
        })
        .collect();
    let start = Instant::now();
    let end = start + Duration::from_secs(o.minutes * 60);
    let (_, _, mut log_at, _) = log_levels(rig.log(), 0);
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    while Instant::now() < end {
        tokio::time::sleep(o.sample_every.min(end - Instant::now())).await;
        let mut lat = load.take_latencies();
        load.forget_settled();
        lat.sort_by(|a, b| a.total_cmp(b));
        let (warn, error, at, ex) = log_levels(rig.log(), log_at);
        log_at = at;
        errors.extend(ex);
        let s = Sample {
            at_s: start.elapsed().as_secs(),
            rss_kib: rss_kib(pid),
            fds: fds(pid),
            calls: lat.len(),
            p50: pct(&lat, 0.5),
            p99: pct(&lat, 0.99),
            max: lat.last().copied().unwrap_or(0.0),
            warn,
            error,
        };
        eprintln!(
            "  {:>5} s: RSS {} KiB, {} fds, {} calls, p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms, {} warn, {} error",
            s.at_s, s.rss_kib, s.fds, s.calls, s.p50, s.p99, s.max, s.warn, s.error
        );
        samples.push(s);
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await?;
    }
    rig.stop().await?;
    let verify = rig.verify().await?;
    report(&samples, &errors, verify.as_deref(), &load);
    let failed = verify.is_some() || samples.iter().any(|s| s.error > 0);
    if failed {
        let kept = rig.keep_files();
        bail!(
            "the soak found errors; files kept in {}",
            kept.map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    Ok(())
}

fn report(samples: &[Sample], errors: &[String], verify: Option<&str>, load: &Load) {
    println!();
    println!("| t (s) | RSS (KiB) | fds | calls | p50 (ms) | p99 (ms) | max (ms) | warn | error |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in samples {
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.0} | {} | {} |",
            s.at_s, s.rss_kib, s.fds, s.calls, s.p50, s.p99, s.max, s.warn, s.error
        );
    }
    let warm = (samples.len() / 5)
        .max(1)
        .min(samples.len().saturating_sub(1));
    if let (Some(first), Some(last)) = (samples.get(warm), samples.last()) {
        let growth = |a: f64, b: f64| if a > 0.0 { (b - a) / a * 100.0 } else { 0.0 };
        let p99s: Vec<f64> = samples[warm..].iter().map(|s| s.p99).collect();
        let (lo, hi) = p99s
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        println!();
        println!(
            "after warm-up (from {} s): RSS {} → {} KiB ({:+.1} %), fds {} → {} ({:+.1} %), p99 between {:.1} and {:.1} ms",
            first.at_s,
            first.rss_kib,
            last.rss_kib,
            growth(first.rss_kib as f64, last.rss_kib as f64),
            first.fds,
            last.fds,
            growth(first.fds as f64, last.fds as f64),
            lo,
            hi
        );
    }
    let ops = load.ledger.lock().map(|l| l.ops).unwrap_or_default();
    println!(
        "load answered: {} requests, {} approvals, {} pickups, {} revocations, {} extensions; {} refused, {} unanswered",
        ops.requests,
        ops.approvals,
        ops.pickups,
        ops.revocations,
        ops.extensions,
        ops.refused,
        ops.unanswered
    );
    println!(
        "audit verify at the end: {}",
        verify.map_or("ok".to_string(), |w| format!("FAILED: {}", w.trim()))
    );
    println!(
        "ERROR lines in the server's log: {}",
        samples.iter().map(|s| s.error).sum::<usize>()
    );
    for e in errors {
        println!("  {e}");
    }
}
