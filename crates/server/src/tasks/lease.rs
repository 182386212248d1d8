//! Singleton jobs among several nodes: one node at a time holds a job's lease (on the
//! database's clock) and renews it while it runs; its writes carry the lease's term, checked in
//! the same transaction, so a node that lost the lease (paused past its end, cut off) writes
//! nothing as the job's holder. With one node the lease is simply always this node's.

use crate::engine::Engine;
use breakglass_store::{Change, StoreError};
use std::time::Duration;

pub struct Singleton {
    name: &'static str,
    ttl: Duration,
    term: Option<i64>,
}

impl Singleton {
    pub fn new(name: &'static str, ttl: Duration) -> Self {
        Singleton {
            name,
            ttl,
            term: None,
        }
    }

    /// Claims the lease (or renews it); the term this node holds it in, or `None` when another
    /// node holds it.
    pub async fn hold(&mut self, engine: &Engine) -> Result<Option<i64>, StoreError> {
        let now = engine.now();
        let claim = Change::ClaimLease {
            name: self.name.into(),
            holder: engine.node_id.clone(),
            now,
            until: now.plus(self.ttl),
        };
        match engine.store.commit(vec![claim], vec![]).await {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => {
                if self.term.take().is_some() {
                    tracing::info!(job = self.name, "another node took over this job");
                }
                if !self.take_from_dead(engine).await? {
                    return Ok(None);
                }
            }
            Err(e) => {
                self.term = None;
                return Err(e);
            }
        }
        let lease = engine.store.lease(self.name).await?;
        let term = lease.filter(|l| l.holder == engine.node_id).map(|l| l.term);
        if term.is_some() && self.term != term {
            tracing::info!(job = self.name, term = ?term, "this node runs the job");
        }
        self.term = term;
        Ok(term)
    }

    /// A holder that was a process of this host which is gone (this node restarted after a
    /// crash) is not waited for: the lease is taken from it at once, in a new term. A live
    /// process, or one of another host, keeps it until it ends.
    async fn take_from_dead(&self, engine: &Engine) -> Result<bool, StoreError> {
        let Some(lease) = engine.store.lease(self.name).await? else {
            return Ok(false);
        };
        if !holder_is_dead_here(&lease.holder, &engine.node_id) {
            return Ok(false);
        }
        let take = Change::TakeLease {
            name: self.name.into(),
            holder: engine.node_id.clone(),
            previous: lease.holder.clone(),
            until: engine.now().plus(self.ttl),
        };
        match engine.store.commit(vec![take], vec![]).await {
            Ok(_) => {
                tracing::info!(job = self.name, previous = %lease.holder, "took over the job from a process of this host that is gone");
                Ok(true)
            }
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The fence for a write made as the holder: the unit commits only if this node still
    /// holds the lease in the term it claimed.
    pub fn fence(&self, engine: &Engine) -> Option<Change> {
        self.term.map(|term| Change::HoldsLease {
            name: self.name.into(),
            holder: engine.node_id.clone(),
            term,
            now: engine.now(),
        })
    }

    /// Hands the lease over at once (clean shutdown).
    pub async fn release(&mut self, engine: &Engine) {
        if self.term.take().is_some() {
            let c = Change::ReleaseLease {
                name: self.name.into(),
                holder: engine.node_id.clone(),
            };
            let _ = engine.store.commit(vec![c], vec![]).await;
        }
    }
}

/// Whether `holder` (`host:pid:random`) names a process of this host (same host as `me`)
/// that no longer runs.
fn holder_is_dead_here(holder: &str, me: &str) -> bool {
    let mut theirs = holder.split(':');
    let mut mine = me.split(':');
    let (Some(host), Some(pid)) = (theirs.next(), theirs.next()) else {
        return false;
    };
    let (Some(my_host), Some(my_pid)) = (mine.next(), mine.next()) else {
        return false;
    };
    if host.is_empty() || host != my_host || pid == my_pid {
        return false;
    }
    match pid.parse::<u32>() {
        Ok(p) if p > 0 => !std::path::Path::new(&format!("/proc/{p}")).exists(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::holder_is_dead_here;

    #[test]
    fn only_a_gone_process_of_this_host_is_taken_over() {
        let me = format!("h1:{}:aaaa", std::process::id());
        // pid 1 runs; a huge pid does not.
        assert!(!holder_is_dead_here("h1:1:bbbb", &me));
        assert!(holder_is_dead_here("h1:4000000000:bbbb", &me));
        assert!(!holder_is_dead_here("h2:4000000000:bbbb", &me));
        assert!(!holder_is_dead_here(&me, &me));
        assert!(!holder_is_dead_here("", &me));
        assert!(!holder_is_dead_here(":4000000000:x", &me));
        assert!(!holder_is_dead_here("h1:notapid:x", &me));
    }
}
