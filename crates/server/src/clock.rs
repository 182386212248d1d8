//! Where time comes from: the system clock in production; tests inject their own.

use breakglass_core::time::Timestamp;

/// Where time comes from. The system clock in production; tests inject their own.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }
}

/// A node's clock set by the database's: `base` plus the offset last measured against the
/// store ([`DbClock::sync`]). With several nodes on one database every deadline and lease
/// (expiry, approval timeouts, alert retries, leases) is then on the database's clock, so a
/// node whose own clock is minutes off still ends grants at the second they expire.
pub struct DbClock {
    base: std::sync::Arc<dyn Clock>,
    offset_ms: std::sync::atomic::AtomicI64,
}

/// A measurement slower than this (round trip) says little about the offset; it is skipped.
const MAX_RTT_MS: i64 = 500;

impl DbClock {
    pub fn new(base: std::sync::Arc<dyn Clock>) -> Self {
        DbClock {
            base,
            offset_ms: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// The offset in use: database clock minus this node's (ms).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads the database's clock and takes the offset from the middle of the round trip.
    /// Returns the offset, or `None` when the round trip was too slow to tell.
    pub async fn sync(
        &self,
        store: &dyn breakglass_store::Store,
    ) -> Result<Option<i64>, breakglass_store::StoreError> {
        let before = self.base.now().0;
        let db = store.db_now().await?.0;
        let after = self.base.now().0;
        let rtt = after.saturating_sub(before);
        if !(0..=MAX_RTT_MS).contains(&rtt) {
            return Ok(None);
        }
        let offset = db.saturating_sub(before.saturating_add(rtt / 2));
        self.offset_ms
            .store(offset, std::sync::atomic::Ordering::Relaxed);
        Ok(Some(offset))
    }
}

impl Clock for DbClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.base.now().0.saturating_add(self.offset_ms()))
    }
}
