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
//! Also [`ClusterLiveness`]: the controller's liveness table as this broker last received it
//! with a heartbeat answer — which brokers are suspect (their partitions are answered without
//! a leader) and, should this broker become controller, when each broker was last heard — and
//! the brokers whose inter-broker port this broker itself found refusing connections (a
//! partition leader that died under its followers, known before the controller fences it).
//!
//! And [`HeardBrokers`]: when the active controller last heard each broker, as DescribeQuorum
//! and RemoveRaftVoter read it through `Broker` (the controller's leases themselves belong to
//! the controller loop in `cluster`).
//!
//! Depends on nothing but std and `clock` (std only).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::clock::Stopwatch;

/// See the module documentation.
#[derive(Debug)]
pub struct SelfLease {
    epoch: Stopwatch,
    /// Milliseconds after `epoch` until which the lease holds; 0: never renewed.
    valid_until_ms: AtomicU64,
    session_ms: u64,
    /// The broker is stopping: the lease never holds again. (Its inter-broker port may close
    /// before the process exits, and the controller fences a broker whose port refuses at
    /// once, before the session would end.)
    revoked: AtomicBool,
}

impl SelfLease {
    /// An expired lease that [`SelfLease::renew`] extends by `session_ms` at a time.
    pub fn new(session_ms: u64) -> Self {
        Self {
            epoch: Stopwatch::start(),
            valid_until_ms: AtomicU64::new(0),
            session_ms,
            revoked: AtomicBool::new(false),
        }
    }

    /// The lease's clock now (pass it to [`SelfLease::renew`] for a heartbeat sent now).
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed_ms()
    }

    /// The controller answered a heartbeat sent at `sent_ms` and its metadata is applied.
    pub fn renew(&self, sent_ms: u64) {
        self.valid_until_ms
            .fetch_max(sent_ms + self.session_ms, Ordering::AcqRel);
    }

    /// Whether the cluster may still count this broker as live.
    pub fn is_valid(&self) -> bool {
        !self.revoked.load(Ordering::Acquire)
            && self.now_ms() < self.valid_until_ms.load(Ordering::Acquire)
    }

    /// The broker is stopping: the lease ends now and is never renewed again.
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
    }
}

/// One broker's row of the controller's liveness table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    pub broker: i32,
    /// Milliseconds since the controller's last sign of life of the broker, when it answered.
    pub heard_ms_ago: u64,
    /// The controller finds the broker's heartbeat overdue.
    pub suspect: bool,
}

/// The newest liveness table this broker received from the controller, and when.
#[derive(Debug, Default)]
pub struct ClusterLiveness {
    last: Mutex<Option<(Instant, Vec<Liveness>)>>,
    /// Broker → when this broker found its inter-broker port refusing connections.
    refused: Mutex<HashMap<i32, Instant>>,
}

impl ClusterLiveness {
    /// A table received now. A broker the controller heard after this broker found its port
    /// refusing is alive again (a restarted process): the refusal no longer counts.
    pub fn record(&self, table: Vec<Liveness>) {
        let now = Instant::now();
        {
            let mut r = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            for l in &table {
                let heard = now.checked_sub(Duration::from_millis(l.heard_ms_ago));
                if r.get(&l.broker)
                    .is_some_and(|at| heard.is_some_and(|h| h > *at))
                {
                    r.remove(&l.broker);
                }
            }
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, table));
    }

    /// `broker`'s inter-broker port refused a connection from this broker just now.
    pub fn refused(&self, broker: i32) {
        let mut r = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        r.insert(broker, Instant::now());
    }

    /// `broker` answered this broker: whatever was refused before no longer holds.
    pub fn reachable(&self, broker: i32) {
        let mut r = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if !r.is_empty() {
            r.remove(&broker);
        }
    }

    /// The brokers whose port refused this broker within `refused_for` and that have not
    /// answered (or been heard by the controller) since: dead processes.
    pub fn refusing(&self, refused_for: Duration) -> Vec<i32> {
        let mut r = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|_, at| at.elapsed() <= refused_for);
        let mut out: Vec<i32> = r.keys().copied().collect();
        out.sort_unstable();
        out
    }

    /// The brokers the controller found suspect, from a table received within `max_age`
    /// (none from an older one: a broker cut off from the controller knows nothing current),
    /// and those whose port refused this broker within `refused_for` and that have not
    /// answered since.
    pub fn suspects(&self, max_age: Duration, refused_for: Duration) -> Vec<i32> {
        let mut out: Vec<i32> = match &*self.last.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((at, table)) if at.elapsed() <= max_age => table
                .iter()
                .filter(|l| l.suspect)
                .map(|l| l.broker)
                .collect(),
            _ => Vec::new(),
        };
        out.extend(self.refusing(refused_for));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// How long ago (milliseconds, now) the controller last heard each broker, from the
    /// newest table received: lower bounds of the brokers' last heartbeats, which a broker
    /// that becomes controller carries over.
    pub fn heard_ms_ago(&self) -> Vec<(i32, u64)> {
        match &*self.last.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((at, table)) => {
                let since = at.elapsed().as_millis() as u64;
                table
                    .iter()
                    .map(|l| (l.broker, l.heard_ms_ago.saturating_add(since)))
                    .collect()
            }
            None => Vec::new(),
        }
    }
}

/// When the active controller last heard each broker's heartbeat, in milliseconds of
/// [`crate::clock::monotonic_ms`] (the time base of the controller's leases).
pub trait HeardBrokers: Send + Sync {
    /// Broker id → its newest heartbeat's arrival, while this broker is the active
    /// controller; `None` otherwise.
    fn last_heard(&self) -> Option<HashMap<i32, u64>>;
}

/// A broker that is never the controller of a quorum (a single broker).
#[derive(Debug, Default)]
pub struct NoController;

impl HeardBrokers for NoController {
    fn last_heard(&self) -> Option<HashMap<i32, u64>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_tables_age() {
        let l = ClusterLiveness::default();
        assert!(l
            .suspects(Duration::from_secs(1), Duration::from_secs(1))
            .is_empty());
        assert!(l.heard_ms_ago().is_empty());
        l.record(vec![
            Liveness {
                broker: 1,
                heard_ms_ago: 0,
                suspect: false,
            },
            Liveness {
                broker: 2,
                heard_ms_ago: 700,
                suspect: true,
            },
        ]);
        let long = Duration::from_secs(60);
        assert_eq!(l.suspects(long, long), vec![2]);
        let ages = l.heard_ms_ago();
        assert!(ages[0].0 == 1 && ages[1].0 == 2 && ages[1].1 >= 700);
        // A table older than the caller accepts reports no suspects.
        assert!(l.suspects(Duration::ZERO, long).is_empty());
        // A refusal makes a broker suspect until it answers again or the refusal is old.
        l.refused(3);
        assert_eq!(l.suspects(long, long), vec![2, 3]);
        assert_eq!(l.refusing(long), vec![3]);
        assert_eq!(l.suspects(long, Duration::ZERO), vec![2]);
        l.refused(3);
        l.reachable(3);
        assert_eq!(l.suspects(long, long), vec![2]);
        // ... or until the controller reports having heard it after the refusal.
        l.refused(3);
        std::thread::sleep(Duration::from_millis(2));
        l.record(vec![Liveness {
            broker: 3,
            heard_ms_ago: 60_000,
            suspect: false,
        }]);
        assert_eq!(l.suspects(long, long), vec![3], "heard before the refusal");
        l.record(vec![Liveness {
            broker: 3,
            heard_ms_ago: 0,
            suspect: false,
        }]);
        assert!(l.suspects(long, long).is_empty(), "heard after the refusal");
        // Ages grow with the time since the table arrived.
        let ages = l.heard_ms_ago();
        assert_eq!(ages.len(), 1);
        assert!(ages[0].0 == 3 && ages[0].1 < 60_000);
    }

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
        // A stopping broker's lease ends and stays ended.
        l.revoke();
        assert!(!l.is_valid());
        l.renew(l.now_ms());
        assert!(!l.is_valid());
    }
}
