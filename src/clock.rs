//! The broker's clocks, in one place, so that every caller says which one it means.
//!
//! - [`unix_ms`]: the wall clock, milliseconds since the Unix epoch. Record timestamps,
//!   retention, producer-state expiry and the event log use it; it can jump (NTP, an operator),
//!   so nothing that measures a duration or a deadline reads it.
//! - [`monotonic_ms`]: a process-wide monotonic clock, milliseconds since its first read.
//!   Liveness, leases and the controller's timing use it; it never goes backwards and means
//!   nothing outside this process.
//! - [`Stopwatch`]: a monotonic clock with an origin of its own (a lease's or a replica
//!   manager's time base), for state that keeps its own zero.
//!
//! May depend on: `std` only.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch on the wall clock (0 if the clock is set before 1970).
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Milliseconds on the process-wide monotonic clock (since its first read in this process).
pub fn monotonic_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A monotonic clock whose zero is the moment it was started.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    /// A stopwatch reading 0 now.
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// Milliseconds since [`Stopwatch::start`].
    pub fn elapsed_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

impl Default for Stopwatch {
    fn default() -> Self {
        Self::start()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_is_after_2020_and_the_monotonic_ones_never_go_back() {
        assert!(
            unix_ms() > 1_577_836_800_000,
            "wall clock before 2020: {}",
            unix_ms()
        );
        let sw = Stopwatch::start();
        let (a, sa) = (monotonic_ms(), sw.elapsed_ms());
        let until = Instant::now() + std::time::Duration::from_millis(5);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        let (b, sb) = (monotonic_ms(), sw.elapsed_ms());
        assert!(
            b >= a + 5 && sb >= sa + 5,
            "monotonic {a}->{b}, stopwatch {sa}->{sb}"
        );
    }
}
