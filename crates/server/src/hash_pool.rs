//! Bounds what password hashing can cost. Each Argon2id check takes 19 MiB and a core for tens of
//! milliseconds, and anyone who can reach `/login` can ask for one: without a bound, 256
//! concurrent logins took the server to 7.9 GB. At most `workers` checks run at once (sized to
//! the machine), at most `max_queue` more wait for a slot, and beyond that the caller gets
//! `429 busy` with `Retry-After` before any work is done.

use crate::error::ApiError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// Seconds a refused caller is told to wait (a check takes well under a second).
pub const BUSY_RETRY_SECS: u64 = 1;

pub struct HashPool {
    permits: Arc<Semaphore>,
    queued: AtomicUsize,
    workers: usize,
    max_queue: usize,
}

/// Leaves the queue when dropped, so a cancelled request frees its place.
struct QueueSlot<'a>(&'a AtomicUsize);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HashPool {
    /// `workers` concurrent checks (at least 1) and `max_queue` waiting callers.
    pub fn new(workers: usize, max_queue: usize) -> Self {
        let workers = workers.max(1);
        HashPool {
            permits: Arc::new(Semaphore::new(workers)),
            queued: AtomicUsize::new(0),
            workers,
            max_queue,
        }
    }

    /// One check per core (at least 2), and a queue of 32.
    pub fn for_machine() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Self::new(cores.max(2), 32)
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Runs `f` (a password hash or check) on the blocking pool once a slot is free. Refuses
    /// with `429 busy` when the queue is full. The slot is held until `f` returns, even when the
    /// caller goes away, so memory stays bounded by `workers` checks.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.queued.fetch_add(1, Ordering::SeqCst) >= self.max_queue {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    return Err(busy());
                }
                let _slot = QueueSlot(&self.queued);
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| ApiError::Internal("the password checker stopped".into()))?
            }
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|e| ApiError::Internal(format!("a password check failed: {e}")))
    }
}

fn busy() -> ApiError {
    ApiError::TooMany {
        slug: "busy",
        message: format!(
            "the server is busy checking other passwords; retry after {BUSY_RETRY_SECS} s"
        ),
        hint: Some(format!(
            "wait {BUSY_RETRY_SECS} s and try again (nothing was checked or changed)"
        )),
        retry_after_secs: BUSY_RETRY_SECS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Many callers at once: never more than `workers` run together, the queue is bounded, the
    /// rest are refused with 429 busy and Retry-After.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn bounds_concurrency_and_queue() {
        let pool = Arc::new(HashPool::new(2, 3));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                pool.run(move || {
                    let n = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        let mut ok = 0;
        let mut busy = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => ok += 1,
                Err(e) => {
                    assert_eq!(e.slug(), "busy");
                    assert_eq!(e.status().as_u16(), 429);
                    assert!(e.to_string().contains("retry after"), "{e}");
                    busy += 1;
                }
            }
        }
        assert!(peak.load(Ordering::SeqCst) <= 2);
        assert!(ok >= 2, "{ok}");
        assert!(
            busy > 0,
            "40 callers against 2 workers + 3 queued: some are refused"
        );
        assert_eq!(ok + busy, 40);
        // Everything drained: a new call runs at once.
        assert!(pool.run(|| 7).await.is_ok());
        assert_eq!(pool.queued.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn retry_after_header_is_sent() {
        use axum::response::IntoResponse;
        let r = busy().into_response();
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
    }
}
