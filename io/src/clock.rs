//! Time as a seam (STYLE §9): the engine asks a [`Clock`] for the time, so simulations can
//! drive it from a seed.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of wall-clock and monotonic time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch (record timestamps, segment age, retention).
    fn now_ms(&self) -> i64;
    /// Nanoseconds on a monotonic clock with an arbitrary origin (latency, timeouts).
    fn monotonic_ns(&self) -> u64;
}

/// The operating system's clocks.
#[derive(Debug, Clone)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self { origin: Instant::now() }
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }
    fn monotonic_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    wall_ms: Arc<AtomicI64>,
    monotonic_ns: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `wall_ms` (Unix milliseconds) and monotonic 0.
    pub fn new(wall_ms: i64) -> Self {
        Self {
            wall_ms: Arc::new(AtomicI64::new(wall_ms)),
            monotonic_ns: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Move both clocks forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.wall_ms.fetch_add(i64::try_from(ms).unwrap_or(i64::MAX), Ordering::SeqCst);
        self.monotonic_ns.fetch_add(ms.saturating_mul(1_000_000), Ordering::SeqCst);
    }

    /// Set the wall clock (it may go backwards, as real wall clocks do); monotonic time is
    /// unaffected.
    pub fn set_wall_ms(&self, wall_ms: i64) {
        self.wall_ms.store(wall_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.wall_ms.load(Ordering::SeqCst)
    }
    fn monotonic_ns(&self) -> u64 {
        self.monotonic_ns.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        let shared = clock.clone();
        assert_eq!(clock.now_ms(), 1_000);
        shared.advance_ms(5);
        assert_eq!(clock.now_ms(), 1_005);
        assert_eq!(clock.monotonic_ns(), 5_000_000);
        clock.set_wall_ms(10);
        assert_eq!(shared.now_ms(), 10);
        assert_eq!(shared.monotonic_ns(), 5_000_000);
    }

    #[test]
    fn system_clock_is_plausible() {
        let clock = SystemClock::default();
        assert!(clock.now_ms() > 1_600_000_000_000);
        let a = clock.monotonic_ns();
        let b = clock.monotonic_ns();
        assert!(b >= a);
    }
}
