//! Keeps a node's clock on the database's (several nodes on PostgreSQL): every deadline and
//! lease is then judged by one clock, whatever this machine's says.

use crate::clock::DbClock;
use crate::engine::Engine;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the offset is measured again (clocks drift slowly; NTP steps are rare).
const EVERY: Duration = Duration::from_secs(10);

/// An offset beyond this is worth an operator's look (the node still uses the database's).
const WARN_MS: i64 = 2_000;

/// Measures the offset now and then every [`EVERY`], until shutdown.
pub async fn clock_sync(
    engine: Arc<Engine>,
    clock: Arc<DbClock>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => return,
        }
        match clock.sync(engine.store.as_ref()).await {
            Ok(Some(offset)) => {
                engine.metrics.clock_offset(offset);
                if offset.abs() > WARN_MS && !warned {
                    tracing::warn!(
                        offset_ms = offset,
                        "this node's clock is off from the database's; deadlines follow the database's"
                    );
                }
                warned = offset.abs() > WARN_MS;
            }
            Ok(None) => tracing::debug!("clock offset not measured: slow round trip"),
            Err(e) => tracing::warn!(error = %e, "cannot read the database's clock"),
        }
    }
}
