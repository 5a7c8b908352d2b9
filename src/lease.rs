//! This broker's own view of whether the cluster still counts it as live (its self-lease).
//!
//! The controller fences a broker `broker.session.timeout.ms` after the last heartbeat it
//! *received*; the broker renews its self-lease to `sent + session timeout` only for a
//! heartbeat the controller answered and whose metadata it has applied. So the self-lease
//! always ends no later than the controller could fence the broker, and after a pause or a
//! network cut it stays expired until the broker has heard from the controller and caught up
//! with the metadata it was told about — by then it knows what it lost while away. Work that
//! must not be done by a deposed broker (serving a group's committed offsets, whose new
//! coordinator may already have taken newer commits) checks [`SelfLease::is_valid`] first.
//!
//! Depends on nothing but std.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// See the module documentation.
#[derive(Debug)]
pub struct SelfLease {
    epoch: Instant,
    /// Milliseconds after `epoch` until which the lease holds; 0: never renewed.
    valid_until_ms: AtomicU64,
    session_ms: u64,
}

impl SelfLease {
    /// An expired lease that [`SelfLease::renew`] extends by `session_ms` at a time.
    pub fn new(session_ms: u64) -> Self {
        Self {
            epoch: Instant::now(),
            valid_until_ms: AtomicU64::new(0),
            session_ms,
        }
    }

    /// The lease's clock now (pass it to [`SelfLease::renew`] for a heartbeat sent now).
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The controller answered a heartbeat sent at `sent_ms` and its metadata is applied.
    pub fn renew(&self, sent_ms: u64) {
        self.valid_until_ms
            .fetch_max(sent_ms + self.session_ms, Ordering::AcqRel);
    }

    /// Whether the cluster may still count this broker as live.
    pub fn is_valid(&self) -> bool {
        self.now_ms() < self.valid_until_ms.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_a_session_after_the_renewing_heartbeat_was_sent() {
        let l = SelfLease::new(60_000);
        assert!(!l.is_valid(), "a lease never renewed is not valid");
        l.renew(l.now_ms());
        assert!(l.is_valid());
        let short = SelfLease::new(0);
        short.renew(short.now_ms());
        assert!(!short.is_valid());
        // An older heartbeat's answer never shortens the lease.
        l.renew(0);
        assert!(l.is_valid());
    }
}
