//! Backoff for the error paths of background loops and the accept loop.

use std::time::Duration;

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
