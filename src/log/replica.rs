//! Follower-side and replication operations on a [`PartitionLog`]: appending batches as the
//! leader wrote them, the leader-epoch cache lookups behind truncation (Kafka's
//! OffsetsForLeaderEpoch, KIP-101/279), truncation, and high-watermark updates.
//!
//! Followers rebuild the leader's producer and transaction state from the batches they
//! replicate: transactional batches open their producer's transaction, markers (control
//! batches) end it and aborts enter the aborted index, exactly as on the leader (`txn.rs`).

use std::collections::HashMap;

use bytes::Bytes;

use super::batch::BatchHeader;
use super::partition::{
    batch_key, epoch_key, key_offset, producer_key, PartitionLog, HW_KEY, STATE_KEY,
};
use super::producer::{self, ProducerEntry};
use super::LogError;

impl PartitionLog {
    /// The newest leader epoch that wrote to this log, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.lock().epochs.last_key_value().map(|(e, _)| *e)
    }

    /// For a follower whose last epoch is `epoch`: the largest epoch in this log that is not
    /// newer, and the offset where it ends (the start of the next epoch, or the log end).
    /// `None` when this log has no epoch that old (the follower truncates to its log start).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let st = self.lock();
        let (found, _) = st.epochs.range(..=epoch).next_back()?;
        let end = st
            .epochs
            .range(found + 1..)
            .next()
            .map(|(_, start)| *start)
            .unwrap_or(st.offsets.log_end);
        Some((*found, end))
    }

    /// The log end offset of this replica for `epoch` (its own view), as above.
    pub fn own_end_for_epoch(&self, epoch: i32) -> Option<i64> {
        self.end_offset_for_epoch(epoch).map(|(_, end)| end)
    }

    /// Removes every batch that holds an offset at or after `offset` (a batch that straddles
    /// it goes too), drops epoch entries that start there or later, lowers the high
    /// watermark if needed and rebuilds producer state from what remains. Returns the new
    /// log end offset.
    pub fn truncate_to(&self, offset: i64) -> Result<i64, LogError> {
        let mut st = self.lock();
        if offset >= st.offsets.log_end {
            return Ok(st.offsets.log_end);
        }
        let mut cut = offset.max(st.offsets.log_start);
        if let Some((k, v)) = self
            .tree
            .range(batch_key(0)..batch_key(cut))
            .next_back()
            .transpose()?
        {
            let h = BatchHeader::read(&v)?;
            if h.last_offset() >= cut {
                cut = key_offset(&k);
            }
        }
        let mut write = sled::Batch::default();
        for kv in self.tree.range(batch_key(cut)..=batch_key(i64::MAX)) {
            let (k, _) = kv?;
            write.remove(k);
        }
        super::chunks::remove_range(&self.tree, &mut write, cut, i64::MAX)?;
        let stale: Vec<i32> = st
            .epochs
            .range(..)
            .filter(|(_, s)| **s >= cut)
            .map(|(e, _)| *e)
            .collect();
        for e in &stale {
            write.remove(&epoch_key(*e));
        }
        // Producer state is rebuilt from the remaining batches so a truncated retry is not
        // mistaken for a duplicate later, and a transaction whose marker was cut is open again.
        let mut producers: HashMap<i64, ProducerEntry> = HashMap::new();
        let now = producer::now_ms();
        for kv in self
            .tree
            .range(batch_key(st.offsets.log_start.max(0))..batch_key(cut))
        {
            let (k, v) = kv?;
            let h = BatchHeader::read(&v)?;
            if h.has_producer_id() && (h.base_sequence >= 0 || h.is_transactional()) {
                let entry = producers.entry(h.producer_id).or_default();
                replay_producer(&self.tree, entry, &h, key_offset(&k), &v, now)?;
            }
        }
        for k in st.txns.keys_from(cut) {
            write.remove(&k);
        }
        for pid in st.producers.keys() {
            if !producers.contains_key(pid) {
                write.remove(&producer_key(*pid));
            }
        }
        for (pid, e) in &producers {
            let v = serde_json::to_vec(e).map_err(|e| LogError::Corrupt(e.to_string()))?;
            write.insert(&producer_key(*pid), v);
        }
        let mut offsets = st.offsets;
        offsets.log_end = cut;
        offsets.high_watermark = offsets.high_watermark.min(cut);
        write.insert(STATE_KEY, &offsets.encode());
        // The checkpoint goes down with the log in the same batch; no checkpoint of the old
        // value may be written after it (see `checkpoint_high_watermark`).
        let _persist = self.hw_persist.lock().unwrap_or_else(|p| p.into_inner());
        write.insert(HW_KEY, &offsets.high_watermark.to_be_bytes());
        self.tree.apply_batch(write)?;
        for e in stale {
            st.epochs.remove(&e);
        }
        st.txns
            .truncated(cut, producers.iter(), offsets.high_watermark);
        st.producers = producers;
        st.offsets = offsets;
        self.hw_checkpointed
            .store(offsets.high_watermark, std::sync::atomic::Ordering::Relaxed);
        self.hw.send_replace(offsets.high_watermark);
        self.end.send_replace(offsets.log_end);
        self.publish_stable(&mut st);
        Ok(cut)
    }

    /// Appends batches fetched from the leader, keeping their offsets and epochs. The first
    /// batch must start at this log's end. Producer state is recorded without sequence checks
    /// (the leader already checked), so a new leader can recognise retries.
    pub fn append_replicated(&self, batches: &[Bytes]) -> Result<i64, LogError> {
        self.space.check_append()?;
        let mut st = self.lock();
        let mut next = st.offsets.log_end;
        let mut write = sled::Batch::default();
        let mut touched: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut new_epochs = Vec::new();
        let mut events = Vec::new();
        let now = producer::now_ms();
        for raw in batches {
            let h = BatchHeader::read(raw)?;
            // Batches follow each other, with gaps where compaction emptied a batch; the one
            // exception is the first batch after a reset to the leader's log start, which may
            // begin below it.
            let empty = next == st.offsets.log_start && next == st.offsets.log_end;
            if h.last_offset() < next || (h.base_offset < next && !empty) {
                return Err(LogError::Corrupt(format!(
                    "replicated batch {}..{} overlaps this log, which ends at {next}",
                    h.base_offset,
                    h.last_offset()
                )));
            }
            let newest = new_epochs
                .last()
                .map(|(e, _)| *e)
                .or_else(|| st.epochs.last_key_value().map(|(e, _)| *e));
            if newest.is_none_or(|e| h.leader_epoch > e) {
                new_epochs.push((h.leader_epoch, h.base_offset));
                write.insert(&epoch_key(h.leader_epoch), &h.base_offset.to_be_bytes());
            }
            if h.has_producer_id() && (h.base_sequence >= 0 || h.is_transactional()) {
                let entry = touched.entry(h.producer_id).or_insert_with(|| {
                    st.producers
                        .get(&h.producer_id)
                        .cloned()
                        .unwrap_or_default()
                });
                events.extend(producer_event(entry, &h, raw, now)?);
            }
            super::chunks::put(&mut write, h.base_offset, raw);
            next = h.last_offset() + 1;
        }
        let mut offsets = st.offsets;
        offsets.log_end = next;
        write.insert(STATE_KEY, &offsets.encode());
        for (pid, e) in &touched {
            let v = serde_json::to_vec(e).map_err(|e| LogError::Corrupt(e.to_string()))?;
            write.insert(&producer_key(*pid), v);
        }
        for ev in &events {
            ev.persist(&mut write);
        }
        if let Err(e) = self.tree.apply_batch(write) {
            self.space.write_failed(&e);
            return Err(e.into());
        }
        self.space.write_succeeded();
        let appended = (next - st.offsets.log_end).max(0) as u64;
        self.flush.note(&mut st.unflushed, appended);
        st.epochs.extend(new_epochs);
        st.producers.extend(touched);
        st.offsets = offsets;
        st.txns.apply(&events);
        self.end.send_replace(next);
        self.publish_stable(&mut st);
        Ok(next)
    }

    /// Moves the high watermark (clamped to the log end; it never moves backwards here —
    /// only truncation lowers it). In memory only: [`PartitionLog::checkpoint_high_watermark`]
    /// persists it periodically.
    pub fn set_high_watermark(&self, hw: i64) -> Result<(), LogError> {
        let mut st = self.lock();
        let hw = hw.min(st.offsets.log_end);
        if hw <= st.offsets.high_watermark {
            return Ok(());
        }
        st.offsets.high_watermark = hw;
        self.hw.send_replace(hw);
        self.publish_stable(&mut st);
        Ok(())
    }

    /// Writes the high watermark to its checkpoint if it moved since the last one. Takes no
    /// partition lock across the write (appends and fetches go on meanwhile). Returns whether
    /// it wrote.
    pub fn checkpoint_high_watermark(&self) -> Result<bool, LogError> {
        use std::sync::atomic::Ordering;
        let _persist = self.hw_persist.lock().unwrap_or_else(|p| p.into_inner());
        // Read under `hw_persist`: a truncation holds it while it lowers the value.
        let hw = *self.hw.borrow();
        if hw == self.hw_checkpointed.load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.tree.insert(HW_KEY, &hw.to_be_bytes())?;
        self.hw_checkpointed.store(hw, Ordering::Relaxed);
        Ok(true)
    }

    /// A receiver that sees every high-watermark change (acks=all waits and consumers' long
    /// polls wait on it).
    pub fn watch_high_watermark(&self) -> tokio::sync::watch::Receiver<i64> {
        self.hw.subscribe()
    }

    /// A receiver that sees every change of the log end (followers' long polls wait on it).
    pub fn watch_log_end(&self) -> tokio::sync::watch::Receiver<i64> {
        self.end.subscribe()
    }
}

/// Records a replicated batch of a producer (no checks: the leader made them) and returns
/// the transaction event it causes, if any.
fn producer_event(
    entry: &mut ProducerEntry,
    h: &BatchHeader,
    raw: &Bytes,
    now: i64,
) -> Result<Option<super::txn::TxnEvent>, LogError> {
    if h.is_control() {
        return Ok(
            super::txn::parse_marker(raw)?.map(|(commit, coordinator_epoch)| {
                let m = super::txn::TxnMarker {
                    producer_id: h.producer_id,
                    producer_epoch: h.producer_epoch,
                    coordinator_epoch,
                    commit,
                };
                super::txn::on_marker(entry, &m, h.base_offset, h.max_timestamp, now)
            }),
        );
    }
    if h.base_sequence < 0 && !h.is_transactional() {
        return Ok(None);
    }
    let ev = if h.is_transactional() {
        super::txn::on_transactional_batch(entry, h, h.base_offset)
    } else {
        None
    };
    producer::record(entry, h, h.base_offset, now);
    Ok(ev)
}

/// [`producer_event`] for a stored batch (whose chunks, for a large control batch, are read
/// back whole).
fn replay_producer(
    tree: &sled::Tree,
    entry: &mut ProducerEntry,
    h: &BatchHeader,
    base: i64,
    head: &[u8],
    now: i64,
) -> Result<(), LogError> {
    let raw = if h.is_control() {
        match super::chunks::whole(tree, base, head)? {
            Some(b) => b,
            None => return Ok(()),
        }
    } else {
        Bytes::new()
    };
    producer_event(entry, h, &raw, now)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;

    fn log() -> (PartitionLog, sled::Db) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        (PartitionLog::open(db.open_tree("t").unwrap()).unwrap(), db)
    }

    #[test]
    fn epoch_cache_answers_offsets_for_leader_epoch() {
        let (l, _db) = log();
        l.append(&[make_batch(3, -1, -1)], 0).unwrap(); // 0..2 epoch 0
        l.append(&[make_batch(2, -1, -1)], 2).unwrap(); // 3..4 epoch 2
        l.append(&[make_batch(1, -1, -1)], 2).unwrap(); // 5 epoch 2
        assert_eq!(l.end_offset_for_epoch(0), Some((0, 3)));
        assert_eq!(l.end_offset_for_epoch(1), Some((0, 3)));
        assert_eq!(l.end_offset_for_epoch(2), Some((2, 6)));
        assert_eq!(l.end_offset_for_epoch(7), Some((2, 6)));
        assert_eq!(l.latest_epoch(), Some(2));
    }

    #[test]
    fn divergent_follower_truncates_and_catches_up() {
        // Leader: epoch 0 wrote 0..2, epoch 1 wrote 3..4.
        let (leader, _d1) = log();
        leader.append(&[make_batch(3, -1, -1)], 0).unwrap();
        leader.append(&[make_batch(2, -1, -1)], 1).unwrap();
        // Follower: replicated epoch 0, then (as a deposed leader) wrote 3..5 in epoch 0 that
        // were never committed.
        let (follower, _d2) = log();
        let r = leader.read(0, 1 << 20, true).unwrap();
        let first = crate::log::batch::split_batches(&r.records, 1 << 20).unwrap();
        follower.append_replicated(&first[..1]).unwrap();
        follower
            .append_as_leader(&[make_batch(3, -1, -1)], 0, false)
            .unwrap();
        assert_eq!(follower.offsets().log_end, 6);
        // Truncation: ask the leader where the follower's last epoch ends.
        let (_, end) = leader
            .end_offset_for_epoch(follower.latest_epoch().unwrap())
            .unwrap();
        let own = follower.own_end_for_epoch(0).unwrap();
        assert_eq!(follower.truncate_to(end.min(own)).unwrap(), 3);
        // Catch up from the leader: logs identical afterwards.
        let r = leader.read(3, 1 << 20, true).unwrap();
        let rest = crate::log::batch::split_batches(&r.records, 1 << 20).unwrap();
        follower.append_replicated(&rest).unwrap();
        follower.set_high_watermark(5).unwrap();
        let a = leader.read(0, 1 << 20, true).unwrap().records;
        let b = follower.read(0, 1 << 20, true).unwrap().records;
        assert_eq!(a, b);
        assert_eq!(follower.end_offset_for_epoch(1), Some((1, 5)));
    }

    #[test]
    fn truncation_removes_straddling_batches_and_producer_state() {
        let (l, _db) = log();
        l.append(&[make_batch(3, 7, 0)], 0).unwrap();
        l.append_as_leader(&[make_batch(3, 7, 3)], 1, false)
            .unwrap(); // 3..5
        assert_eq!(l.truncate_to(4).unwrap(), 3);
        assert_eq!(l.offsets().log_end, 3);
        assert_eq!(l.latest_epoch(), Some(0));
        // The truncated batch is not a duplicate any more: it is appended again.
        let again = l.append(&[make_batch(3, 7, 3)], 2).unwrap();
        assert!(!again.duplicate);
        assert_eq!(again.base_offset, 3);
    }

    #[test]
    fn replicated_producer_state_recognises_retries_after_failover() {
        let (old_leader, _d1) = log();
        old_leader.append(&[make_batch(2, 9, 0)], 0).unwrap();
        let (new_leader, _d2) = log();
        let r = old_leader.read(0, 1 << 20, true).unwrap();
        new_leader
            .append_replicated(&crate::log::batch::split_batches(&r.records, 1 << 20).unwrap())
            .unwrap();
        // The producer retries its batch against the new leader: answered, not re-appended.
        let retry = new_leader.append(&[make_batch(2, 9, 0)], 1).unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.base_offset, 0);
        assert_eq!(new_leader.offsets().log_end, 2);
    }

    #[test]
    fn the_high_watermark_is_checkpointed_not_written_on_every_advance() {
        let (l, db) = log();
        l.append_as_leader(&[make_batch(5, -1, -1)], 0, false)
            .unwrap();
        let reopen = || PartitionLog::open(db.open_tree("t").unwrap()).unwrap();
        l.set_high_watermark(3).unwrap();
        // Advances stay in memory: what is stored (a restart's view) still has 0.
        assert_eq!(reopen().offsets().high_watermark, 0);
        assert!(l.checkpoint_high_watermark().unwrap());
        assert!(!l.checkpoint_high_watermark().unwrap(), "nothing new");
        l.set_high_watermark(5).unwrap();
        // A restart before the next checkpoint starts lower (as in Kafka), never higher.
        assert_eq!(reopen().offsets().high_watermark, 3);
        assert!(l.checkpoint_high_watermark().unwrap());
        assert_eq!(reopen().offsets().high_watermark, 5);
        // Truncation lowers the checkpoint with the log: a restart does not come back above
        // the new log end once the log grows again.
        assert_eq!(
            l.truncate_to(2).unwrap(),
            0,
            "the 5-record batch straddles 2"
        );
        let stamped = crate::log::batch::stamp(&make_batch(4, -1, -1), 0, 1);
        l.append_replicated(&[Bytes::copy_from_slice(stamped.as_ref())])
            .unwrap();
        assert_eq!(l.offsets().high_watermark, 0);
        assert_eq!(reopen().offsets().high_watermark, 0);
    }

    #[test]
    fn high_watermark_only_moves_forward_and_is_watched() {
        let (l, _db) = log();
        l.append_as_leader(&[make_batch(3, -1, -1)], 0, false)
            .unwrap();
        let rx = l.watch_high_watermark();
        assert_eq!(*rx.borrow(), 0);
        l.set_high_watermark(2).unwrap();
        assert_eq!(*rx.borrow(), 2);
        l.set_high_watermark(1).unwrap();
        l.set_high_watermark(99).unwrap();
        assert_eq!(l.offsets().high_watermark, 3);
    }
}
