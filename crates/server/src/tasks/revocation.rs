//! Revoking ended grants' credentials at their targets, and sweeping targets for orphans.

use crate::backoff::Backoff;
use crate::engine::Engine;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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
                    .for_each_concurrent(16, |cred| claim_and_revoke(&engine, cred))
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

/// How long a claimed revocation is this node's: a node that dies mid-revocation leaves it to
/// another node (or itself restarted) after this.
const REVOCATION_LEASE: Duration = Duration::from_secs(20);

/// Claims a due revocation (another node may have claimed it first: then it is theirs), then
/// revokes it; the record of the attempt is fenced on the claim. No lock is held while the
/// target is called.
async fn claim_and_revoke(engine: &Engine, mut cred: breakglass_store::CredentialRecord) {
    use breakglass_store::Change;
    let until = engine.now().plus(REVOCATION_LEASE);
    let Some(expected_next) = cred.next_attempt_at else {
        return; // not due (revoked meanwhile)
    };
    let claim = Change::LeaseRevocation {
        grant_id: cred.grant_id.clone(),
        expected_next,
        until,
    };
    if engine.store.commit(vec![claim], vec![]).await.is_err() {
        return; // another node has it (or the store is failing: the next round retries)
    }
    cred.next_attempt_at = Some(until);
    revoke_one(engine, cred).await;
}

async fn revoke_one(engine: &Engine, cred: breakglass_store::CredentialRecord) {
    use breakglass_store::Change;
    use serde_json::json;
    // The grant names the events (who, which resource, which ticket): read it before the
    // target is touched. A store that cannot answer now gets a few tries; if it still cannot,
    // the attempt waits for the next round (the claim runs out) rather than record an event
    // no grant's trail would show.
    let mut tries = 0;
    let grant = loop {
        match engine.store.grant(&cred.grant_id).await {
            Ok(g) => break g,
            Err(e) if tries < 4 => {
                tries += 1;
                tracing::warn!(grant = %cred.grant_id, error = %e, "revocation: cannot read the grant; trying again");
                tokio::time::sleep(Duration::from_millis(250 << tries)).await;
            }
            Err(e) => {
                tracing::error!(grant = %cred.grant_id, error = %e, "revocation: cannot read the grant; the next round retries");
                return;
            }
        }
    };
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
    let info = grant.as_ref().map(|g| g.info());
    if result.is_ok()
        && let Some(breakglass_core::grant::AnyGrant::Ended(e)) = &grant
    {
        engine
            .metrics
            .observe_revocation_lag(at.0.saturating_sub(e.state.ended_at.0));
    }
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
    let fence = cred
        .next_attempt_at
        .map(|until| Change::RevocationLeaseHeld {
            grant_id: cred.grant_id.clone(),
            until,
        });
    let mut changes: Vec<Change> = fence.into_iter().collect();
    changes.push(change);
    if let Err(e) = engine.commit(changes, ev.into_iter().collect()).await {
        tracing::error!(grant = %cred.grant_id, error = %e, "cannot record a revocation attempt");
    }
}

/// Sweeps targets for credentials breakglass created that no open grant owns (a crash between
/// "created at the target" and "grant recorded", a hand-restored database…) and removes them,
/// audited as `credential.orphan_removed`; also closes silent recorded sessions of ended grants
/// and applies recording retention. Runs at start-up and every `every`.
/// With several nodes, one sweeps at a time: the holder of the sweeper's lease (renewed each
/// round; it lasts a round and 10 s more, so another node takes over after the holder dies).
pub async fn sweeper(engine: Arc<Engine>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut failing = std::collections::HashSet::new();
    let mut lease = super::Singleton::new("sweeper", every + Duration::from_secs(10));
    loop {
        match lease.hold(&engine).await {
            Ok(Some(_)) => {
                sweep_once(&engine, &mut failing, lease.fence(&engine)).await;
                if let Err(e) = engine.tidy_recordings().await {
                    tracing::error!(error = %e, "cannot tidy recordings; will retry");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "sweep: cannot claim the sweeper's lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {
                lease.release(&engine).await;
                return;
            }
        }
    }
}

/// One sweep over every resource whose connector can sweep. A failure is audited once per
/// resource until a sweep there succeeds again (`failing` remembers which).
/// Its records are fenced on `fence` (the sweeper's lease) when given.
pub async fn sweep_once(
    engine: &Engine,
    failing: &mut std::collections::HashSet<String>,
    fence: Option<breakglass_store::Change>,
) {
    use serde_json::json;
    let policy = engine.policy();
    for r in &policy.set.resources {
        let Ok(Some(c)) = engine.connector(r).await else {
            continue;
        };
        // Owned = open under ANY resource: several resources may share one target (two
        // postgres resources on one cluster see each other's `bg_` roles), and another
        // resource's live credential is no orphan. Read just before this resource's sweep, so
        // only the sweep grace has to cover issues recorded meanwhile.
        let mut owned = Vec::new();
        for other in &policy.set.resources {
            match engine.store.open_credentials(&other.name).await {
                Ok(list) => owned.extend(list.into_iter().map(|c| c.handle)),
                Err(e) => {
                    tracing::error!(error = %e, "sweep: cannot read open credentials");
                    return;
                }
            }
        }
        // A sealed glass case's emergency PostgreSQL logins, until their day ends.
        match engine.store.glass_case_live_roles(engine.now()).await {
            Ok(list) => owned.extend(list.into_iter().map(|g| json!({"role": g.role}))),
            Err(e) => {
                tracing::error!(error = %e, "sweep: cannot read glass-case logins");
                return;
            }
        }
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
                if let Err(e) = engine.commit(fence.iter().cloned().collect(), events).await {
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
                    if let Err(e) = engine
                        .commit(fence.iter().cloned().collect(), vec![ev])
                        .await
                    {
                        tracing::error!(error = %e, "sweep: cannot audit a failure");
                    }
                }
            }
        }
    }
}
