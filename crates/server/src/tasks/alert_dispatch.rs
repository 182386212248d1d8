//! The alert dispatcher: leases due outbox rows and delivers them with backoff; dead-letters
//! them (audited) after the retry budget.

use crate::alerts::{AlertConfig, backoff, deliver};
use crate::engine::Engine;
use breakglass_store::{AlertRow, Change};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Delivers one leased alert and records the outcome.
async fn attempt(engine: &Engine, http: &reqwest::Client, cfg: &AlertConfig, alert: AlertRow) {
    let now = engine.now();
    let policy = engine.policy();
    let result = match policy.set.sink(&alert.sink) {
        Some(sink) => deliver(http, sink, &alert, now).await,
        None => Err(format!("sink {} is no longer in the policy", alert.sink)),
    };
    let done = engine.now();
    let attempts = alert.attempts + 1;
    let (state, next, err) = match &result {
        Ok(()) => {
            engine
                .metrics
                .observe_alert_latency(done.0.saturating_sub(alert.created_at.0));
            ("delivered", done, None)
        }
        Err(e) if attempts >= cfg.max_attempts => ("failed", done, Some(e.clone())),
        Err(e) => (
            "pending",
            done.plus(backoff(cfg, attempts)),
            Some(e.clone()),
        ),
    };
    if let Some(e) = &err {
        tracing::warn!(alert = alert.id, sink = %alert.sink, attempts, error = %e, "alert delivery failed");
    }
    // Fenced on this node's lease: if it ran out and another node took the alert over, this
    // record is refused (the other node's delivery counts; at least once, never lost).
    let fence = Change::AlertLeaseHeld {
        id: alert.id,
        until: alert.next_attempt_at,
    };
    let change = Change::AlertAttempt {
        id: alert.id,
        state,
        attempts,
        next_attempt_at: next,
        last_error: err.clone(),
        at: done,
    };
    let outcome = if state == "failed" {
        let ev = breakglass_core::audit::event(
            done,
            "alert.dead_lettered",
            Some("system"),
            None,
            json!({"alert_id": alert.id, "sink": alert.sink, "kind": alert.kind, "attempts": attempts, "last_error": err, "dedup_key": alert.dedup_key}),
        );
        engine.commit(vec![fence, change], vec![ev]).await
    } else {
        engine
            .store
            .commit(vec![fence, change], vec![])
            .await
            .map(|_| ())
            .map_err(Into::into)
    };
    if let Err(e) = outcome {
        tracing::error!(alert = alert.id, error = %e, "cannot record alert delivery; it will be retried after its lease");
    }
}

/// The delivery loop: sleeps until the next alert is due (or new ones are queued).
pub async fn dispatcher(
    engine: Arc<Engine>,
    cfg: AlertConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let http = match reqwest::Client::builder()
        .user_agent(concat!("breakglass/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "alert dispatcher cannot start");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(32));
    let mut backoff = crate::backoff::Backoff::new(
        "reading the alert outbox",
        Duration::from_secs(1),
        Duration::from_secs(60),
    );
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = engine.now();
        let due = match engine.store.due_alerts(now, 64).await {
            Ok(d) => {
                backoff.succeeded();
                d
            }
            Err(e) => {
                let wait = backoff.failed(&e);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        let mut started = false;
        for mut a in due {
            let until = now.plus(cfg.lease);
            let lease = Change::LeaseAlert {
                id: a.id,
                expected_next: a.next_attempt_at,
                until,
            };
            if engine.store.commit(vec![lease], vec![]).await.is_err() {
                continue; // another node has it
            }
            a.next_attempt_at = until;
            // Bounded concurrency; a slow sink holds only its own slot, never the loop.
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            started = true;
            let (engine, http, cfg) = (engine.clone(), http.clone(), cfg.clone());
            tokio::spawn(async move {
                attempt(&engine, &http, &cfg, a).await;
                drop(permit);
                // Its next attempt may be due before whatever the loop sleeps to.
                engine.alert_wake.notify_one();
            });
        }
        if started {
            continue;
        }
        let wait = match engine.store.next_alert_at().await {
            Ok(Some(t)) => engine.now().until(t).min(Duration::from_secs(5)),
            _ => Duration::from_secs(5),
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = engine.alert_wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}
