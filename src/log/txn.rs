//! Transactions in one partition log (KIP-98), the partition side: transaction markers
//! (control batches), the open transaction of each producer, the last stable offset (LSO) and
//! the aborted-transactions index.
//!
//! - A transactional data batch (attributes bit 0x10) opens a transaction of its producer in
//!   the partition unless one is open; its offset is kept in the producer's entry
//!   (`ProducerEntry::txn_first_offset`, persisted with it), so a restarted replica, a new
//!   leader and every follower (which replays the same batches) know it.
//! - A marker ([`TxnMarker`], written by [`PartitionLog::append_txn_marker`] for the
//!   transaction coordinator) is Kafka's control batch: attributes control and transactional,
//!   one record whose key is version 0 and the type (0 abort, 1 commit) and whose value is
//!   version 0 and the coordinator epoch. It ends the producer's transaction; an abort is
//!   recorded in the aborted index.
//! - The last stable offset is the smallest first offset of the transactions not yet stable —
//!   open ones, and ended ones whose marker is not yet below the high watermark (Kafka's
//!   "unreplicated" transactions) — capped at the high watermark and never below the log
//!   start. It is published on a watch so read_committed long polls wake when it moves.
//! - The aborted index: sled key `a` + marker offset (big-endian) → producer id and first
//!   offset of the aborted transaction (16 bytes), mirrored in memory. Fetch answers the
//!   aborted transactions overlapping the range it returns; entries whose marker falls below
//!   the log start go with retention and DeleteRecords, entries at or above a truncation point
//!   go with the truncated batches.
//!
//! A producer's last ended transaction (first offset, marker offset) is kept in its entry too,
//! so after a restart or a truncation a transaction whose marker is not yet below the high
//! watermark is still unstable, as in Kafka. Only the last one per producer and partition is
//! kept: should a producer end two transactions in a partition before the high watermark
//! passes the first marker, a restart counts the earlier one as stable (the coordinator has
//! decided it already, so readers see the same outcome).
//!
//! May depend on: `batch`, `validate`, `producer`, `partition` (the log's state and keys).

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::batch::{BatchHeader, HEADER_LEN};
use super::partition::{Offsets, PartitionLog};
use super::producer::ProducerEntry;
use super::LogError;

/// A transaction marker the coordinator writes to every partition of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    /// Commit (true) or abort (false).
    pub commit: bool,
}

/// An aborted transaction as Fetch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// The offset of the transaction's first batch in this partition.
    pub first_offset: i64,
    /// The offset of its abort marker.
    pub marker_offset: i64,
}

/// The attributes of a control batch: transactional (0x10) and control (0x20).
const CONTROL_ATTRIBUTES: i16 = 0x30;

/// The sled key of an aborted-index entry.
pub(super) fn aborted_key(marker_offset: i64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'a';
    k[1..].copy_from_slice(&marker_offset.to_be_bytes());
    k
}

pub(super) fn aborted_value(producer_id: i64, first_offset: i64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&producer_id.to_be_bytes());
    v[8..].copy_from_slice(&first_offset.to_be_bytes());
    v
}

fn put_varint(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

/// The control batch of `marker` (base offset 0 and leader epoch -1, stamped at append),
/// timestamped `timestamp`.
pub fn control_batch(marker: &TxnMarker, timestamp: i64) -> Bytes {
    let mut record = BytesMut::new();
    record.put_u8(0); // attributes
    put_varint(&mut record, 0); // timestamp delta
    put_varint(&mut record, 0); // offset delta
    put_varint(&mut record, 4);
    record.put_i16(0); // key version
    record.put_i16(i16::from(marker.commit)); // 0 abort, 1 commit
    put_varint(&mut record, 6);
    record.put_i16(0); // value version
    record.put_i32(marker.coordinator_epoch);
    put_varint(&mut record, 0); // no headers
    let mut records = BytesMut::new();
    put_varint(&mut records, record.len() as i64);
    records.extend_from_slice(&record);
    let mut b = BytesMut::with_capacity(HEADER_LEN + records.len());
    b.put_i64(0);
    b.put_i32((HEADER_LEN - 12 + records.len()) as i32);
    b.put_i32(-1);
    b.put_i8(2);
    b.put_u32(0); // CRC, below
    b.put_i16(CONTROL_ATTRIBUTES);
    b.put_i32(0); // last offset delta
    b.put_i64(timestamp);
    b.put_i64(timestamp);
    b.put_i64(marker.producer_id);
    b.put_i16(marker.producer_epoch);
    b.put_i32(-1); // base sequence
    b.put_i32(1); // record count
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// What a stored control batch says: `Some((commit, coordinator epoch))` for a transaction
/// marker, `None` for a control record of another type (ignored, as Kafka ignores unknown
/// control types).
pub fn parse_marker(batch: &Bytes) -> Result<Option<(bool, i32)>, LogError> {
    let recs = super::validate::stored_records(batch)?;
    let Some(r) = recs.iter().next().transpose()? else {
        return Ok(None);
    };
    let (Some(key), Some(value)) = (r.key, r.value) else {
        return Ok(None);
    };
    if key.len() < 4 || value.len() < 6 {
        return Ok(None);
    }
    let kind = i16::from_be_bytes([key[2], key[3]]);
    let epoch = i32::from_be_bytes([value[2], value[3], value[4], value[5]]);
    Ok(match kind {
        0 => Some((false, epoch)),
        1 => Some((true, epoch)),
        _ => None,
    })
}

/// A change to the transaction index made by an append, applied once the append is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxnEvent {
    Opened {
        producer_id: i64,
        first_offset: i64,
    },
    Ended {
        producer_id: i64,
        first_offset: Option<i64>,
        marker_offset: i64,
        commit: bool,
    },
}

impl TxnEvent {
    /// Adds what the event stores to an append's sled batch (the aborted-index entry).
    pub(super) fn persist(&self, write: &mut sled::Batch) {
        if let TxnEvent::Ended {
            producer_id,
            first_offset: Some(first),
            marker_offset,
            commit: false,
        } = self
        {
            write.insert(
                &aborted_key(*marker_offset),
                &aborted_value(*producer_id, *first),
            );
        }
    }
}

/// Records a transactional data batch at `base_offset` in its producer's entry: opens the
/// producer's transaction unless one is open.
pub(super) fn on_transactional_batch(
    entry: &mut ProducerEntry,
    h: &BatchHeader,
    base_offset: i64,
) -> Option<TxnEvent> {
    if entry.txn_first_offset.is_some() {
        return None;
    }
    entry.txn_first_offset = Some(base_offset);
    Some(TxnEvent::Opened {
        producer_id: h.producer_id,
        first_offset: base_offset,
    })
}

/// Ends the producer's transaction with a marker at `marker_offset` (Kafka's
/// `appendEndTxnMarker`, without the checks: the leader made them before writing).
pub(super) fn on_marker(
    entry: &mut ProducerEntry,
    m: &TxnMarker,
    marker_offset: i64,
    timestamp: i64,
    now_ms: i64,
) -> TxnEvent {
    if m.producer_epoch != entry.epoch {
        // A bumped epoch (the coordinator aborting for a new session or a timeout) restarts
        // the producer's sequences.
        entry.epoch = m.producer_epoch;
        entry.batches.clear();
    }
    entry.coordinator_epoch = m.coordinator_epoch;
    entry.last_write_ms = now_ms;
    entry.last_timestamp = timestamp;
    let first_offset = entry.txn_first_offset.take();
    if let Some(first) = first_offset {
        entry.last_txn = Some((first, marker_offset));
    }
    TxnEvent::Ended {
        producer_id: m.producer_id,
        first_offset,
        marker_offset,
        commit: m.commit,
    }
}

/// Checks a marker against the producer's entry before the leader writes it.
pub(super) fn check_marker(entry: Option<&ProducerEntry>, m: &TxnMarker) -> Result<(), LogError> {
    let Some(e) = entry else {
        return Ok(());
    };
    if m.producer_epoch < e.epoch {
        return Err(LogError::InvalidProducerEpoch {
            producer_id: m.producer_id,
            current: e.epoch,
            got: m.producer_epoch,
        });
    }
    if m.coordinator_epoch < e.coordinator_epoch {
        return Err(LogError::CoordinatorFenced {
            producer_id: m.producer_id,
            current: e.coordinator_epoch,
            got: m.coordinator_epoch,
        });
    }
    Ok(())
}

/// A KIP-890 verification guard (Kafka's `VerificationGuard`): taken by a Produce before it
/// asks the coordinator whether the partition is in the producer's transaction, and handed to
/// the append, which accepts the producer's first transactional batch only while the guard is
/// still the partition's current one for that producer. A marker of the producer (its
/// transaction ended, e.g. aborted on timeout, while the answer was on its way) clears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationGuard {
    pub producer_id: i64,
    token: u64,
}

/// Guard tokens, unique in the process.
static NEXT_GUARD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Ok when `guards` holds a current guard (in `verifying`) of `producer_id`.
pub(super) fn check_verified(
    verifying: &std::collections::HashMap<i64, u64>,
    guards: &[VerificationGuard],
    producer_id: i64,
) -> Result<(), LogError> {
    let current = verifying.get(&producer_id);
    if guards
        .iter()
        .any(|g| g.producer_id == producer_id && current == Some(&g.token))
    {
        Ok(())
    } else {
        Err(LogError::TxnNotVerified { producer_id })
    }
}

/// The producers whose transaction `events` open.
pub(super) fn opened_producers(events: &[TxnEvent]) -> Vec<i64> {
    events
        .iter()
        .filter_map(|e| match e {
            TxnEvent::Opened { producer_id, .. } => Some(*producer_id),
            TxnEvent::Ended { .. } => None,
        })
        .collect()
}

/// The in-memory transaction index of a partition (see the module documentation).
#[derive(Debug, Default, Clone)]
pub(super) struct TxnIndex {
    /// Transactions not yet stable: first offset → producer id and, once ended, the marker's
    /// offset.
    unstable: BTreeMap<i64, (i64, Option<i64>)>,
    /// Aborted transactions: marker offset → producer id and first offset.
    aborted: BTreeMap<i64, (i64, i64)>,
}

impl TxnIndex {
    /// Builds the index from the producers' open transactions and the stored aborted index.
    pub(super) fn load<'a>(
        tree: &sled::Tree,
        producers: impl Iterator<Item = (&'a i64, &'a ProducerEntry)>,
        high_watermark: i64,
    ) -> Result<Self, LogError> {
        let mut index = Self::default();
        index.add_unstable(producers, high_watermark);
        for kv in tree.scan_prefix(b"a") {
            let (k, v) = kv?;
            if k.len() != 9 || v.len() != 16 {
                return Err(LogError::Corrupt(
                    "aborted transaction entry has the wrong size".into(),
                ));
            }
            let at = |b: &[u8], o: usize| {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[o..o + 8]);
                i64::from_be_bytes(a)
            };
            index.aborted.insert(at(&k, 1), (at(&v, 0), at(&v, 8)));
        }
        Ok(index)
    }

    /// Applies the events of a written append.
    pub(super) fn apply(&mut self, events: &[TxnEvent]) {
        for ev in events {
            match *ev {
                TxnEvent::Opened {
                    producer_id,
                    first_offset,
                } => {
                    self.unstable.insert(first_offset, (producer_id, None));
                }
                TxnEvent::Ended {
                    producer_id,
                    first_offset,
                    marker_offset,
                    commit,
                } => {
                    if let Some(first) = first_offset {
                        self.unstable
                            .insert(first, (producer_id, Some(marker_offset)));
                        if !commit {
                            self.aborted.insert(marker_offset, (producer_id, first));
                        }
                    }
                }
            }
        }
    }

    /// Forgets ended transactions whose marker is below the high watermark: they are stable.
    pub(super) fn prune(&mut self, high_watermark: i64) {
        self.unstable
            .retain(|_, (_, marker)| marker.is_none_or(|m| m >= high_watermark));
    }

    /// The last stable offset of a log with these offsets.
    pub(super) fn last_stable_offset(&self, o: &Offsets) -> i64 {
        let first = self.unstable.keys().next().copied().unwrap_or(i64::MAX);
        first.min(o.high_watermark).max(o.log_start)
    }

    /// Aborted transactions that overlap `[from, to)`: their marker is at or after `from`
    /// and their first offset before `to`. In order of their first offset.
    pub(super) fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let mut out: Vec<AbortedTxn> = self
            .aborted
            .range(from..)
            .filter(|(_, (_, first))| *first < to)
            .map(|(marker, (pid, first))| AbortedTxn {
                producer_id: *pid,
                first_offset: *first,
                marker_offset: *marker,
            })
            .collect();
        out.sort_by_key(|a| a.first_offset);
        out
    }

    /// Whether the data of `producer_id` at `offset` belongs to an aborted transaction.
    pub(super) fn is_aborted(&self, producer_id: i64, offset: i64) -> bool {
        self.aborted
            .range(offset..)
            .any(|(_, (pid, first))| *pid == producer_id && *first <= offset)
    }

    /// Removes aborted entries whose marker is below `log_start`; returns their sled keys.
    pub(super) fn trim_below(&mut self, log_start: i64) -> Vec<[u8; 9]> {
        let keep = self.aborted.split_off(&log_start);
        let gone = std::mem::replace(&mut self.aborted, keep);
        gone.keys().map(|m| aborted_key(*m)).collect()
    }

    /// Sled keys of the aborted entries at or after `cut` (a truncation removes them).
    pub(super) fn keys_from(&self, cut: i64) -> Vec<[u8; 9]> {
        self.aborted
            .range(cut..)
            .map(|(m, _)| aborted_key(*m))
            .collect()
    }

    /// Rebuilds the index after a truncation at `cut` from the producers that remain.
    pub(super) fn truncated<'a>(
        &mut self,
        cut: i64,
        producers: impl Iterator<Item = (&'a i64, &'a ProducerEntry)>,
        high_watermark: i64,
    ) {
        self.aborted.split_off(&cut);
        self.unstable.clear();
        self.add_unstable(producers, high_watermark);
    }

    /// Adds the producers' open transactions, and their last ended ones whose marker is not
    /// below the high watermark.
    fn add_unstable<'a>(
        &mut self,
        producers: impl Iterator<Item = (&'a i64, &'a ProducerEntry)>,
        high_watermark: i64,
    ) {
        for (pid, e) in producers {
            if let Some(first) = e.txn_first_offset {
                self.unstable.insert(first, (*pid, None));
            }
            if let Some((first, marker)) = e.last_txn {
                if marker >= high_watermark {
                    self.unstable.insert(first, (*pid, Some(marker)));
                }
            }
        }
    }

    pub(super) fn clear(&mut self) {
        self.unstable.clear();
        self.aborted.clear();
    }

    /// How many transactions are open (not ended) in the partition.
    pub(super) fn open_count(&self) -> usize {
        self.unstable.values().filter(|(_, m)| m.is_none()).count()
    }
}

impl PartitionLog {
    /// Appends the transaction marker `marker` as the leader in `leader_epoch`, ending the
    /// producer's transaction in this partition (see the module documentation). A marker whose
    /// producer epoch is older than the producer's is refused (INVALID_PRODUCER_EPOCH), as is
    /// one from an older coordinator epoch (TRANSACTION_COORDINATOR_FENCED); a marker for a
    /// producer with no open transaction here is still written, as in Kafka. With `advance_hw`
    /// the high watermark moves to the new log end (a lone replica).
    pub fn append_txn_marker(
        &self,
        marker: TxnMarker,
        leader_epoch: i32,
        advance_hw: bool,
    ) -> Result<super::AppendOutcome, LogError> {
        self.space.check_append()?;
        let mut st = self.lock();
        check_marker(st.producers.get(&marker.producer_id), &marker)?;
        // The producer's transaction ends: a verification in flight is for a transaction that
        // no longer exists (KIP-890's guard).
        st.verifying.remove(&marker.producer_id);
        let offset = st.offsets.log_end;
        let now = super::producer::now_ms();
        let batch = control_batch(&marker, now);
        let stamped = super::batch::stamp(&batch, offset, leader_epoch);
        let mut entry = st
            .producers
            .get(&marker.producer_id)
            .cloned()
            .unwrap_or_default();
        let event = on_marker(&mut entry, &marker, offset, now, now);
        let mut write = sled::Batch::default();
        super::chunks::put(&mut write, offset, &stamped);
        let touched = std::collections::HashMap::from([(marker.producer_id, entry)]);
        self.finish_leader_append(
            &mut st,
            write,
            offset + 1,
            leader_epoch,
            advance_hw,
            touched,
            vec![event],
        )?;
        Ok(super::AppendOutcome {
            base_offset: offset,
            log_end: offset + 1,
            log_start: st.offsets.log_start,
            duplicate: false,
        })
    }

    /// Starts a KIP-890 verification of `producer_id`'s first transactional write here: None
    /// when the producer's transaction is already open in this partition (nothing to verify),
    /// else the guard to hand to [`PartitionLog::append_as_leader_verified`] once the
    /// coordinator confirmed the partition (a verification already in flight for the
    /// producer shares its guard, as in Kafka).
    pub fn start_txn_verification(&self, producer_id: i64) -> Option<VerificationGuard> {
        let mut st = self.lock();
        if st
            .producers
            .get(&producer_id)
            .is_some_and(|e| e.txn_first_offset.is_some())
        {
            return None;
        }
        let token = *st
            .verifying
            .entry(producer_id)
            .or_insert_with(|| NEXT_GUARD.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        Some(VerificationGuard { producer_id, token })
    }

    /// Drops `guard` if it is still current (the coordinator refused the partition: nothing
    /// will be appended with it).
    pub fn drop_txn_verification(&self, guard: VerificationGuard) {
        let mut st = self.lock();
        if st.verifying.get(&guard.producer_id) == Some(&guard.token) {
            st.verifying.remove(&guard.producer_id);
        }
    }

    /// The last stable offset: below it every transaction is decided (see the module
    /// documentation).
    pub fn last_stable_offset(&self) -> i64 {
        let st = self.lock();
        st.txns.last_stable_offset(&st.offsets)
    }

    /// The aborted transactions overlapping `[from, to)`, for read_committed fetches.
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.lock().txns.aborted_between(from, to)
    }

    /// How many transactions are open in this partition (metrics, tests).
    pub fn open_transactions(&self) -> usize {
        self.lock().txns.open_count()
    }

    /// A receiver that sees every change of the last stable offset (read_committed long polls
    /// wait on it).
    pub fn watch_last_stable_offset(&self) -> tokio::sync::watch::Receiver<i64> {
        self.lso.subscribe()
    }

    /// The producers with state in this partition, by id (DescribeProducers).
    pub fn producers(&self) -> Vec<(i64, ProducerEntry)> {
        let st = self.lock();
        let mut out: Vec<(i64, ProducerEntry)> =
            st.producers.iter().map(|(p, e)| (*p, e.clone())).collect();
        out.sort_by_key(|(p, _)| *p);
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;
    use crate::log::batch::{split_batches, split_stored_batches};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// A transactional batch of `n` records built by the codec crate (an encoder not ours).
    pub(crate) fn txn_batch(n: i32, producer_id: i64, epoch: i16, base_seq: i32) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: true,
                control: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: base_seq + i,
                timestamp: 2_000 + i as i64,
                key: Some(Bytes::from(format!("tk{i}"))),
                value: Some(Bytes::from(format!("tv{i}"))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    fn marker(pid: i64, epoch: i16, commit: bool) -> TxnMarker {
        TxnMarker {
            producer_id: pid,
            producer_epoch: epoch,
            coordinator_epoch: 0,
            commit,
        }
    }

    fn log() -> (PartitionLog, sled::Db) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        (PartitionLog::open(db.open_tree("t").unwrap()).unwrap(), db)
    }

    /// The base offsets of the batches in `records`.
    fn bases(records: &Bytes) -> Vec<i64> {
        if records.is_empty() {
            return Vec::new();
        }
        split_stored_batches(records)
            .unwrap()
            .iter()
            .map(|b| BatchHeader::read(b).unwrap().base_offset)
            .collect()
    }

    #[test]
    fn transactions_hold_the_lso_and_aborts_enter_the_index() {
        let (l, _db) = log();
        l.append(&[make_batch(2, -1, -1)], 0).unwrap(); // 0..1
        l.append(&[txn_batch(3, 7, 0, 0)], 0).unwrap(); // 2..4, producer 7 opens at 2
        l.append(&[txn_batch(2, 8, 0, 0)], 0).unwrap(); // 5..6, producer 8 opens at 5
        l.append(&[txn_batch(1, 7, 0, 3)], 0).unwrap(); // 7, producer 7 again
        assert_eq!(l.offsets().high_watermark, 8);
        assert_eq!(l.last_stable_offset(), 2);
        assert_eq!(l.open_transactions(), 2);
        let lso = l.watch_last_stable_offset();
        // Producer 7 aborts: the LSO moves to producer 8's first offset.
        let m = l.append_txn_marker(marker(7, 0, false), 0, true).unwrap();
        assert_eq!((m.base_offset, m.log_end), (8, 9));
        assert_eq!(l.last_stable_offset(), 5);
        assert_eq!(*lso.borrow(), 5);
        assert_eq!(
            l.aborted_transactions(0, 9),
            vec![AbortedTxn {
                producer_id: 7,
                first_offset: 2,
                marker_offset: 8
            }]
        );
        // Producer 8 commits: everything is stable, nothing more is aborted.
        l.append_txn_marker(marker(8, 0, true), 0, true).unwrap();
        assert_eq!(l.last_stable_offset(), 10);
        assert_eq!(l.open_transactions(), 0);
        assert_eq!(l.aborted_transactions(0, 10).len(), 1);
        // Ranges that do not overlap the aborted transaction do not report it.
        assert!(l.aborted_transactions(9, 10).is_empty());
        assert!(l.aborted_transactions(0, 2).is_empty());
        // The stored marker is Kafka's control batch.
        let r = l.read(8, 1 << 20, true).unwrap();
        let first = split_stored_batches(&r.records).unwrap().remove(0);
        assert!(BatchHeader::read(&first).unwrap().is_control());
        assert_eq!(parse_marker(&first).unwrap(), Some((false, 0)));
    }

    #[test]
    fn read_committed_stops_at_the_lso_and_the_lso_waits_for_the_replicated_marker() {
        let (l, _db) = log();
        l.append(&[make_batch(2, -1, -1)], 0).unwrap(); // 0..1
        l.append(&[txn_batch(2, 7, 0, 0)], 0).unwrap(); // 2..3 open
        l.append(&[make_batch(1, -1, -1)], 0).unwrap(); // 4
        let rc = l.read_committed(0, 1 << 20, true).unwrap();
        assert_eq!(bases(&rc.records), vec![0]);
        assert_eq!(rc.last_stable_offset, 2);
        assert!(l
            .read_committed(2, 1 << 20, true)
            .unwrap()
            .records
            .is_empty());
        // read_uncommitted goes on to the high watermark.
        assert_eq!(
            bases(&l.read(0, 1 << 20, true).unwrap().records),
            vec![0, 2, 4]
        );
        // The marker is written but not replicated: still unstable (Kafka's rule).
        l.append_txn_marker(marker(7, 0, true), 0, false).unwrap(); // 5
        assert_eq!(l.last_stable_offset(), 2);
        l.set_high_watermark(5).unwrap();
        assert_eq!(
            l.last_stable_offset(),
            2,
            "the marker itself is not below the HW"
        );
        l.set_high_watermark(6).unwrap();
        assert_eq!(l.last_stable_offset(), 6);
        assert_eq!(
            bases(&l.read_committed(0, 1 << 20, true).unwrap().records),
            vec![0, 2, 4, 5]
        );
    }

    #[test]
    fn an_ended_transaction_stays_unstable_across_a_reopen_until_its_marker_is_replicated() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let open = || PartitionLog::open(db.open_tree("t").unwrap()).unwrap();
        let l = open();
        l.append(&[make_batch(1, -1, -1)], 0).unwrap(); // 0
        l.append_as_leader(&[txn_batch(2, 7, 0, 0)], 0, false)
            .unwrap(); // 1..2
        l.append_txn_marker(marker(7, 0, true), 0, false).unwrap(); // 3
        l.set_high_watermark(3).unwrap();
        l.checkpoint_high_watermark().unwrap();
        assert_eq!(l.last_stable_offset(), 1);
        let again = open();
        assert_eq!(again.offsets().high_watermark, 3);
        assert_eq!(
            again.last_stable_offset(),
            1,
            "the marker is not below the HW yet"
        );
        again.set_high_watermark(4).unwrap();
        assert_eq!(again.last_stable_offset(), 4);
        // Truncating the follower's copy back to the marker's offset reopens the transaction.
        again.truncate_to(3).unwrap();
        assert_eq!(again.open_transactions(), 1);
        assert_eq!(again.last_stable_offset(), 1);
    }

    #[test]
    fn a_transaction_ending_between_verification_and_append_is_refused() {
        let (l, _db) = log();
        // A Produce of producer 7 takes a guard and asks the coordinator...
        let g = l
            .start_txn_verification(7)
            .expect("nothing open here: verify");
        // ...another producer's marker does not matter...
        l.append_txn_marker(marker(8, 0, true), 0, true).unwrap();
        // ...but meanwhile producer 7's transaction ends (the coordinator aborted it) and its
        // marker lands here; then the coordinator's earlier "yes" reaches the append.
        l.append_txn_marker(marker(7, 0, false), 0, true).unwrap();
        assert!(matches!(
            l.append_as_leader_verified(&[txn_batch(2, 7, 0, 0)], 0, true, Some(&[g])),
            Err(LogError::TxnNotVerified { producer_id: 7 })
        ));
        assert_eq!(
            l.open_transactions(),
            0,
            "no hanging transaction was opened"
        );
        // Without a marker in between, the verified append opens the transaction and spends
        // the guard: its later batches need no verification.
        let g2 = l.start_txn_verification(7).unwrap();
        assert_ne!(g2, g, "a fresh guard");
        assert_eq!(
            l.start_txn_verification(7),
            Some(g2),
            "concurrent verifications share the guard"
        );
        l.append_as_leader_verified(&[txn_batch(2, 7, 0, 0)], 0, true, Some(&[g2]))
            .unwrap();
        assert_eq!(l.open_transactions(), 1);
        assert_eq!(l.start_txn_verification(7), None);
        l.append_as_leader_verified(&[txn_batch(1, 7, 0, 2)], 0, true, Some(&[]))
            .unwrap();
        // A batch that found the transaction open (so was not verified) is refused when the
        // transaction ended before its append.
        l.append_txn_marker(marker(7, 0, true), 0, true).unwrap();
        assert!(matches!(
            l.append_as_leader_verified(&[txn_batch(1, 7, 0, 3)], 0, true, Some(&[])),
            Err(LogError::TxnNotVerified { producer_id: 7 })
        ));
        assert_eq!(l.open_transactions(), 0);
        // A guard the coordinator refused is dropped; appends without verification (other
        // writers than Produce) are not checked.
        let g3 = l.start_txn_verification(7).unwrap();
        l.drop_txn_verification(g3);
        assert!(l
            .append_as_leader_verified(&[txn_batch(1, 7, 0, 3)], 0, true, Some(&[g3]))
            .is_err());
        l.append_as_leader(&[txn_batch(1, 7, 0, 3)], 0, true)
            .unwrap();
    }

    #[test]
    fn stale_markers_and_non_transactional_writes_in_a_transaction_are_refused() {
        let (l, _db) = log();
        l.append(&[txn_batch(1, 7, 2, 0)], 0).unwrap();
        assert!(matches!(
            l.append_txn_marker(marker(7, 1, false), 0, true),
            Err(LogError::InvalidProducerEpoch {
                current: 2,
                got: 1,
                ..
            })
        ));
        // An idempotent (non-transactional) batch while the transaction is open.
        let mut plain = BytesMut::from(&make_batch(1, 7, 1)[..]);
        plain[51..53].copy_from_slice(&2i16.to_be_bytes());
        crate::log::validate::tests::fix_crc(&mut plain);
        assert!(matches!(
            l.append(&[plain.freeze()], 0),
            Err(LogError::InvalidTxnState { producer_id: 7 })
        ));
        // A newer coordinator epoch fences the older one.
        l.append_txn_marker(
            TxnMarker {
                coordinator_epoch: 5,
                ..marker(7, 2, true)
            },
            0,
            true,
        )
        .unwrap();
        assert!(matches!(
            l.append_txn_marker(
                TxnMarker {
                    coordinator_epoch: 4,
                    ..marker(7, 2, true)
                },
                0,
                true
            ),
            Err(LogError::CoordinatorFenced { .. })
        ));
        // A marker for a producer without a transaction here is still written (as Kafka).
        let before = l.offsets().log_end;
        l.append_txn_marker(marker(99, 0, false), 0, true).unwrap();
        assert_eq!(l.offsets().log_end, before + 1);
        assert!(l.aborted_transactions(0, i64::MAX).is_empty());
        // A bumped epoch in an abort marker fences the old epoch's data and restarts
        // sequences.
        l.append(&[txn_batch(1, 7, 2, 1)], 0).unwrap();
        l.append_txn_marker(
            TxnMarker {
                coordinator_epoch: 5,
                ..marker(7, 3, false)
            },
            0,
            true,
        )
        .unwrap();
        assert!(matches!(
            l.append(&[txn_batch(1, 7, 2, 2)], 0),
            Err(LogError::InvalidProducerEpoch { .. })
        ));
        assert!(l.append(&[txn_batch(1, 7, 3, 0)], 0).is_ok());
        // Clients may not write control batches.
        let control = control_batch(&marker(7, 3, true), 0);
        assert!(matches!(
            split_batches(&control, 1 << 20),
            Err(crate::log::batch::BatchError::ControlBatch)
        ));
    }

    /// Copies the leader's batches from `from` to the follower.
    fn replicate(leader: &PartitionLog, follower: &PartitionLog, from: i64) {
        let r = leader.read_for_follower(from, 1 << 20).unwrap();
        follower
            .append_replicated(&split_stored_batches(&r.records).unwrap())
            .unwrap();
        follower
            .set_high_watermark(leader.offsets().high_watermark)
            .unwrap();
    }

    #[test]
    fn followers_rebuild_transactions_from_the_replicated_batches() {
        let (leader, _d1) = log();
        let (follower, _d2) = log();
        leader.append(&[txn_batch(2, 7, 0, 0)], 0).unwrap(); // 0..1
        leader.append(&[txn_batch(2, 8, 0, 0)], 0).unwrap(); // 2..3
        leader
            .append_txn_marker(marker(7, 0, false), 0, true)
            .unwrap(); // 4
        replicate(&leader, &follower, 0);
        assert_eq!(follower.last_stable_offset(), 2);
        assert_eq!(
            follower.aborted_transactions(0, 5),
            leader.aborted_transactions(0, 5)
        );
        // Becoming leader, the follower knows producer 8's transaction and ends it.
        follower
            .append_txn_marker(marker(8, 0, true), 1, true)
            .unwrap();
        assert_eq!(follower.last_stable_offset(), 6);
        // Truncation below the abort marker opens producer 7's transaction again and drops
        // its aborted entry.
        follower.truncate_to(4).unwrap();
        assert_eq!(follower.last_stable_offset(), 0);
        assert_eq!(follower.open_transactions(), 2);
        assert!(follower.aborted_transactions(0, i64::MAX).is_empty());
    }

    #[test]
    fn a_new_leader_continues_a_transactional_producers_sequences() {
        // Producer 7 (epoch 0): a committed transaction (seq 0..2), then a second one (seq
        // 3..4, 5..6) whose last batch only the old leader got before the leader change.
        let (leader, _d1) = log();
        let (follower, _d2) = log();
        leader.append(&[txn_batch(3, 7, 0, 0)], 0).unwrap(); // 0..2
        leader
            .append_txn_marker(marker(7, 0, true), 0, true)
            .unwrap(); // 3
        leader.append(&[txn_batch(2, 7, 0, 3)], 0).unwrap(); // 4..5
        replicate(&leader, &follower, 0);
        leader.append(&[txn_batch(2, 7, 0, 5)], 0).unwrap(); // not replicated
                                                             // The follower leads now (epoch 1): the producer's retry of the batch it has is a
                                                             // duplicate, the lost batch is appended in order, the next one follows it.
        let dup = follower
            .append_as_leader(&[txn_batch(2, 7, 0, 3)], 1, true)
            .unwrap();
        assert!(dup.duplicate);
        assert_eq!(dup.base_offset, 4);
        follower
            .append_as_leader(&[txn_batch(2, 7, 0, 5)], 1, true)
            .unwrap();
        follower
            .append_as_leader(&[txn_batch(1, 7, 0, 7)], 1, true)
            .unwrap();
        assert!(matches!(
            follower.append_as_leader(&[txn_batch(1, 7, 0, 9)], 1, true),
            Err(LogError::OutOfOrderSequence { expected: 8, .. })
        ));
        // An abort with a bumped epoch (the coordinator's, on timeout) restarts sequences.
        follower
            .append_txn_marker(marker(7, 1, false), 1, true)
            .unwrap();
        follower
            .append_as_leader(&[txn_batch(1, 7, 2, 0)], 1, true)
            .unwrap();
    }

    #[test]
    fn open_transactions_and_the_aborted_index_survive_a_reopen() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let open = || PartitionLog::open(db.open_tree("t").unwrap()).unwrap();
        {
            let l = open();
            l.append(&[txn_batch(2, 7, 0, 0)], 0).unwrap(); // 0..1
            l.append_txn_marker(marker(7, 0, false), 0, true).unwrap(); // 2
            l.append(&[txn_batch(1, 8, 0, 0)], 0).unwrap(); // 3 open
            l.checkpoint_high_watermark().unwrap();
        }
        let l = open();
        assert_eq!(l.last_stable_offset(), 3);
        assert_eq!(l.open_transactions(), 1);
        assert_eq!(l.aborted_transactions(0, 4).len(), 1);
        // Producer state came back: a stale marker is still refused, sequences continue.
        assert!(l.append(&[txn_batch(1, 8, 0, 1)], 0).is_ok());
        // Retention past the marker trims the index, on disk too.
        l.append_txn_marker(marker(8, 0, true), 0, true).unwrap();
        l.advance_log_start(3).unwrap();
        assert!(l.aborted_transactions(0, i64::MAX).is_empty());
        drop(l);
        assert!(open().aborted_transactions(0, i64::MAX).is_empty());
    }

    #[test]
    fn control_batches_are_kafkas_layout_and_parse_back() {
        let m = TxnMarker {
            producer_id: 42,
            producer_epoch: 3,
            coordinator_epoch: 7,
            commit: true,
        };
        let b = control_batch(&m, 1_000);
        let split = super::super::batch::split_stored_batches(&b).unwrap();
        let h = BatchHeader::read(&split[0]).unwrap();
        assert!(h.is_control() && h.is_transactional());
        assert_eq!((h.producer_id, h.producer_epoch), (42, 3));
        assert_eq!((h.base_sequence, h.record_count), (-1, 1));
        assert_eq!(parse_marker(&b).unwrap(), Some((true, 7)));
        let abort = control_batch(&TxnMarker { commit: false, ..m }, 1);
        assert_eq!(parse_marker(&abort).unwrap(), Some((false, 7)));
        // The codec crate (not ours) reads it as a control record.
        let mut buf = b.clone();
        let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
        let rec = &decoded.records[0];
        assert!(rec.control && rec.transactional);
        assert_eq!(rec.key.as_deref(), Some(&[0u8, 0, 0, 1][..]));
        assert_eq!(rec.value.as_deref(), Some(&[0u8, 0, 0, 0, 0, 7][..]));
    }
}
