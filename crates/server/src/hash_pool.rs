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

/// A check thread's Argon2 working memory, kept between checks: allocated once per thread (19
/// MiB with the default parameters) instead of per check, so the allocator cannot pile up freed
/// 19 MiB buffers (measured: ~235 MB after a few dozen checks with per-check allocation).
pub type Scratch = Vec<argon2::Block>;

type Job = Box<dyn FnOnce(&mut Scratch) + Send>;

pub struct HashPool {
    permits: Arc<Semaphore>,
    queued: AtomicUsize,
    workers: usize,
    max_queue: usize,
    /// Checks run on `workers` threads of their own: Argon2's 19 MiB buffers stay in those
    /// threads' allocator arenas instead of spreading over every blocking-pool thread.
    jobs: std::sync::mpsc::Sender<Job>,
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
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-check-{i}"))
                .spawn(move || {
                    let mut scratch = Scratch::new();
                    loop {
                        // The pool is gone when the sender is dropped: the thread ends.
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut scratch),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-check thread");
            }
        }
        HashPool {
            permits: Arc::new(Semaphore::new(workers)),
            queued: AtomicUsize::new(0),
            workers,
            max_queue,
            jobs,
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

    /// Runs `f` (a password hash or check) on a check thread once a slot is free. Refuses
    /// with `429 busy` when the queue is full. The slot is held until `f` returns, even when the
    /// caller goes away, so memory stays bounded by `workers` checks.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Scratch) -> T + Send + 'static,
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |scratch: &mut Scratch| {
            let out = f(scratch);
            drop(permit);
            let _ = tx.send(out);
        });
        self.jobs
            .send(job)
            .map_err(|_| ApiError::Internal("the password checker stopped".into()))?;
        rx.await
            .map_err(|_| ApiError::Internal("a password check failed".into()))
    }
}

/// Largest Argon2 memory a stored hash may ask for (KiB): a bigger one is refused, not run.
const MAX_M_COST_KIB: u32 = 256 * 1024;

/// Checks `password` against an Argon2 PHC string, in `scratch` (grown as needed, then kept).
/// The same result as argon2's `PasswordVerifier`, without a fresh allocation per check.
pub fn verify(scratch: &mut Scratch, password: &[u8], phc: &str) -> bool {
    use argon2::password_hash::PasswordHash;
    use argon2::{Algorithm, Argon2, Params, Version};
    use subtle::ConstantTimeEq;
    let Ok(h) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(h.algorithm) else {
        return false;
    };
    let version = match h.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&h) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST_KIB {
        tracing::error!(
            m_cost_kib = params.m_cost(),
            "a stored password hash asks for too much memory; refusing it"
        );
        return false;
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if scratch.len() < blocks {
        scratch.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    argon
        .hash_password_into_with_memory(password, salt, &mut out, &mut scratch[..blocks])
        .is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
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

/// Hashes a password with Argon2id (PHC string).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("password hashing failed: {e}")))
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
                pool.run(move |_| {
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
        assert!(pool.run(|_| 7).await.is_ok());
        assert_eq!(pool.queued.load(Ordering::SeqCst), 0);
    }

    /// The scratch-memory check agrees with argon2's own, across parameters, and reuses memory.
    #[test]
    fn verify_matches_argon2() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let mut scratch = Scratch::new();
        for params in [
            argon2::Params::default(),
            argon2::Params::new(8 * 1024, 2, 2, Some(16)).unwrap(),
        ] {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            let phc =
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                    .hash_password(b"right", &salt)
                    .unwrap()
                    .to_string();
            assert!(verify(&mut scratch, b"right", &phc));
            assert!(!verify(&mut scratch, b"wrong", &phc));
        }
        assert_eq!(scratch.len(), 19 * 1024, "kept at the largest size seen");
        let engine_hash = hash_password("pw").unwrap();
        assert!(verify(&mut scratch, b"pw", &engine_hash));
        assert!(!verify(&mut scratch, b"pw", "not a phc string"));
    }

    #[tokio::test]
    async fn retry_after_header_is_sent() {
        use axum::response::IntoResponse;
        let r = busy().into_response();
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
    }
}
