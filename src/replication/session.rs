//! Replica fetch sessions: the follower names only the partitions whose fetch state changed
//! since its previous fetch, and the leader answers only partitions with records, a refusal,
//! a divergence, or a high watermark or log start different from what it last sent — so the
//! messages, the follower's work and the leader's reads grow with the partitions that are
//! active, not with the partitions followed (the idea of Kafka's KIP-227 fetch sessions,
//! carried over the `ReplicaFetch` gRPC call).
//!
//! A follower opens a session with a full request (`open`), then sends `(id, epoch)` with each
//! incremental one; the leader keeps one session per follower broker and expects the epochs
//! in order. A lost request or answer, a restarted leader or a replaced session shows as
//! [`SessionError`](super::SessionError): the follower opens a new session. A partition the leader refused, or
//! told to truncate, is named again in the next request.
//!
//! The leader still visits every partition of a session on each pass, but for a partition
//! whose follower is caught up and whose offsets did not move that is a few in-memory
//! comparisons and the follower's progress stamp (the follower counts as caught up at each
//! fetch, for `replica.lag.time.max.ms`, exactly as if it had named the partition).
//!
//! May depend on: the replication request types (`super`), `rand`.

use std::collections::{HashMap, HashSet};

use super::{PartitionFetch, SessionRequest};

/// A partition: topic name and index.
pub type Key = (String, i32);

/// What a follower said of a partition the last time it named it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchState {
    pub leader_epoch: i32,
    pub fetch_offset: i64,
    pub last_fetched_epoch: i32,
    pub topic_id: u128,
}

impl FetchState {
    pub fn of(f: &PartitionFetch) -> Self {
        Self {
            leader_epoch: f.leader_epoch,
            fetch_offset: f.fetch_offset,
            last_fetched_epoch: f.last_fetched_epoch,
            topic_id: f.topic_id,
        }
    }

    pub fn to_fetch(self, key: &Key) -> PartitionFetch {
        PartitionFetch {
            topic: key.0.clone(),
            partition: key.1,
            leader_epoch: self.leader_epoch,
            fetch_offset: self.fetch_offset,
            last_fetched_epoch: self.last_fetched_epoch,
            topic_id: self.topic_id,
        }
    }
}

/// The leader's side of one follower's session.
#[derive(Debug)]
pub struct LeaderSession {
    pub id: u64,
    /// The epoch the next request must carry.
    pub epoch: u32,
    pub entries: HashMap<Key, Entry>,
    /// Visit order; partitions that returned records move to the end, so under the response
    /// size limit every partition gets its turn.
    pub order: Vec<Key>,
}

/// A partition of a leader's session.
#[derive(Debug)]
pub struct Entry {
    pub fetch: PartitionFetch,
    /// What the leader last sent (-1 before the first answer).
    pub sent_high_watermark: i64,
    pub sent_log_start: i64,
    /// Named in the request being served: read it whatever the offsets say.
    pub fresh: bool,
}

impl LeaderSession {
    /// A new session holding `partitions`, expecting epoch 1 next.
    pub fn open(partitions: &[PartitionFetch]) -> Self {
        let mut s = Self {
            id: rand::random::<u64>() | 1,
            epoch: 1,
            entries: HashMap::new(),
            order: Vec::new(),
        };
        s.update(partitions, &[]);
        s
    }

    /// Takes an incremental request's changes (after its epoch was checked).
    pub fn update(&mut self, partitions: &[PartitionFetch], forgotten: &[(String, i32)]) {
        for f in partitions {
            let key = (f.topic.clone(), f.partition);
            match self.entries.get_mut(&key) {
                Some(e) => {
                    e.fetch = f.clone();
                    e.fresh = true;
                }
                None => {
                    self.order.push(key.clone());
                    self.entries.insert(
                        key,
                        Entry {
                            fetch: f.clone(),
                            sent_high_watermark: -1,
                            sent_log_start: -1,
                            fresh: true,
                        },
                    );
                }
            }
        }
        if !forgotten.is_empty() {
            for k in forgotten {
                self.entries.remove(k);
            }
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }

    /// Moves the partitions that returned records to the end of the visit order.
    pub fn served_last(&mut self, served: &[Key]) {
        if served.is_empty() {
            return;
        }
        let set: HashSet<&Key> = served.iter().collect();
        let (mut rest, last): (Vec<Key>, Vec<Key>) =
            self.order.drain(..).partition(|k| !set.contains(k));
        rest.extend(last);
        self.order = rest;
    }
}

/// The follower's side of its session with one leader.
#[derive(Debug, Default)]
pub struct FollowerSession {
    /// 0: none (the next request opens one).
    id: u64,
    epoch: u32,
    /// What the leader knows of each partition (as last sent).
    sent: HashMap<Key, FetchState>,
}

impl FollowerSession {
    /// The session fields and partitions of the next request, given every partition to
    /// fetch now with its fetch state: all of them when opening, else the changed ones and
    /// the ones to forget.
    pub fn next(&mut self, now: Vec<(Key, FetchState)>) -> (SessionRequest, Vec<PartitionFetch>) {
        if self.id == 0 {
            self.sent = now.iter().cloned().collect();
            let parts = now.iter().map(|(k, s)| s.to_fetch(k)).collect();
            return (
                SessionRequest {
                    open: true,
                    ..SessionRequest::default()
                },
                parts,
            );
        }
        let mut parts = Vec::new();
        let mut keep: HashSet<&Key> = HashSet::with_capacity(now.len());
        for (k, s) in &now {
            keep.insert(k);
            if self.sent.get(k) != Some(s) {
                parts.push(s.to_fetch(k));
                self.sent.insert(k.clone(), *s);
            }
        }
        let forgotten: Vec<Key> = self
            .sent
            .keys()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for k in &forgotten {
            self.sent.remove(k);
        }
        (
            SessionRequest {
                open: false,
                id: self.id,
                epoch: self.epoch,
                forgotten,
            },
            parts,
        )
    }

    /// The leader answered without a session error: the session is `id` now (0: the leader
    /// keeps none, so every request is full).
    pub fn answered(&mut self, id: u64, opened: bool) {
        if id == 0 {
            self.reset();
            return;
        }
        self.epoch = if opened || self.id != id {
            1
        } else {
            self.epoch.wrapping_add(1).max(1)
        };
        self.id = id;
    }

    /// Name the partition again in the next request (the leader refused it or told this
    /// replica to truncate).
    pub fn resend(&mut self, key: &Key) {
        self.sent.remove(key);
    }

    /// Forgets the session: the next request opens a new one (after an error, or a request
    /// whose answer was not read).
    pub fn reset(&mut self) {
        self.id = 0;
        self.epoch = 0;
        self.sent.clear();
    }
}

/// The epoch after `e` on the leader (skipping 0, which no incremental request carries).
pub fn next_epoch(e: u32) -> u32 {
    e.wrapping_add(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(offset: i64) -> FetchState {
        FetchState {
            leader_epoch: 1,
            fetch_offset: offset,
            last_fetched_epoch: 0,
            topic_id: 0,
        }
    }

    fn key(p: i32) -> Key {
        ("t".to_string(), p)
    }

    #[test]
    fn a_follower_names_only_changed_partitions_after_opening() {
        let mut s = FollowerSession::default();
        let (r, parts) = s.next(vec![(key(0), st(0)), (key(1), st(0))]);
        assert!(r.open);
        assert_eq!(parts.len(), 2);
        s.answered(7, true);
        let (r, parts) = s.next(vec![(key(0), st(0)), (key(1), st(4))]);
        assert_eq!((r.open, r.id, r.epoch), (false, 7, 1));
        assert_eq!(parts.len(), 1);
        assert_eq!((parts[0].partition, parts[0].fetch_offset), (1, 4));
        s.answered(7, false);
        // Partition 1 is no longer followed; partition 0 was refused and is named again.
        s.resend(&key(0));
        let (r, parts) = s.next(vec![(key(0), st(0))]);
        assert_eq!(r.epoch, 2);
        assert_eq!(r.forgotten, vec![key(1)]);
        assert_eq!(parts.len(), 1);
        // A lost answer: start over with a full request.
        s.reset();
        assert!(s.next(vec![(key(0), st(0))]).0.open);
    }

    #[test]
    fn the_leader_session_keeps_order_and_forgets() {
        let f = |p: i32| st(0).to_fetch(&key(p));
        let mut s = LeaderSession::open(&[f(0), f(1), f(2)]);
        assert_ne!(s.id, 0);
        s.served_last(&[key(0)]);
        assert_eq!(s.order, vec![key(1), key(2), key(0)]);
        s.update(&[f(3)], &[key(2)]);
        assert_eq!(s.order, vec![key(1), key(0), key(3)]);
        assert!(s.entries[&key(3)].fresh);
        assert_eq!(next_epoch(u32::MAX), 1);
    }
}
