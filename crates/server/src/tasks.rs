//! Background tasks: the expiry timer, the checkpointer and the policy watcher.

use crate::engine::Engine;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Exponential backoff for a loop's error path: `first`, doubling per failure, up to `max`. The
/// first failure of a streak is logged (as an error); the rest are counted, and the count is
/// logged when the streak ends. A loop that keeps failing neither spins nor floods the log.
pub struct Backoff {
    what: &'static str,
    first: Duration,
    max: Duration,
    streak: u64,
}

impl Backoff {
    pub fn new(what: &'static str, first: Duration, max: Duration) -> Self {
        Backoff {
            what,
            first,
            max,
            streak: 0,
        }
    }

    /// Records a failure; returns how long to wait before the next try.
    pub fn failed(&mut self, error: &dyn std::fmt::Display) -> Duration {
        self.streak += 1;
        if self.streak == 1 {
            tracing::error!(error = %error, "{} failed; retrying with backoff (logged again when it recovers)", self.what);
        } else {
            tracing::debug!(error = %error, failures = self.streak, "{} failed again", self.what);
        }
        let shift = u32::try_from(self.streak - 1).unwrap_or(u32::MAX).min(20);
        self.first.saturating_mul(1 << shift).min(self.max)
    }

    /// Records a success; ends a streak (logging how many failures it had).
    pub fn succeeded(&mut self) {
        if self.streak > 0 {
            tracing::info!(failures = self.streak, "{} works again", self.what);
            self.streak = 0;
        }
    }

    pub fn failures(&self) -> u64 {
        self.streak
    }
}

/// Longest sleep between deadline checks: bounds how late we notice a grant that another
/// node created with an earlier deadline than the one we were sleeping to.
const MAX_SLEEP: Duration = Duration::from_secs(5);

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
            match engine.escalate_overdue().await {
                Ok(_) => escalation.succeeded(),
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

/// Signs a checkpoint of the audit log every `every_events` new events or every `every`,
/// whichever comes first, and once more at shutdown.
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
            let pending = cp.catch_up(&engine).await?;
            if pending > 0 && (stop || pending >= every_events || last.elapsed() >= every) {
                cp.sign(&engine).await?;
                last = tokio::time::Instant::now();
            } else if pending == 0 {
                last = tokio::time::Instant::now();
            }
            Ok::<(), breakglass_store::StoreError>(())
        };
        let failed_wait = match step.await {
            Ok(()) => {
                backoff.succeeded();
                None
            }
            Err(e) => Some(backoff.failed(&e)),
        };
        if stop {
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
        let wait = every
            .saturating_sub(last.elapsed())
            .max(Duration::from_millis(10));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = engine.checkpoint_wake.notified() => {}
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

/// Revokes credentials of ended grants at their targets, retrying with backoff until the target
/// confirms. A revocation counts only once `verify_revoked` agrees. Each failure is audited (and
/// alerted on the first and every fifth attempt). Up to 16 revocations run at once.
pub async fn revoker(engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    use futures_util::StreamExt;
    let mut backoff = Backoff::new(
        "reading pending revocations",
        Duration::from_millis(500),
        Duration::from_secs(30),
    );
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = engine.now();
        let wait = match engine.store.due_revocations(now, 256).await {
            Ok(due) => {
                backoff.succeeded();
                futures_util::stream::iter(due)
                    .for_each_concurrent(16, |cred| revoke_one(&engine, cred))
                    .await;
                Duration::from_millis(500)
            }
            Err(e) => backoff.failed(&e),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = engine.revoke_wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn revoke_one(engine: &Engine, cred: breakglass_store::CredentialRecord) {
    use breakglass_store::Change;
    use serde_json::json;
    let policy = engine.policy();
    let connector = match policy.set.resource(&cred.resource) {
        None => Err(format!(
            "resource {} is no longer in the policy",
            cred.resource
        )),
        Some(r) => engine.connector(r).await.map_err(|e| e.to_string()),
    }
    .and_then(|c| c.ok_or_else(|| format!("resource {} has no connector", cred.resource)));
    let result = match connector {
        Ok(c) => match c.revoke(&cred.handle).await {
            Ok(revoked) => match c.verify_revoked(&cred.handle).await {
                Ok(true) => Ok(revoked),
                Ok(false) => {
                    Err("the target still accepts the credential after revocation".to_string())
                }
                Err(e) => Err(format!("cannot verify the revocation: {e}")),
            },
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e),
    };
    let at = engine.now();
    let attempts = cred.attempts + 1;
    let grant = engine.store.grant(&cred.grant_id).await.ok().flatten();
    let info = grant.as_ref().map(|g| g.info());
    let (change, ev) = match &result {
        Ok(revoked) => (
            Change::RevocationAttempt {
                grant_id: cred.grant_id.clone(),
                done: true,
                attempts,
                next_attempt_at: at,
                last_error: None,
                at,
            },
            Some(crate::engine::event(
                at,
                "credential.revoked",
                Some("system"),
                info,
                {
                    let mut data = json!({"kind": cred.kind, "fingerprint": cred.fingerprint, "attempts": attempts, "verified": true});
                    // What the grant created and left at the target (attacker-chosen names;
                    // the first 200 are listed, all are counted).
                    let left = &revoked.left_behind;
                    if !left.is_empty() {
                        data["left_behind"] = json!(left.iter().take(200).collect::<Vec<_>>());
                        data["left_behind_count"] = json!(left.len());
                    }
                    data
                },
            )),
        ),
        Err(e) => {
            let backoff =
                Duration::from_secs(1u64 << attempts.min(8)).min(Duration::from_secs(300));
            tracing::warn!(grant = %cred.grant_id, attempts, error = %e, "revocation failed; will retry");
            let ev = (attempts == 1 || attempts.is_multiple_of(5)).then(|| {
                crate::engine::event(
                    at,
                    "revocation.failed",
                    Some("system"),
                    info,
                    json!({"kind": cred.kind, "attempts": attempts, "error": e}),
                )
            });
            (
                Change::RevocationAttempt {
                    grant_id: cred.grant_id.clone(),
                    done: false,
                    attempts,
                    next_attempt_at: at.plus(backoff),
                    last_error: Some(e.clone()),
                    at,
                },
                ev,
            )
        }
    };
    if let Err(e) = engine.commit(vec![change], ev.into_iter().collect()).await {
        tracing::error!(grant = %cred.grant_id, error = %e, "cannot record a revocation attempt");
    }
}

/// Sweeps targets for credentials breakglass created that no open grant owns (a crash between
/// "created at the target" and "grant recorded", a hand-restored database…) and removes them,
/// audited as `credential.orphan_removed`. Runs at start-up and every `every`.
pub async fn sweeper(engine: Arc<Engine>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut failing = std::collections::HashSet::new();
    loop {
        sweep_once(&engine, &mut failing).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => { return; }
        }
    }
}

/// One sweep over every resource whose connector can sweep. A failure is audited once per
/// resource until a sweep there succeeds again (`failing` remembers which).
pub async fn sweep_once(engine: &Engine, failing: &mut std::collections::HashSet<String>) {
    use serde_json::json;
    let policy = engine.policy();
    for r in &policy.set.resources {
        let Ok(Some(c)) = engine.connector(r).await else {
            continue;
        };
        let owned = match engine.store.open_credentials(&r.name).await {
            Ok(list) => list.into_iter().map(|c| c.handle).collect::<Vec<_>>(),
            Err(e) => {
                tracing::error!(error = %e, "sweep: cannot read open credentials");
                return;
            }
        };
        let result = c.sweep(&owned, engine.now()).await;
        if result.is_ok() {
            failing.remove(&r.name);
        }
        match result {
            Ok(found) if found.is_empty() => {}
            Ok(found) => {
                let now = engine.now();
                let events = found
                    .iter()
                    .map(|f| {
                        let mut ev = crate::engine::event(
                            now,
                            "credential.orphan_removed",
                            Some("system"),
                            None,
                            json!({"kind": c.kind(), "name": f.name, "note": f.note}),
                        );
                        ev.resource = Some(r.name.clone());
                        ev
                    })
                    .collect();
                if let Err(e) = engine.audit_only(events).await {
                    tracing::error!(error = %e, "sweep: cannot audit removed orphans");
                }
            }
            Err(e) => {
                tracing::warn!(resource = %r.name, error = %e, "sweep failed; will retry");
                if failing.insert(r.name.clone()) {
                    let mut ev = crate::engine::event(
                        engine.now(),
                        "sweep.failed",
                        Some("system"),
                        None,
                        json!({"kind": c.kind(), "error": e.to_string()}),
                    );
                    ev.resource = Some(r.name.clone());
                    if let Err(e) = engine.audit_only(vec![ev]).await {
                        tracing::error!(error = %e, "sweep: cannot audit a failure");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    /// Doubling from `first`, capped at `max`; a success ends the streak and starts over.
    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new("test", Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<u128> = (0..6).map(|_| b.failed(&"boom").as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.failures(), 6);
        b.succeeded();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.failed(&"boom"), Duration::from_millis(100));
        for _ in 0..100 {
            b.failed(&"boom");
        }
        assert_eq!(
            b.failed(&"boom"),
            Duration::from_secs(1),
            "no overflow in a long streak"
        );
    }
}
