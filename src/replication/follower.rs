//! The follower's side of replication for one partition: what to ask the leader for, and
//! how to apply the answer (truncate on divergence, append, follow the high watermark).

use crate::log::batch::split_stored_batches;
use crate::log::{LogError, PartitionLog};

use super::session::FetchState;
use super::{FetchRefusal, PartitionFetch, PartitionFetchResult};

/// The next fetch for a partition this broker follows in `leader_epoch`.
pub fn next_fetch(
    log: &PartitionLog,
    topic: &str,
    partition: i32,
    leader_epoch: i32,
) -> PartitionFetch {
    PartitionFetch {
        topic: topic.to_string(),
        partition,
        leader_epoch,
        fetch_offset: log.offsets().log_end,
        last_fetched_epoch: log.latest_epoch().unwrap_or(-1),
        topic_id: log.topic_id().unwrap_or(0),
    }
}

/// The fetch state of a partition this broker follows in `leader_epoch` (what
/// [`next_fetch`] would send, without the names).
pub fn fetch_state(log: &PartitionLog, leader_epoch: i32) -> FetchState {
    FetchState {
        leader_epoch,
        fetch_offset: log.offsets().log_end,
        last_fetched_epoch: log.latest_epoch().unwrap_or(-1),
        topic_id: log.topic_id().unwrap_or(0),
    }
}

/// What applying a fetch result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Records (possibly none) were appended; the log end is now this.
    Appended { log_end: i64 },
    /// The log diverged from the leader's and was truncated to this offset; fetch again.
    Truncated { log_end: i64 },
    /// The leader refused; the caller backs off and refreshes its view of leadership.
    Refused(FetchRefusal),
}

/// Applies the leader's answer to the local log.
pub fn apply(log: &PartitionLog, r: &PartitionFetchResult) -> Result<Applied, LogError> {
    // An answer about another topic of the same name (the leader's or this log is a deleted
    // topic's): touch nothing, not even the log start.
    if r.topic_id != 0 && log.topic_id().is_some_and(|id| id != r.topic_id) {
        return Ok(Applied::Refused(FetchRefusal::InconsistentTopicId));
    }
    if r.refusal == Some(FetchRefusal::OffsetOutOfRange) && r.log_start > log.offsets().log_end {
        // Retention or DeleteRecords removed everything this replica is missing: start over
        // at the leader's log start (Kafka's truncate-fully-and-start-at).
        log.reset_to(r.log_start)?;
        return Ok(Applied::Truncated {
            log_end: r.log_start,
        });
    }
    if let Some(refusal) = r.refusal {
        return Ok(Applied::Refused(refusal));
    }
    if let Some((epoch, leader_end)) = r.diverging {
        // Truncate to where the leader's copy of that epoch ends, or where ours does if ours
        // ends earlier (KIP-279); an epoch the leader does not have at all means our whole
        // log from the leader's start is suspect.
        let own_end = if epoch >= 0 {
            log.own_end_for_epoch(epoch).unwrap_or(leader_end)
        } else {
            leader_end
        };
        let log_end = log.truncate_to(leader_end.min(own_end))?;
        return Ok(Applied::Truncated { log_end });
    }
    let mut log_end = log.offsets().log_end;
    if !r.records.is_empty() {
        let batches = split_stored_batches(&r.records)?;
        log_end = log.append_replicated(&batches)?;
    }
    log.set_high_watermark(r.high_watermark.min(log_end))?;
    // The leader alone decides the log start (retention, DeleteRecords); followers delete
    // below it too, so every replica holds the same range.
    log.advance_log_start(r.log_start)?;
    Ok(Applied::Appended { log_end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;
    use crate::metadata::PartitionMeta;
    use crate::replication::leader::LeaderState;

    fn log() -> (PartitionLog, sled::Db) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        (PartitionLog::open(db.open_tree("t").unwrap()).unwrap(), db)
    }

    /// Runs fetch rounds between a leader and a follower until the follower is caught up.
    fn sync(leader: &PartitionLog, st: &mut LeaderState, follower: &PartitionLog, id: i32) {
        for round in 0..10 {
            let f = next_fetch(follower, "t", 0, st.leader_epoch);
            let r = st.on_fetch(leader, id, &f, 1 << 20, round);
            st.advance_high_watermark(leader).unwrap();
            if let Applied::Appended { log_end } = apply(follower, &r).unwrap() {
                if log_end == leader.offsets().log_end && r.records.is_empty() {
                    return;
                }
            }
        }
        panic!("follower did not catch up");
    }

    #[test]
    fn failover_keeps_committed_records_and_drops_the_divergent_tail() {
        // Epoch 0: broker 1 leads, brokers 1 and 2 replicate 3 committed records.
        let (b1, _d1) = log();
        let (b2, _d2) = log();
        let m0 = PartitionMeta {
            index: 0,
            replicas: vec![1, 2],
            isr: vec![1, 2],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        };
        let mut st = LeaderState::new(&m0, &b1, 0);
        b1.append_as_leader(&[make_batch(3, 5, 0)], 0, false)
            .unwrap();
        sync(&b1, &mut st, &b2, 2);
        assert_eq!(b1.offsets().high_watermark, 3);
        // Broker 1 appends 2 more records that nobody replicates, then dies.
        b1.append_as_leader(&[make_batch(2, 5, 3)], 0, false)
            .unwrap();
        // Epoch 1: broker 2 leads and takes a new write (the producer's retry of seq 3..4
        // lands here once; here a different producer writes).
        let m1 = PartitionMeta {
            leader: 2,
            leader_epoch: 1,
            partition_epoch: 1,
            ..m0.clone()
        };
        let mut st2 = LeaderState::new(&m1, &b2, 0);
        b2.append_as_leader(&[make_batch(1, 6, 0)], 1, false)
            .unwrap();
        // Broker 1 returns as follower: it must truncate its uncommitted tail and converge.
        sync(&b2, &mut st2, &b1, 1);
        let a = b1.read_for_follower(0, 1 << 20).unwrap().records;
        let b = b2.read_for_follower(0, 1 << 20).unwrap().records;
        assert_eq!(a, b, "logs identical after failover");
        assert_eq!(b1.offsets().log_end, 4);
        assert_eq!(b2.offsets().high_watermark, 4);
        // The committed records 0..2 are still there, with their original content.
        assert_eq!(b1.end_offset_for_epoch(0), Some((0, 3)));
    }

    #[test]
    fn followers_take_the_leaders_log_start_and_reset_when_far_behind() {
        let (leader, _d1) = log();
        let (f1, _d2) = log();
        let (f2, _d3) = log();
        let m = PartitionMeta {
            index: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        };
        let mut st = LeaderState::new(&m, &leader, 0);
        leader
            .append_as_leader(&[make_batch(3, -1, -1)], 0, false)
            .unwrap(); // 0..2
        sync(&leader, &mut st, &f1, 2);
        sync(&leader, &mut st, &f2, 3);
        // Broker 3 goes away (and leaves the ISR); more data arrives and retention deletes
        // everything before 6.
        st.update(
            &PartitionMeta {
                isr: vec![1, 2],
                partition_epoch: 1,
                ..m.clone()
            },
            0,
        );
        for _ in 0..2 {
            leader
                .append_as_leader(&[make_batch(3, -1, -1)], 0, false)
                .unwrap(); // 3..5, 6..8
        }
        sync(&leader, &mut st, &f1, 2);
        st.advance_high_watermark(&leader).unwrap();
        assert_eq!(leader.advance_log_start(6).unwrap(), Some(6));
        // Broker 2 follows the new log start on its next fetch.
        sync(&leader, &mut st, &f1, 2);
        assert_eq!(f1.offsets().log_start, 6);
        assert_eq!(f1.batch_spans().unwrap().len(), 1);
        // Broker 3 returns with a log ending at 3, below the leader's start: it resets to 6
        // and copies the rest.
        let f = next_fetch(&f2, "t", 0, 0);
        let r = st.on_fetch(&leader, 3, &f, 1 << 20, 0);
        assert_eq!(r.refusal, Some(FetchRefusal::OffsetOutOfRange));
        assert_eq!(apply(&f2, &r).unwrap(), Applied::Truncated { log_end: 6 });
        sync(&leader, &mut st, &f2, 3);
        assert_eq!(f2.offsets().log_start, 6);
        assert_eq!(f2.offsets().log_end, 9);
        assert_eq!(
            f2.read_for_follower(6, 1 << 20).unwrap().records,
            leader.read_for_follower(6, 1 << 20).unwrap().records
        );
    }

    #[test]
    fn a_follower_appends_nothing_fetched_for_another_topic_id() {
        let (leader, _d1) = log();
        let (follower, _d2) = log();
        leader.check_topic_id(5).unwrap();
        follower.check_topic_id(6).unwrap();
        let m = PartitionMeta {
            index: 0,
            replicas: vec![1, 2],
            isr: vec![1, 2],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        };
        let mut st = LeaderState::new(&m, &leader, 0);
        leader
            .append_as_leader(&[make_batch(3, -1, -1)], 0, false)
            .unwrap();
        // A leader that does not check ids (0 in the request) still names its own.
        let mut f = next_fetch(&follower, "t", 0, 0);
        f.topic_id = 0;
        let r = st.on_fetch(&leader, 2, &f, 1 << 20, 0);
        assert!(!r.records.is_empty());
        assert_eq!(r.topic_id, 5);
        assert_eq!(
            apply(&follower, &r).unwrap(),
            Applied::Refused(FetchRefusal::InconsistentTopicId)
        );
        assert_eq!(follower.offsets().log_end, 0);
        // The follower's own fetch names its id: the leader refuses it.
        let r = st.on_fetch(&leader, 2, &next_fetch(&follower, "t", 0, 0), 1 << 20, 0);
        assert_eq!(r.refusal, Some(FetchRefusal::InconsistentTopicId));
        assert!(r.records.is_empty());
    }
}
