//! The audit streams and the checkpoint witness: one loop per stream, one per witness
//! destination, each following its cursor in the store (see [`crate::stream`]); a supervisor
//! starts loops for streams added to the policy (a loop ends when its stream is removed).

use crate::backoff::Backoff;
use crate::engine::Engine;
use crate::stream::{StreamState, witness};
use breakglass_core::audit::AuditRecord;
use breakglass_core::policy::StreamStart;
use breakglass_store::{Change, Cursor, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Events read per delivery, and their largest total body size.
const BATCH: u32 = 500;
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Longest wait for new events when no commit woke us (commits on other nodes).
const IDLE_POLL: Duration = Duration::from_secs(2);
/// Retry delays after a failed delivery: doubling from the first, up to the last.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The witness destinations and their cursor names (not valid stream names: no clash).
const WITNESS_DIR: &str = "witness:dir";
const WITNESS_URL: &str = "witness:url";

/// Starts and watches the loops of every configured stream and witness destination.
pub async fn streams(engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        running.retain(|_, h| !h.is_finished());
        let policy = engine.policy();
        let mut wanted: Vec<String> = policy.set.streams.iter().map(|s| s.name.clone()).collect();
        if let Some(w) = &policy.set.witness {
            if w.dir.is_some() {
                wanted.push(WITNESS_DIR.into());
            }
            if w.url.is_some() {
                wanted.push(WITNESS_URL.into());
            }
        }
        for name in wanted {
            if running.contains_key(&name) {
                continue;
            }
            let (e, rx) = (engine.clone(), shutdown.clone());
            let task = if name.starts_with("witness:") {
                tokio::spawn(witness_loop(e, name.clone(), rx))
            } else {
                tokio::spawn(stream_loop(e, name.clone(), rx))
            };
            running.insert(name, task);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            for (_, h) in running {
                let _ = h.await;
            }
            return;
        }
    }
}

/// The cursor `name`, opened at `start` the first time.
async fn cursor(engine: &Engine, name: &str, start: u64) -> Result<Cursor, StoreError> {
    if let Some(c) = engine.store.cursor(name).await? {
        return Ok(c);
    }
    engine
        .store
        .commit(
            vec![Change::OpenCursor {
                name: name.into(),
                position: start,
                at: engine.now(),
            }],
            vec![],
        )
        .await?;
    engine
        .store
        .cursor(name)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("cursor {name}")))
}

/// The next batch after `position`: consecutive events, at most [`BATCH`] and about
/// [`MAX_BATCH_BYTES`] (at least one).
async fn next_batch(engine: &Engine, position: u64) -> Result<Vec<AuditRecord>, String> {
    let mut recs = engine
        .store
        .audit_records(position + 1, BATCH)
        .await
        .map_err(|e| format!("reading the audit log: {e}"))?;
    let mut bytes = 0;
    let keep = recs
        .iter()
        .take_while(|r| {
            bytes += r.body.len();
            bytes <= MAX_BATCH_BYTES
        })
        .count()
        .max(1);
    recs.truncate(keep);
    for (i, r) in recs.iter().enumerate() {
        if r.seq != position + 1 + i as u64 {
            return Err(format!(
                "the audit log has a gap at event {} (run `breakglass audit verify`)",
                position + 1 + i as u64
            ));
        }
    }
    Ok(recs)
}

/// Records a failed attempt (cursor stays) and returns how long to wait.
async fn failed(engine: &Engine, name: &str, error: String, backoff: &mut Backoff) -> Duration {
    engine.metrics.stream_failed(name);
    let wait = backoff.failed(&format!("{name}: {error}"));
    let change = Change::CursorFailed {
        name: name.into(),
        error,
        at: engine.now(),
    };
    if let Err(e) = engine.store.commit(vec![change], vec![]).await {
        tracing::warn!(stream = name, error = %e, "cannot record the failed delivery");
    }
    wait
}

async fn advance(engine: &Engine, name: &str, from: u64, to: u64) -> Result<(), StoreError> {
    let change = Change::AdvanceCursor {
        name: name.into(),
        from,
        to,
        at: engine.now(),
    };
    engine.store.commit(vec![change], vec![]).await.map(|_| ())
}

/// Sleeps `wait`, unless shutting down; returns whether to go on.
async fn pause(wait: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = shutdown.changed() => {}
    }
    !*shutdown.borrow()
}

async fn stream_loop(engine: Arc<Engine>, name: String, mut shutdown: watch::Receiver<bool>) {
    let mut state = StreamState::default();
    let mut backoff = Backoff::new("delivering an audit stream", RETRY_FIRST, RETRY_MAX);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let policy = engine.policy();
        let Some(stream) = policy.set.stream(&name).cloned() else {
            tracing::info!(stream = %name, "audit stream removed from the policy: stopped");
            return;
        };
        // Woken by any commit from here on (a commit between reading and waiting counts).
        let wake = engine.stream_wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let head = engine
            .store
            .audit_head()
            .await
            .ok()
            .flatten()
            .map_or(0, |h| h.seq);
        let start = match stream.start {
            StreamStart::Beginning => 0,
            StreamStart::Now => head,
        };
        let batch = match cursor(&engine, &name, start).await {
            Ok(c) => next_batch(&engine, c.position).await.map(|b| (c, b)),
            Err(e) => Err(format!("reading its cursor: {e}")),
        };
        let (cursor, recs) = match batch {
            Ok(b) => b,
            Err(e) => {
                let wait = failed(&engine, &name, e, &mut backoff).await;
                if !pause(wait, &mut shutdown).await {
                    return;
                }
                continue;
            }
        };
        engine
            .metrics
            .stream_lag(&name, head.saturating_sub(cursor.position));
        let Some(last) = recs.last().map(|r| r.seq) else {
            tokio::select! {
                _ = &mut wake => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        // A shutdown cancels a delivery in flight: it is redone after the restart.
        let result = tokio::select! {
            r = state.deliver(&stream, &engine.keys.origin, &recs) => r,
            _ = shutdown.changed() => return,
        };
        let result = match result {
            Ok(()) => advance(&engine, &name, cursor.position, last)
                .await
                .map_err(|e| format!("delivered, but cannot record it (will deliver again): {e}")),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                backoff.succeeded();
                engine.metrics.stream_delivered(&name, recs.len() as u64);
                engine.metrics.stream_lag(&name, head.saturating_sub(last));
            }
            Err(e) => {
                let wait = failed(&engine, &name, e, &mut backoff).await;
                if !pause(wait, &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

/// How long a stopping server keeps trying to copy its final checkpoint to the witness.
const FINAL_COPY: Duration = Duration::from_secs(5);

async fn witness_loop(engine: Arc<Engine>, name: String, mut shutdown: watch::Receiver<bool>) {
    let http = reqwest::Client::builder()
        .user_agent(concat!("breakglass/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("HTTP client: {e}"));
    let mut backoff = Backoff::new(
        "copying a checkpoint to the witness",
        RETRY_FIRST,
        RETRY_MAX,
    );
    loop {
        if *shutdown.borrow() {
            // The final checkpoint is signed by now (the server stops this loop last).
            let last = copy_pending(&engine, &name, &http);
            match tokio::time::timeout(FINAL_COPY, last).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(witness = %name, error = %e, "the final checkpoint was not copied to the witness; it will be at the next start")
                }
                Err(_) => {
                    tracing::warn!(witness = %name, "copying the final checkpoint to the witness timed out; it will be copied at the next start")
                }
            }
            return;
        }
        let wake = engine.witness_wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let copied = tokio::select! {
            r = copy_pending(&engine, &name, &http) => r,
            _ = shutdown.changed() => continue,
        };
        match copied {
            Ok(None) => return,
            Ok(Some(0)) => {
                backoff.succeeded();
                tokio::select! {
                    _ = &mut wake => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Ok(Some(_)) => backoff.succeeded(),
            Err(e) => {
                let wait = failed(&engine, &name, e, &mut backoff).await;
                // The final copy is tried at shutdown whatever the backoff says.
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

/// Copies the checkpoints after the witness's cursor, in order, moving it after each; returns
/// how many (None when this witness destination is no longer configured).
async fn copy_pending(
    engine: &Engine,
    name: &str,
    http: &Result<reqwest::Client, String>,
) -> Result<Option<usize>, String> {
    let policy = engine.policy();
    let Some(w) = &policy.set.witness else {
        return Ok(None);
    };
    let dest = if name == WITNESS_DIR { &w.dir } else { &w.url };
    let Some(dest) = dest else {
        return Ok(None);
    };
    let c = cursor(engine, name, 0)
        .await
        .map_err(|e| format!("reading its cursor: {e}"))?;
    let cps = engine
        .store
        .checkpoints_after(c.position, 100)
        .await
        .map_err(|e| format!("reading checkpoints: {e}"))?;
    let mut position = c.position;
    for cp in &cps {
        if name == WITNESS_DIR {
            let (dir, note, size) = (dest.clone(), cp.note.clone(), cp.size);
            tokio::task::spawn_blocking(move || witness::write_dir(&dir, size, &note))
                .await
                .map_err(|e| format!("writer: {e}"))??;
        } else {
            let h = http.as_ref().map_err(Clone::clone)?;
            let origin = &engine.keys.origin;
            witness::post(h, w, dest, origin, cp.size, &cp.note, engine.now()).await?;
        }
        advance(engine, name, position, cp.size)
            .await
            .map_err(|e| format!("copied, but cannot record it: {e}"))?;
        engine.metrics.stream_delivered(name, 1);
        position = cp.size;
    }
    Ok(Some(cps.len()))
}
