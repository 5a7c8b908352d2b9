//! Transactional offset commits in `__consumer_offsets` (TxnOffsetCommit, KIP-98/447):
//!
//! - `ReplicatedOffsetStore::put_txn` appends the offsets as a transactional batch of the
//!   producer (its id and epoch, no sequence, as Kafka's coordinator writes them; an older
//!   epoch than the partition has seen is fenced) and keeps them pending in the partition's
//!   `OffsetsPartition::txn`, invisible to OffsetFetch.
//! - The store is the writer's [`MarkerListener`]: a commit marker written to an offsets
//!   partition this broker leads moves the producer's pending offsets into the queue of
//!   appended records, which joins the committed offsets once the high watermark passes the
//!   marker (as every commit does); an abort marker drops them.
//! - The loader replays the same from the log: transactional batches become pending, markers
//!   apply or drop them (`replay_batch`); markers written while the partition was loading
//!   are replayed from the log right after the load (`catch_up`).
//!
//! May depend on what `offsets_topic` depends on.

use bytes::Bytes;

use super::store::{encode_commits, write_error, Pending, ReplicatedOffsetStore, Slot};
use super::OFFSETS_TOPIC;
use crate::group::{CommittedOffset, GroupError, OffsetRecord, OffsetsPartition, TopicPartition};
use crate::log::validate::BatchRecords;
use crate::log::{LogError, LogStore, TxnMarker};
use crate::protocol::batch_builder::BatchBuilder;
use crate::writer::{MarkerListener, WriteError};

/// One transactional v2 batch of `producer_id` (no sequence, uncompressed, partition leader
/// epoch 0) holding `records` as (key, value), built by the one batch builder.
pub fn build_txn_batch(
    records: &[(Vec<u8>, Option<Vec<u8>>)],
    timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
) -> Bytes {
    records
        .iter()
        .fold(
            BatchBuilder::new()
                .producer(producer_id, producer_epoch, -1)
                .transactional()
                .partition_leader_epoch(0)
                .timestamp(timestamp),
            |b, (k, v)| b.record(Some(k), v.as_deref()),
        )
        .build()
        .expect("encoding an uncompressed batch cannot fail")
}

/// A write error of a transactional commit: a fenced producer is INVALID_PRODUCER_EPOCH.
fn txn_write_error(e: WriteError, what: &str) -> GroupError {
    match e {
        WriteError::Log(e @ LogError::InvalidProducerEpoch { .. }) => {
            GroupError::InvalidProducerEpoch(e.to_string())
        }
        e => write_error(e, what),
    }
}

impl ReplicatedOffsetStore {
    /// See [`crate::group::OffsetStore::put_txn`].
    pub(super) fn put_txn_offsets(
        &self,
        group: &str,
        producer_id: i64,
        producer_epoch: i16,
        offsets: &[(TopicPartition, CommittedOffset)],
    ) -> Result<(), GroupError> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.with_loaded(group, |p, epoch, part, pending| {
            let records = encode_commits(group, offsets)?;
            let batch = build_txn_batch(
                &records,
                crate::clock::unix_ms(),
                producer_id,
                producer_epoch,
            );
            let out = self
                .writer
                .append(OFFSETS_TOPIC, p, epoch, &[batch])
                .map_err(|e| txn_write_error(e, &format!("{OFFSETS_TOPIC}-{p} is not led here")))?;
            // `sync` waits for this end; the records stay out of the committed offsets.
            *pending.end = out.log_end;
            part.txn.add(
                producer_id,
                offsets.iter().map(|(tp, o)| OffsetRecord {
                    group: group.to_string(),
                    tp: tp.clone(),
                    offset: Some(o.clone()),
                }),
            );
            Ok(())
        })
    }

    /// See [`crate::group::OffsetStore::pending_txn`].
    pub(super) fn pending_txn_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<TopicPartition>, GroupError> {
        self.with_loaded(group, |_, _, part, _| Ok(part.txn.pending(group)))
    }
}

/// Ends `marker`'s transaction in a loaded slot: a commit queues the producer's offsets to
/// join the committed ones once the high watermark passes `end`; an abort drops them.
fn end_in_slot(slot: &mut Slot, producer_id: i64, commit: bool, end: i64) {
    let Slot::Loaded {
        offsets,
        pending_end,
        pending,
        ..
    } = slot
    else {
        return;
    };
    let records = offsets.txn.take(producer_id);
    if commit && !records.is_empty() {
        Pending {
            end: pending_end,
            records: pending,
        }
        .push(end, records);
    }
}

impl MarkerListener for ReplicatedOffsetStore {
    fn marker_written(&self, topic: &str, partition: i32, offset: i64, marker: &TxnMarker) {
        if topic != OFFSETS_TOPIC {
            return;
        }
        // A partition still loading catches up with this marker after the load (`catch_up`).
        if let Some(slot) = self.lock().get_mut(&partition) {
            end_in_slot(slot, marker.producer_id, marker.commit, offset + 1);
        }
    }
}

/// Replays a transactional or control batch of an offsets partition into `part` (records
/// outside `[from, to)` skipped); returns false for other batches, which the caller replays.
pub(super) fn replay_batch(
    part: &mut OffsetsPartition,
    batch: &Bytes,
    recs: &BatchRecords,
    from: i64,
    to: i64,
) -> Result<bool, LogError> {
    let h = recs.header;
    if h.is_control() {
        if h.base_offset >= from && h.base_offset < to {
            if let Some((commit, _)) = crate::log::txn::parse_marker(batch)? {
                part.end_txn(h.producer_id, commit);
            }
        }
        return Ok(true);
    }
    if !h.is_transactional() {
        return Ok(false);
    }
    for r in recs.iter() {
        let r = r?;
        if r.offset < from || r.offset >= to {
            continue;
        }
        if let Some(k) = r.key {
            part.txn.replay(h.producer_id, k, r.value);
        }
    }
    Ok(true)
}

/// After loading partition `p` (replayed up to `OffsetsPartition::txn.replayed_to`), applies
/// the markers appended since: their listener calls found the partition still loading.
/// Ending a transaction twice is harmless (its pending offsets are taken once).
pub(super) fn catch_up(logs: &LogStore, p: i32, slot: &mut Slot) -> Result<(), LogError> {
    let from = match slot {
        Slot::Loaded { offsets, .. } => offsets.txn.replayed_to,
        Slot::Loading { .. } => return Ok(()),
    };
    let Some(log) = logs.partition(OFFSETS_TOPIC, p) else {
        return Ok(());
    };
    log.scan_batches(from, log.offsets().log_end, |b, pos| {
        let h = crate::log::batch::BatchHeader::read(b)?;
        if h.is_control() && h.base_offset >= pos {
            if let Some((commit, _)) = crate::log::txn::parse_marker(b)? {
                end_in_slot(slot, h.producer_id, commit, h.base_offset + 1);
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::super::store::{load_partition, promote};
    use super::*;
    use crate::group::records::encode_record;

    fn off(o: i64) -> CommittedOffset {
        CommittedOffset {
            offset: o,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 1,
        }
    }

    fn marker(pid: i64, commit: bool) -> TxnMarker {
        TxnMarker {
            producer_id: pid,
            producer_epoch: 0,
            coordinator_epoch: 0,
            commit,
        }
    }

    fn txn_commit(group: &str, tp: &TopicPartition, o: i64, pid: i64) -> Bytes {
        let rec = encode_record(group, tp, Some(&off(o))).unwrap();
        build_txn_batch(&[rec], 1, pid, 0)
    }

    fn committed(slot: &Slot, tp: &TopicPartition) -> Option<i64> {
        match slot {
            Slot::Loaded { offsets, .. } => offsets.get("g", tp).map(|o| o.offset),
            Slot::Loading { .. } => None,
        }
    }

    #[test]
    fn the_loader_applies_committed_transactions_drops_aborted_and_keeps_open_ones_pending() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = LogStore::with_db(db, u64::MAX);
        let log = store.open_partition(OFFSETS_TOPIC, 0).unwrap();
        let (t0, t1, t2) = (
            TopicPartition::new("t", 0),
            TopicPartition::new("t", 1),
            TopicPartition::new("t", 2),
        );
        log.append(&[txn_commit("g", &t0, 5, 7)], 0).unwrap();
        log.append(&[txn_commit("g", &t1, 6, 8)], 0).unwrap();
        log.append(&[txn_commit("g", &t2, 9, 9)], 0).unwrap();
        log.append_txn_marker(marker(7, true), 0, true).unwrap();
        log.append_txn_marker(marker(8, false), 0, true).unwrap();
        let part = load_partition(&log).unwrap();
        assert_eq!(part.get("g", &t0).map(|o| o.offset), Some(5));
        assert_eq!(part.get("g", &t1), None, "aborted");
        assert_eq!(part.get("g", &t2), None, "still open");
        assert_eq!(part.txn.pending("g"), vec![t2.clone()]);
        assert_eq!(part.txn.replayed_to, log.offsets().log_end);
    }

    #[test]
    fn markers_move_pending_offsets_once_replicated_and_markers_written_while_loading_are_caught_up(
    ) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = LogStore::with_db(db, u64::MAX);
        let log = store.open_partition(OFFSETS_TOPIC, 0).unwrap();
        let (t0, t1) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        log.append(&[txn_commit("g", &t0, 5, 7)], 0).unwrap();
        log.append(&[txn_commit("g", &t1, 6, 8)], 0).unwrap();
        let offsets = load_partition(&log).unwrap();
        let mut slot = Slot::Loaded {
            epoch: 0,
            offsets,
            pending_end: 2,
            pending: VecDeque::new(),
        };
        // Producer 7 commits (not yet replicated): pending until the HW passes the marker.
        let m = log.append_txn_marker(marker(7, true), 0, false).unwrap();
        end_in_slot(&mut slot, 7, true, m.log_end);
        promote(&store, 0, &mut slot);
        assert_eq!(committed(&slot, &t0), None);
        log.set_high_watermark(m.log_end).unwrap();
        promote(&store, 0, &mut slot);
        assert_eq!(committed(&slot, &t0), Some(5));
        // Producer 8's commit marker lands while the partition was loading (no listener
        // call reached the slot): the catch-up after the load applies it.
        log.append_txn_marker(marker(8, true), 0, true).unwrap();
        catch_up(&store, 0, &mut slot).unwrap();
        promote(&store, 0, &mut slot);
        assert_eq!(committed(&slot, &t1), Some(6));
        // A marker seen twice (listener and catch-up) changes nothing more.
        end_in_slot(&mut slot, 8, true, log.offsets().log_end);
        promote(&store, 0, &mut slot);
        assert_eq!(committed(&slot, &t1), Some(6));
    }
}
