//! Background tasks: the expiry timer, the checkpointer and the policy watcher here; the
//! revoker and sweeper in `revocation`, the alert dispatcher in `alert_dispatch`, the audit
//! streams and checkpoint witness in `streaming`, the drill scheduler in `drills`, the
//! database-clock offset in `clock_sync`.

use crate::engine::Engine;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

mod alert_dispatch;
mod clock_sync;
mod drills;
mod lease;
mod revocation;
mod streaming;

pub use crate::backoff::Backoff;
pub use alert_dispatch::dispatcher;
pub use clock_sync::clock_sync;
pub use drills::{drill_scheduler, seed_drill_metrics};
pub use lease::Singleton;
pub use revocation::{revoker, sweep_once, sweeper};
pub use streaming::streams;

/// Longest sleep between deadline checks: bounds how late we notice a grant that another
/// node created with an earlier deadline than the one we were sleeping to (and must end when
/// that node dies first). One indexed `MIN(deadline)` per check. At 1 s, a fault run saw two
/// grants of a killed node end 1,047 ms late.
const MAX_SLEEP: Duration = Duration::from_millis(250);

/// Sleeps until the next deadline (or until woken by a new grant), then applies every due
/// transition. Not a poll: with one node, a grant ends within milliseconds of its deadline.
pub async fn expiry_timer(engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    let mut escalation = Backoff::new(
        "escalating overdue reviews",
        Duration::from_secs(1),
        Duration::from_secs(60),
    );
    // Expiry must not lag: retry soon, but never spin (at most every MAX_SLEEP when failing).
    let mut expiry = Backoff::new("expiring grants", Duration::from_millis(100), MAX_SLEEP);
    let mut escalate_at = tokio::time::Instant::now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if tokio::time::Instant::now() >= escalate_at {
            let due = async {
                engine.escalate_overdue().await?;
                engine.warn_expiring_glass_cases().await
            };
            match due.await {
                Ok(_) => {
                    escalation.succeeded();
                    // Reviews and glass cases are judged in minutes: once a second is plenty.
                    escalate_at = tokio::time::Instant::now() + Duration::from_secs(1);
                }
                Err(e) => escalate_at = tokio::time::Instant::now() + escalation.failed(&e),
            }
        }
        let step = async {
            engine.run_due().await.map_err(|e| e.to_string())?;
            engine
                .store
                .next_deadline()
                .await
                .map_err(|e| e.to_string())
        };
        let wait = match step.await {
            Ok(next) => {
                expiry.succeeded();
                match next {
                    Some(deadline) => engine.now().until(deadline).min(MAX_SLEEP),
                    None => MAX_SLEEP,
                }
            }
            Err(e) => expiry.failed(&e),
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = engine.wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// How long the checkpointer's lease lasts without renewal: after the checkpointing node dies,
/// another signs within this (plus its wait).
const CHECKPOINT_LEASE: Duration = Duration::from_secs(10);

/// Signs a checkpoint of the audit log every `every_events` new events or every `every`,
/// whichever comes first, and once more at shutdown. With several nodes one holds the
/// checkpointer's lease (renewed each round, at most every `CHECKPOINT_LEASE / 3`) and only it
/// signs, fenced on its term: two nodes never sign at once, and since checkpoints of one size
/// are one row, two checkpoints of the same size with different roots cannot exist.
pub async fn checkpointer(
    engine: Arc<Engine>,
    every_events: u64,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut cp = match crate::audit::Checkpointer::load(&engine).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "checkpointer cannot start");
            return;
        }
    };
    let mut lease = Singleton::new("checkpointer", CHECKPOINT_LEASE);
    let mut held: Option<i64> = None;
    let mut last = tokio::time::Instant::now();
    // A failing store must not make this loop spin (it once logged 3,920 errors in 45 s).
    let mut backoff = Backoff::new(
        "checkpointing the audit log",
        Duration::from_millis(100),
        Duration::from_secs(30),
    );
    loop {
        let stop = *shutdown.borrow();
        let step = async {
            let term = lease.hold(&engine).await?;
            if term.is_none() {
                held = None;
                return Ok::<bool, breakglass_store::StoreError>(false);
            }
            if held != term {
                // Newly ours: another node may have signed up to here.
                cp.refresh_signed(&engine).await?;
                held = term;
            }
            let pending = cp.catch_up(&engine).await?;
            if pending > 0 && (stop || pending >= every_events || last.elapsed() >= every) {
                cp.sign(&engine, lease.fence(&engine)).await?;
                last = tokio::time::Instant::now();
            } else if pending == 0 {
                last = tokio::time::Instant::now();
            }
            Ok(true)
        };
        let (holder, failed_wait) = match step.await {
            Ok(h) => {
                backoff.succeeded();
                (h, None)
            }
            Err(e) => (false, Some(backoff.failed(&e))),
        };
        if stop {
            lease.release(&engine).await;
            return;
        }
        if let Some(wait) = failed_wait {
            // While failing, new events do not wake us early: only the backoff (or shutdown).
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let renew = CHECKPOINT_LEASE / 3;
        let wait = if holder {
            every
                .saturating_sub(last.elapsed())
                .clamp(Duration::from_millis(10), renew)
        } else {
            // Another node signs; ask again in a while (it may have died).
            renew
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = engine.checkpoint_wake.notified(), if holder => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Reloads the policy on SIGHUP and when the file changes (checked every `poll`).
pub async fn policy_watcher(
    engine: Arc<Engine>,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut reload = Backoff::new("auditing a policy reload", Duration::ZERO, Duration::ZERO);
    loop {
        let sighup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = sighup => { tracing::info!("SIGHUP: reloading policy"); }
            _ = shutdown.changed() => { return; }
        }
        match engine.reload_policy().await {
            Ok(_) => reload.succeeded(),
            Err(e) => {
                reload.failed(&e);
            }
        }
    }
}
