//! The leader's view of one partition's replication: each follower's log end and when it was
//! last caught up, the high watermark that follows from them, and the ISR changes to propose.
//!
//! Rules (Apache Kafka's): the high watermark is the minimum log end over the ISR (plus
//! followers whose addition is pending), never moving backwards; a follower is dropped from
//! the ISR when it has not been caught up to the leader's log end for `replica.lag.time.max.ms`;
//! a follower joins only on its own fetch: its latest fetch must have reached the high
//! watermark and the start of the leader's current epoch, and must be recent (within
//! `replica.lag.time.max.ms`) — a follower that stopped fetching never rejoins from the log end
//! it last reported — and the follower must not be fenced.

use std::collections::HashMap;

use crate::log::{LogError, PartitionLog};
use crate::metadata::PartitionMeta;

use super::{FetchRefusal, PartitionFetch, PartitionFetchResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// The follower's log end offset (its last fetch offset).
    log_end: i64,
    /// When the follower last fetched up to the leader's log end.
    last_caught_up_ms: u64,
    /// When this leader last answered a fetch of the follower (`None`: not in this epoch).
    last_fetch_ms: Option<u64>,
}

/// Replication state of a partition this broker leads, for one leader epoch.
#[derive(Debug, Clone)]
pub struct LeaderState {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    followers: HashMap<i32, Progress>,
    /// Followers outside the ISR whose fetch reached the high watermark (Kafka's "maximal
    /// ISR"): counted in the high watermark from that fetch on, so the ISR expansion proposed
    /// for them (asynchronously, by the ISR loop) can never take in a replica that lacks a
    /// record the high watermark already covers — a reassignment completing on that expansion
    /// may make it leader at once. Dropped when the ISR takes them, when they fall behind for
    /// the lag time or are fenced ([`LeaderState::prune_joining`]), or leave the replicas.
    joining: Vec<i32>,
    /// First offset of this leader's epoch: a follower below it cannot join the ISR.
    epoch_start: i64,
    /// Cancelled when this broker stops leading the partition in this epoch: writes waiting
    /// for their commit answer NOT_LEADER_OR_FOLLOWER at once.
    pub term: tokio_util::sync::CancellationToken,
}

impl LeaderState {
    /// Starts leading `meta` at `now_ms`. Followers get a full lag period of grace.
    pub fn new(meta: &PartitionMeta, log: &PartitionLog, now_ms: u64) -> Self {
        let epoch_start = log.offsets().log_end;
        let followers = meta
            .replicas
            .iter()
            .filter(|r| **r != meta.leader)
            .map(|r| {
                (
                    *r,
                    Progress {
                        log_end: -1,
                        last_caught_up_ms: now_ms,
                        last_fetch_ms: None,
                    },
                )
            })
            .collect();
        Self {
            leader: meta.leader,
            leader_epoch: meta.leader_epoch,
            partition_epoch: meta.partition_epoch,
            replicas: meta.replicas.clone(),
            isr: meta.isr.clone(),
            followers,
            joining: Vec::new(),
            epoch_start,
            term: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Takes a committed change of the same leader epoch: an ISR change, or a replica set
    /// changed by a reassignment (added followers start outside the ISR with a full lag
    /// period of grace; removed ones are forgotten).
    pub fn update(&mut self, meta: &PartitionMeta, now_ms: u64) {
        self.isr = meta.isr.clone();
        self.partition_epoch = meta.partition_epoch;
        self.joining
            .retain(|r| !meta.isr.contains(r) && meta.replicas.contains(r));
        if self.replicas != meta.replicas {
            self.replicas = meta.replicas.clone();
            self.followers.retain(|r, _| meta.replicas.contains(r));
            for r in meta.replicas.iter().filter(|r| **r != self.leader) {
                self.followers.entry(*r).or_insert(Progress {
                    log_end: -1,
                    last_caught_up_ms: now_ms,
                    last_fetch_ms: None,
                });
            }
        }
    }

    /// Answers a follower's fetch for this partition and records its progress. Returns the
    /// result; the caller then calls [`LeaderState::advance_high_watermark`].
    pub fn on_fetch(
        &mut self,
        log: &PartitionLog,
        replica: i32,
        f: &PartitionFetch,
        max_bytes: usize,
        now_ms: u64,
    ) -> PartitionFetchResult {
        self.on_fetch_limited(log, replica, f, max_bytes, true, now_ms)
    }

    /// [`LeaderState::on_fetch`] reading at most `max_bytes`, and nothing at all when that is
    /// too small for the next batch unless `min_one` (then the first batch whole).
    pub fn on_fetch_limited(
        &mut self,
        log: &PartitionLog,
        replica: i32,
        f: &PartitionFetch,
        max_bytes: usize,
        min_one: bool,
        now_ms: u64,
    ) -> PartitionFetchResult {
        let offsets = log.offsets();
        let mut out = PartitionFetchResult {
            topic: f.topic.clone(),
            partition: f.partition,
            refusal: None,
            high_watermark: offsets.high_watermark,
            log_start: offsets.log_start,
            diverging: None,
            records: Default::default(),
            topic_id: log.topic_id().unwrap_or(0),
        };
        if !self.followers.contains_key(&replica) {
            out.refusal = Some(FetchRefusal::UnknownPartition);
            return out;
        }
        // The follower's log and this one belong to different topics of the same name (one
        // of them a deleted topic's that is about to be deleted): send no records either way.
        if f.topic_id != 0 && log.topic_id().is_some_and(|id| id != f.topic_id) {
            out.refusal = Some(FetchRefusal::InconsistentTopicId);
            return out;
        }
        if f.leader_epoch < self.leader_epoch {
            out.refusal = Some(FetchRefusal::FencedLeaderEpoch);
            return out;
        }
        if f.leader_epoch > self.leader_epoch {
            out.refusal = Some(FetchRefusal::UnknownLeaderEpoch);
            return out;
        }
        // Divergence check (Fetch v12's DivergingEpoch): where does the follower's last
        // epoch end in the leader's log?
        if f.last_fetched_epoch >= 0 {
            match log.end_offset_for_epoch(f.last_fetched_epoch) {
                Some((epoch, end)) if epoch < f.last_fetched_epoch || end < f.fetch_offset => {
                    out.diverging = Some((epoch, end));
                    return out;
                }
                None => {
                    out.diverging = Some((-1, offsets.log_start));
                    return out;
                }
                _ => {}
            }
        }
        match log.read_for_follower_limited(f.fetch_offset, max_bytes, min_one) {
            Ok(r) => out.records = r.records,
            Err(LogError::OffsetOutOfRange { .. }) => {
                out.refusal = Some(FetchRefusal::OffsetOutOfRange);
                return out;
            }
            Err(_) => {
                out.refusal = Some(FetchRefusal::Storage);
                return out;
            }
        }
        self.note_fetch(
            replica,
            f.fetch_offset,
            offsets.log_end,
            offsets.high_watermark,
            now_ms,
        );
        out
    }

    /// A session fetch in which `replica` did not name the partition: its fetch offset is
    /// still `fetch_offset`, which the caller found at or past the log end `log_end` (nothing
    /// to send). Records the fetch as [`LeaderState::on_fetch`] would; false when `replica`
    /// is not a follower of this partition (then ask `on_fetch` for the refusal).
    pub fn on_idle_fetch(
        &mut self,
        replica: i32,
        fetch_offset: i64,
        log_end: i64,
        high_watermark: i64,
        now_ms: u64,
    ) -> bool {
        if !self.followers.contains_key(&replica) {
            return false;
        }
        self.note_fetch(replica, fetch_offset, log_end, high_watermark, now_ms);
        true
    }

    /// Records a fetch of `replica` from `fetch_offset` at `now_ms`, when the log ended at
    /// `log_end` with the high watermark at `high_watermark`.
    fn note_fetch(
        &mut self,
        replica: i32,
        fetch_offset: i64,
        log_end: i64,
        high_watermark: i64,
        now_ms: u64,
    ) {
        let p = self.followers.entry(replica).or_insert(Progress {
            log_end: -1,
            last_caught_up_ms: now_ms,
            last_fetch_ms: None,
        });
        p.log_end = fetch_offset;
        p.last_fetch_ms = Some(now_ms);
        if fetch_offset >= log_end {
            p.last_caught_up_ms = now_ms;
        }
        // The follower's log end (flushed before it fetches) reached the high watermark: from
        // now on the high watermark waits for it, until the ISR takes it or it falls behind.
        let reached = fetch_offset >= high_watermark && fetch_offset >= self.epoch_start;
        if reached && !self.isr.contains(&replica) && !self.joining.contains(&replica) {
            self.joining.push(replica);
        }
    }

    /// The high watermark the ISR supports now (never below the current one).
    pub fn high_watermark(&self, log: &PartitionLog) -> i64 {
        let o = log.offsets();
        let min_follower = self
            .isr
            .iter()
            .chain(self.joining.iter())
            .filter(|r| **r != self.leader)
            .map(|r| self.followers.get(r).map(|p| p.log_end).unwrap_or(-1))
            .min()
            .unwrap_or(o.log_end);
        o.high_watermark.max(min_follower.min(o.log_end))
    }

    /// Moves the log's high watermark to what the ISR supports; returns the new value.
    pub fn advance_high_watermark(&self, log: &PartitionLog) -> Result<i64, LogError> {
        let hw = self.high_watermark(log);
        log.set_high_watermark(hw)?;
        Ok(log.offsets().high_watermark)
    }

    /// Drops joining followers that have not been caught up for `lag_ms` or are not eligible
    /// (fenced), so they no longer hold the high watermark back.
    pub fn prune_joining(&mut self, now_ms: u64, lag_ms: u64, eligible: impl Fn(i32) -> bool) {
        let followers = &self.followers;
        self.joining.retain(|r| {
            eligible(*r)
                && followers
                    .get(r)
                    .is_some_and(|p| now_ms.saturating_sub(p.last_caught_up_ms) <= lag_ms)
        });
    }

    /// The ISR this leader wants now, if it differs from the committed one: followers lagging
    /// longer than `lag_ms` leave; followers whose latest fetch, within the last `lag_ms`,
    /// reached the high watermark and the epoch start join. Followers that are fenced
    /// (`eligible` false) do not join.
    pub fn wanted_isr(
        &self,
        log: &PartitionLog,
        now_ms: u64,
        lag_ms: u64,
        eligible: impl Fn(i32) -> bool,
    ) -> Option<Vec<i32>> {
        let hw = log.offsets().high_watermark;
        let mut isr: Vec<i32> = self
            .replicas
            .iter()
            .copied()
            .filter(|r| {
                if *r == self.leader {
                    return true;
                }
                let Some(p) = self.followers.get(r) else {
                    return false;
                };
                if self.isr.contains(r) {
                    now_ms.saturating_sub(p.last_caught_up_ms) <= lag_ms
                } else {
                    let fetched_recently = p
                        .last_fetch_ms
                        .is_some_and(|t| now_ms.saturating_sub(t) <= lag_ms);
                    eligible(*r)
                        && fetched_recently
                        && p.log_end >= hw
                        && p.log_end >= self.epoch_start
                }
            })
            .collect();
        isr.sort_unstable();
        let mut current = self.isr.clone();
        current.sort_unstable();
        (isr != current).then_some(isr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{split_batches, tests::make_batch};

    fn meta() -> PartitionMeta {
        PartitionMeta {
            index: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 4,
            partition_epoch: 7,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    fn log() -> (PartitionLog, sled::Db) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        (PartitionLog::open(db.open_tree("t").unwrap()).unwrap(), db)
    }

    fn fetch(offset: i64, last_epoch: i32) -> PartitionFetch {
        PartitionFetch {
            topic: "t".into(),
            partition: 0,
            leader_epoch: 4,
            fetch_offset: offset,
            last_fetched_epoch: last_epoch,
            topic_id: 0,
        }
    }

    #[test]
    fn high_watermark_is_the_isr_minimum_and_only_grows() {
        let (l, _db) = log();
        let mut st = LeaderState::new(&meta(), &l, 0);
        l.append_as_leader(&[make_batch(5, -1, -1)], 4, false)
            .unwrap();
        assert_eq!(st.advance_high_watermark(&l).unwrap(), 0);
        let r = st.on_fetch(&l, 2, &fetch(0, -1), 1 << 20, 10);
        assert_eq!(split_batches(&r.records, 1 << 20).unwrap().len(), 1);
        st.on_fetch(&l, 2, &fetch(5, 4), 1 << 20, 20);
        assert_eq!(
            st.advance_high_watermark(&l).unwrap(),
            0,
            "broker 3 has nothing yet"
        );
        st.on_fetch(&l, 3, &fetch(3, 4), 1 << 20, 20);
        assert_eq!(st.advance_high_watermark(&l).unwrap(), 3);
        st.on_fetch(&l, 3, &fetch(5, 4), 1 << 20, 30);
        assert_eq!(st.advance_high_watermark(&l).unwrap(), 5);
    }

    #[test]
    fn lagging_followers_leave_and_caught_up_ones_join() {
        let (l, _db) = log();
        let mut st = LeaderState::new(&meta(), &l, 0);
        l.append_as_leader(&[make_batch(5, -1, -1)], 4, false)
            .unwrap();
        st.on_fetch(&l, 2, &fetch(5, 4), 1 << 20, 100);
        // Broker 3 never fetches: after the lag time it leaves the ISR.
        assert_eq!(st.wanted_isr(&l, 20_000, 30_000, |_| true), None);
        st.on_fetch(&l, 2, &fetch(5, 4), 1 << 20, 39_000);
        assert_eq!(
            st.wanted_isr(&l, 40_000, 30_000, |_| true),
            Some(vec![1, 2])
        );
        let mut shrunk = meta();
        shrunk.isr = vec![1, 2];
        shrunk.partition_epoch = 8;
        st.update(&shrunk, 0);
        st.on_fetch(&l, 2, &fetch(5, 4), 1 << 20, 40_000);
        st.advance_high_watermark(&l).unwrap();
        assert_eq!(l.offsets().high_watermark, 5);
        // Broker 3 catches up: it may join, unless fenced.
        st.on_fetch(&l, 3, &fetch(5, 4), 1 << 20, 41_000);
        assert_eq!(st.wanted_isr(&l, 41_000, 30_000, |_| false), None);
        assert_eq!(
            st.wanted_isr(&l, 41_000, 30_000, |_| true),
            Some(vec![1, 2, 3])
        );
    }

    #[test]
    fn a_follower_that_stopped_fetching_does_not_rejoin_from_its_last_log_end() {
        let (l, _db) = log();
        let mut st = LeaderState::new(&meta(), &l, 0);
        l.append_as_leader(&[make_batch(5, -1, -1)], 4, false)
            .unwrap();
        // Both followers catch up; then broker 3 dies (fetches no more) and is dropped for lag.
        st.on_fetch(&l, 2, &fetch(5, 4), 1 << 20, 100);
        st.on_fetch(&l, 3, &fetch(5, 4), 1 << 20, 100);
        st.advance_high_watermark(&l).unwrap();
        assert_eq!(l.offsets().high_watermark, 5);
        st.on_fetch(&l, 2, &fetch(5, 4), 1 << 20, 30_500);
        assert_eq!(
            st.wanted_isr(&l, 30_500, 30_000, |_| true),
            Some(vec![1, 2])
        );
        let mut shrunk = meta();
        shrunk.isr = vec![1, 2];
        shrunk.partition_epoch = 8;
        st.update(&shrunk, 0);
        // Its last-known log end still equals the high watermark, but it has not fetched for
        // longer than the lag time: it stays out, whether or not it is fenced.
        assert_eq!(st.wanted_isr(&l, 30_750, 30_000, |_| true), None);
        // A new leader has heard nothing from it in this epoch: not in the ISR either.
        let st2 = LeaderState::new(&shrunk, &l, 31_000);
        assert_eq!(st2.wanted_isr(&l, 31_000, 30_000, |_| true), None);
        // It really comes back and fetches up to the high watermark: it joins.
        st.on_fetch(&l, 3, &fetch(5, 4), 1 << 20, 31_000);
        assert_eq!(
            st.wanted_isr(&l, 31_000, 30_000, |_| true),
            Some(vec![1, 2, 3])
        );
    }

    #[test]
    fn an_added_follower_holds_the_high_watermark_from_the_fetch_that_reached_it() {
        let (l, _db) = log();
        // Broker 1 leads alone (RF 1); a reassignment adds broker 2.
        let mut m = meta();
        m.replicas = vec![1];
        m.isr = vec![1];
        let mut st = LeaderState::new(&m, &l, 0);
        l.append_as_leader(&[make_batch(5, -1, -1)], 4, false)
            .unwrap();
        assert_eq!(st.advance_high_watermark(&l).unwrap(), 5);
        m.replicas = vec![2, 1];
        m.adding = vec![2];
        m.partition_epoch += 1;
        st.update(&m, 100);
        // Not caught up: the high watermark does not wait for it.
        st.on_fetch(&l, 2, &fetch(0, -1), 1 << 20, 110);
        l.append_as_leader(&[make_batch(2, -1, -1)], 4, false)
            .unwrap();
        assert_eq!(st.advance_high_watermark(&l).unwrap(), 7);
        // Its fetch reaches the high watermark: from now on the high watermark waits for it,
        // so when the ISR loop proposes it, it still has everything below the watermark.
        st.on_fetch(&l, 2, &fetch(7, 4), 1 << 20, 120);
        l.append_as_leader(&[make_batch(3, -1, -1)], 4, false)
            .unwrap();
        assert_eq!(st.advance_high_watermark(&l).unwrap(), 7);
        assert_eq!(st.wanted_isr(&l, 130, 30_000, |_| true), Some(vec![1, 2]));
        st.on_fetch(&l, 2, &fetch(10, 4), 1 << 20, 140);
        assert_eq!(st.advance_high_watermark(&l).unwrap(), 10);
        // A joining follower that stops fetching stops holding it after the lag time.
        l.append_as_leader(&[make_batch(1, -1, -1)], 4, false)
            .unwrap();
        assert_eq!(st.advance_high_watermark(&l).unwrap(), 10);
        st.prune_joining(100_000, 30_000, |_| true);
        assert_eq!(st.advance_high_watermark(&l).unwrap(), 11);
        // The ISR takes it: it counts as an ISR member (and a removed one is forgotten).
        st.on_fetch(&l, 2, &fetch(11, 4), 1 << 20, 100_010);
        m.isr = vec![2, 1];
        m.partition_epoch += 1;
        st.update(&m, 100_020);
        assert!(st.joining.is_empty());
        m.replicas = vec![1];
        m.isr = vec![1];
        st.update(&m, 100_030);
        assert_eq!(
            st.on_fetch(&l, 2, &fetch(11, 4), 1 << 20, 100_040).refusal,
            Some(FetchRefusal::UnknownPartition)
        );
    }

    #[test]
    fn stale_epochs_and_divergent_followers_are_told() {
        let (l, _db) = log();
        l.append(&[make_batch(3, -1, -1)], 2).unwrap(); // epoch 2: 0..2
        l.append_as_leader(&[make_batch(2, -1, -1)], 4, false)
            .unwrap(); // epoch 4: 3..4
        let mut st = LeaderState::new(&meta(), &l, 0);
        let mut old = fetch(0, -1);
        old.leader_epoch = 3;
        assert_eq!(
            st.on_fetch(&l, 2, &old, 1 << 20, 0).refusal,
            Some(FetchRefusal::FencedLeaderEpoch)
        );
        // A follower that wrote offsets 3..5 in epoch 3 (never committed) must truncate to 3.
        let r = st.on_fetch(&l, 2, &fetch(6, 3), 1 << 20, 0);
        assert_eq!(r.diverging, Some((2, 3)));
        assert!(r.records.is_empty());
        // Not divergent: same epoch, offset within it.
        assert_eq!(st.on_fetch(&l, 2, &fetch(3, 2), 1 << 20, 0).diverging, None);
    }

    #[test]
    fn a_follower_of_another_topic_id_gets_no_records() {
        let (l, _db) = log();
        l.check_topic_id(7).unwrap();
        l.append_as_leader(&[make_batch(3, -1, -1)], 4, false)
            .unwrap();
        let mut st = LeaderState::new(&meta(), &l, 0);
        let mut other = fetch(0, -1);
        other.topic_id = 8;
        let r = st.on_fetch(&l, 2, &other, 1 << 20, 0);
        assert_eq!(r.refusal, Some(FetchRefusal::InconsistentTopicId));
        assert!(r.records.is_empty());
        // The same id, or none (a follower whose log recorded none yet), gets the records.
        for id in [7, 0] {
            let mut same = fetch(0, -1);
            same.topic_id = id;
            let r = st.on_fetch(&l, 2, &same, 1 << 20, 0);
            assert_eq!(r.refusal, None);
            assert!(!r.records.is_empty());
        }
    }
}
