//! The drill scheduler: at each slot start of a drilled resource (`every`, `at`), claims the
//! slot in the store (so two server processes never run the same slot) and runs the drill;
//! raises `drill.overdue` once per slot when a resource has not passed a drill in two slots.
//! The first scheduled drill runs at the first slot start after the server started (or at once
//! when the current slot of an already-drilled resource was missed while the server was down).

use crate::audit::DrillAuditCheck;
use crate::engine::Engine;
use breakglass_core::drill;
use breakglass_core::time::Timestamp;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Longest sleep between schedule checks (policy reloads may add drills).
const CHECK: Duration = Duration::from_secs(30);

pub async fn drill_scheduler(engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    // Per resource: the slot last handled, and the slot last reported overdue.
    let mut handled: HashMap<String, Timestamp> = HashMap::new();
    let mut reported: HashMap<String, Timestamp> = HashMap::new();
    let started = engine.now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let runs = engine
            .policy()
            .set
            .drills
            .as_ref()
            .map(|d| d.runs.clone())
            .unwrap_or_default();
        for s in &runs {
            let now = engine.now();
            let slot = drill::slot_start(now, s.every, s.at_minute);
            if handled.get(&s.resource) == Some(&slot) {
                continue;
            }
            let first = engine
                .store
                .first_drill_at(&s.resource)
                .await
                .ok()
                .flatten();
            let last_passed = engine
                .store
                .last_passed_drill(&s.resource)
                .await
                .ok()
                .flatten()
                .map(|d| d.started_at);
            let ran_this_slot = engine
                .store
                .drills(Some(&s.resource), 1)
                .await
                .ok()
                .and_then(|mut v| v.pop())
                .is_some_and(|d| d.started_at >= slot);
            // A fresh install waits for the first slot start after the server started.
            let due = !ran_this_slot && (slot > started || first.is_some());
            handled.insert(s.resource.clone(), slot);
            if drill::overdue(last_passed, first, now, s.every)
                && reported.get(&s.resource) != Some(&slot)
            {
                reported.insert(s.resource.clone(), slot);
                if let Err(e) = engine.drill_overdue(s, last_passed).await {
                    tracing::error!(resource = %s.resource, error = %e, "could not report an overdue drill");
                }
            }
            if due {
                match engine
                    .drill(s, "scheduled", Some(slot), "system", &DrillAuditCheck)
                    .await
                {
                    Ok(d) => {
                        tracing::info!(resource = %s.resource, verdict = %d.verdict, "scheduled drill finished")
                    }
                    Err(e) => {
                        tracing::info!(resource = %s.resource, error = %e, "scheduled drill not run (slot claimed elsewhere or store error)")
                    }
                }
            }
        }
        let now = engine.now();
        let next = runs
            .iter()
            .map(|s| now.until(drill::next_due(now, s.every, s.at_minute)))
            .min()
            .unwrap_or(CHECK)
            .min(CHECK)
            .max(Duration::from_millis(100));
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Seeds the drill gauges of `/metrics` from the stored results (after a restart).
pub async fn seed_drill_metrics(engine: &Engine) {
    let runs = engine
        .policy()
        .set
        .drills
        .as_ref()
        .map(|d| d.runs.clone())
        .unwrap_or_default();
    for s in runs {
        if let Ok(Some(last)) = engine
            .store
            .drills(Some(&s.resource), 1)
            .await
            .map(|mut v| v.pop())
        {
            let passed = engine
                .store
                .last_passed_drill(&s.resource)
                .await
                .ok()
                .flatten()
                .map(|d| d.started_at.unix_secs());
            let total = last.timings["total_ms"].as_u64().unwrap_or(0);
            engine.metrics.drill_finished(
                &s.resource,
                if last.verdict == "passed" {
                    passed
                } else {
                    None
                },
                total,
            );
        }
    }
}
