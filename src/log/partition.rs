//! One partition's log in its own sled tree.
//!
//! Keys: `b` + base offset (big-endian) → the stamped batch (batches above 192 KiB: its
//! head, with the rest under `c` chunk keys; see `chunks.rs`); `s` → log start, log end and
//! high watermark; `h` → the high-watermark checkpoint; `p` + producer id → that producer's
//! [`ProducerEntry`] (with its open transaction, see `txn.rs`); `e` + leader epoch →
//! the first offset written in that epoch (the leader-epoch cache used for truncation);
//! `a` + marker offset → an aborted transaction (producer id, first offset; `txn.rs`); `i` →
//! the id of the topic the log belongs to (KIP-516, 16 bytes big-endian; Kafka's
//! `partition.metadata` file), recorded when the broker first opens the log for a topic of
//! the metadata image — a log written before ids were recorded adopts the image's id then, as
//! Kafka does for logs created before topic ids. An
//! append writes the batches, the new offsets, producer entries, epoch entries and aborted
//! entries in one atomic sled batch, so after a crash either all of them are there or none.
//!
//! The high watermark lives in memory and is checkpointed to `h` periodically
//! ([`PartitionLog::checkpoint_high_watermark`], Kafka's
//! `replica.high.watermark.checkpoint.interval.ms`), not written on every advance. On open the
//! high watermark is the larger of the checkpoint and the value in `s`, capped at the log end:
//! both only ever held committed high watermarks, and truncation lowers both in its own batch,
//! so a restarted replica may start lower than before (as in Kafka) but never above what was
//! committed.
//!
//! Follower-side operations (appending replicated batches, truncation, epoch lookups) live
//! in `replica.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use super::batch::{stamp, BatchHeader};
use super::flush::{FlushPolicy, Unflushed};
use super::producer::{self, ProducerEntry, SeqCheck};
use super::txn::{TxnEvent, TxnIndex};
use super::LogError;

pub(super) const STATE_KEY: &[u8] = b"s";
/// The high-watermark checkpoint.
pub(super) const HW_KEY: &[u8] = b"h";
/// The id of the topic the log belongs to.
pub(super) const TOPIC_ID_KEY: &[u8] = b"i";

pub(super) fn epoch_key(epoch: i32) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = b'e';
    // Epochs are >= 0, so big-endian bytes sort numerically.
    k[1..].copy_from_slice(&epoch.to_be_bytes());
    k
}

pub(super) fn batch_key(offset: i64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'b';
    k[1..].copy_from_slice(&offset.to_be_bytes());
    k
}

pub(super) fn producer_key(pid: i64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'p';
    k[1..].copy_from_slice(&pid.to_be_bytes());
    k
}

/// Offsets that bound the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offsets {
    /// First offset still in the log.
    pub log_start: i64,
    /// Offset the next appended record gets.
    pub log_end: i64,
    /// Records below this offset are committed and visible to consumers.
    pub high_watermark: i64,
}

impl Offsets {
    pub(super) fn encode(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.log_start.to_be_bytes());
        b[8..16].copy_from_slice(&self.log_end.to_be_bytes());
        b[16..].copy_from_slice(&self.high_watermark.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<Self, LogError> {
        if b.len() != 24 {
            return Err(LogError::Corrupt(
                "partition state has the wrong size".into(),
            ));
        }
        let at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            i64::from_be_bytes(a)
        };
        Ok(Self {
            log_start: at(0),
            log_end: at(8),
            high_watermark: at(16),
        })
    }
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset of the first appended record (or of the original, for a duplicate).
    pub base_offset: i64,
    /// Offset after the last appended record.
    pub log_end: i64,
    pub log_start: i64,
    /// True when every batch was a retry of data already in the log.
    pub duplicate: bool,
}

/// Batches read for a fetch.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub records: Bytes,
    pub offsets: Offsets,
    /// The last stable offset when the read was made.
    pub last_stable_offset: i64,
}

/// In-memory view of a partition, guarded by one mutex so appends are serialised.
#[derive(Debug)]
pub(super) struct State {
    pub(super) offsets: Offsets,
    pub(super) producers: HashMap<i64, ProducerEntry>,
    /// Leader epoch → first offset written in it, ascending.
    pub(super) epochs: BTreeMap<i32, i64>,
    /// Messages appended since the last flush (`log.flush.interval.messages`).
    pub(super) unflushed: Unflushed,
    /// Transactions not yet stable and the aborted ones (`txn.rs`).
    pub(super) txns: TxnIndex,
    /// KIP-890 verification guards by producer id (`txn.rs`, in memory only): set when a
    /// Produce starts verifying a producer's first transactional write here, cleared when the
    /// producer's transaction opens or a marker of the producer is written.
    pub(super) verifying: HashMap<i64, u64>,
}

/// A partition log. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct PartitionLog {
    pub(super) tree: sled::Tree,
    pub(super) state: Mutex<State>,
    /// The high watermark, published for acks=all waiters and consumers' long polls.
    pub(super) hw: tokio::sync::watch::Sender<i64>,
    /// The log end offset, published for followers' long polls.
    pub(super) end: tokio::sync::watch::Sender<i64>,
    /// The last stable offset, published for read_committed long polls.
    pub(super) lso: tokio::sync::watch::Sender<i64>,
    /// Serialises writes of the high-watermark checkpoint with truncations (which lower it),
    /// so a checkpoint read before a truncation cannot land after it.
    pub(super) hw_persist: Mutex<()>,
    /// The high watermark last written to the checkpoint.
    pub(super) hw_checkpointed: std::sync::atomic::AtomicI64,
    /// Set when batches were deleted (retention, DeleteRecords, following the leader's log
    /// start, compaction), so the cleaner asks sled to give the space back.
    pub(super) removed: std::sync::atomic::AtomicBool,
    /// The database's flush rule; appends count their messages against it.
    pub(super) flush: Arc<FlushPolicy>,
    /// The data directory's free-space reserve: appends are refused below it.
    pub(super) space: Arc<super::space::DiskSpace>,
    /// The recorded topic id (`i`), once known.
    pub(super) topic_id: std::sync::OnceLock<u128>,
}

impl PartitionLog {
    /// Opens (or creates) the log stored in `tree`, relying on sled's periodic flush and
    /// without a free-space guard.
    pub fn open(tree: sled::Tree) -> Result<Self, LogError> {
        Self::open_with(
            tree,
            Arc::new(FlushPolicy::never()),
            Arc::new(super::space::DiskSpace::unlimited()),
        )
    }

    /// Opens (or creates) the log stored in `tree`, counting appends against `flush`; appends
    /// check `space` first.
    pub fn open_with(
        tree: sled::Tree,
        flush: Arc<FlushPolicy>,
        space: Arc<super::space::DiskSpace>,
    ) -> Result<Self, LogError> {
        let mut offsets = match tree.get(STATE_KEY)? {
            Some(v) => Offsets::decode(&v)?,
            None => Offsets::default(),
        };
        // The state is written in the same atomic batch as the data, but recompute the log end
        // from the last batch anyway so a damaged state cannot hand out used offsets.
        if let Some((_, v)) = tree
            .range(batch_key(0)..=batch_key(i64::MAX))
            .next_back()
            .transpose()?
        {
            let h = BatchHeader::read(&v).map_err(|e| LogError::Corrupt(e.to_string()))?;
            offsets.log_end = offsets.log_end.max(h.last_offset() + 1);
        }
        if let Some(v) = tree.get(HW_KEY)? {
            let b: [u8; 8] = v.as_ref().try_into().map_err(|_| {
                LogError::Corrupt("high-watermark checkpoint has the wrong size".into())
            })?;
            offsets.high_watermark = offsets.high_watermark.max(i64::from_be_bytes(b));
        }
        offsets.high_watermark = offsets.high_watermark.min(offsets.log_end);
        let mut producers = HashMap::new();
        let loaded_at = producer::now_ms();
        for kv in tree.scan_prefix(b"p") {
            let (k, v) = kv?;
            if k.len() != 9 {
                continue;
            }
            let mut pid = [0u8; 8];
            pid.copy_from_slice(&k[1..]);
            let mut entry: ProducerEntry = serde_json::from_slice(&v)
                .map_err(|e| LogError::Corrupt(format!("producer state: {e}")))?;
            if entry.last_write_ms < 0 {
                entry.last_write_ms = loaded_at;
            }
            producers.insert(i64::from_be_bytes(pid), entry);
        }
        let mut epochs = BTreeMap::new();
        for kv in tree.scan_prefix(b"e") {
            let (k, v) = kv?;
            if k.len() != 5 || v.len() != 8 {
                return Err(LogError::Corrupt(
                    "leader epoch entry has the wrong size".into(),
                ));
            }
            let mut e = [0u8; 4];
            e.copy_from_slice(&k[1..]);
            let mut o = [0u8; 8];
            o.copy_from_slice(&v);
            epochs.insert(i32::from_be_bytes(e), i64::from_be_bytes(o));
        }
        let txns = TxnIndex::load(&tree, producers.iter(), offsets.high_watermark)?;
        let topic_id = std::sync::OnceLock::new();
        if let Some(v) = tree.get(TOPIC_ID_KEY)? {
            let b: [u8; 16] = v
                .as_ref()
                .try_into()
                .map_err(|_| LogError::Corrupt("recorded topic id has the wrong size".into()))?;
            let _ = topic_id.set(u128::from_be_bytes(b));
        }
        let (hw, _) = tokio::sync::watch::channel(offsets.high_watermark);
        let (end, _) = tokio::sync::watch::channel(offsets.log_end);
        let (lso, _) = tokio::sync::watch::channel(txns.last_stable_offset(&offsets));
        Ok(Self {
            tree,
            state: Mutex::new(State {
                offsets,
                producers,
                epochs,
                unflushed: Unflushed::default(),
                txns,
                verifying: HashMap::new(),
            }),
            hw,
            end,
            lso,
            hw_persist: Mutex::new(()),
            hw_checkpointed: std::sync::atomic::AtomicI64::new(offsets.high_watermark),
            removed: std::sync::atomic::AtomicBool::new(false),
            flush,
            space,
            topic_id,
        })
    }

    /// The id of the topic this log belongs to, if one is recorded.
    pub fn topic_id(&self) -> Option<u128> {
        self.topic_id.get().copied()
    }

    /// Checks the log against the id its topic has in the metadata: a log without a recorded
    /// id (new, or written before ids were recorded) records `id`; a log recorded for another
    /// id is refused with [`LogError::InconsistentTopicId`] (it holds an older topic's data).
    pub fn check_topic_id(&self, id: u128) -> Result<(), LogError> {
        if self.topic_id().is_none() {
            let _state = self.lock();
            if self.topic_id().is_none() {
                self.tree.insert(TOPIC_ID_KEY, &id.to_be_bytes())?;
                let _ = self.topic_id.set(id);
            }
        }
        match self.topic_id() {
            Some(recorded) if recorded != id => Err(LogError::InconsistentTopicId {
                recorded,
                expected: id,
            }),
            _ => Ok(()),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave sled inconsistent (writes are atomic
        // batches), so a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True once after batches were deleted from this log (then false until the next time).
    pub fn take_removed(&self) -> bool {
        self.removed
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn mark_removed(&self) {
        self.removed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn offsets(&self) -> Offsets {
        self.lock().offsets
    }

    /// Appends validated batches (see [`super::batch::split_batches`]) with the partition's
    /// current leader epoch, and moves the high watermark to the new log end: on a single
    /// replica an append is committed once it is written.
    pub fn append(&self, batches: &[Bytes], leader_epoch: i32) -> Result<AppendOutcome, LogError> {
        self.append_as_leader(batches, leader_epoch, true)
    }

    /// Appends as the partition leader. With `advance_hw` false the high watermark stays
    /// where it is; replication moves it once the in-sync replicas have the data.
    pub fn append_as_leader(
        &self,
        batches: &[Bytes],
        leader_epoch: i32,
        advance_hw: bool,
    ) -> Result<AppendOutcome, LogError> {
        self.append_as_leader_verified(batches, leader_epoch, advance_hw, None)
    }

    /// [`Self::append_as_leader`] for a Produce with a transactional id (KIP-890 part 1):
    /// with `verified` set, a transactional batch that would open its producer's transaction
    /// here is refused (TXN_NOT_VERIFIED → INVALID_TXN_STATE) unless `verified` holds a guard
    /// of that producer that is still current (see [`Self::start_txn_verification`]). The
    /// check is made under the partition's lock, so a marker written after the coordinator's
    /// answer (the transaction ended meanwhile) is seen.
    pub fn append_as_leader_verified(
        &self,
        batches: &[Bytes],
        leader_epoch: i32,
        advance_hw: bool,
        verified: Option<&[super::txn::VerificationGuard]>,
    ) -> Result<AppendOutcome, LogError> {
        self.space.check_append()?;
        let mut st = self.lock();
        let mut next = st.offsets.log_end;
        let mut write = sled::Batch::default();
        let mut first_base = None;
        let mut all_duplicates = true;
        let mut touched: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut events = Vec::new();
        let now = producer::now_ms();
        for raw in batches {
            let h = BatchHeader::read(raw)?;
            if h.is_control() {
                // Markers are written by `append_txn_marker` only.
                return Err(super::batch::BatchError::ControlBatch.into());
            }
            if h.has_producer_id() && (h.base_sequence >= 0 || h.is_transactional()) {
                let entry = touched
                    .get(&h.producer_id)
                    .or_else(|| st.producers.get(&h.producer_id));
                match producer::check(entry, &h)? {
                    SeqCheck::Duplicate { base_offset } => {
                        first_base.get_or_insert(base_offset);
                        continue;
                    }
                    SeqCheck::Append => {
                        let opens = h.is_transactional()
                            && entry.is_none_or(|e| e.txn_first_offset.is_none());
                        if let (true, Some(guards)) = (opens, verified) {
                            super::txn::check_verified(&st.verifying, guards, h.producer_id)?;
                        }
                        let mut e = entry.cloned().unwrap_or_default();
                        if h.is_transactional() {
                            events.extend(super::txn::on_transactional_batch(&mut e, &h, next));
                        } else if e.txn_first_offset.is_some() {
                            // Kafka: a non-transactional write while the producer's
                            // transaction is open is INVALID_TXN_STATE.
                            return Err(LogError::InvalidTxnState {
                                producer_id: h.producer_id,
                            });
                        }
                        producer::record(&mut e, &h, next, now);
                        touched.insert(h.producer_id, e);
                    }
                }
            }
            all_duplicates = false;
            first_base.get_or_insert(next);
            let stamped = stamp(raw, next, leader_epoch);
            super::chunks::put(&mut write, next, &stamped);
            next += h.last_offset_delta as i64 + 1;
        }
        if all_duplicates {
            return Ok(AppendOutcome {
                base_offset: first_base.unwrap_or(st.offsets.log_end),
                log_end: st.offsets.log_end,
                log_start: st.offsets.log_start,
                duplicate: true,
            });
        }
        let opened = super::txn::opened_producers(&events);
        let offsets = self.finish_leader_append(
            &mut st,
            write,
            next,
            leader_epoch,
            advance_hw,
            touched,
            events,
        )?;
        for pid in opened {
            // The transaction is open: its later batches need no verification (Kafka clears
            // the verification state when the transaction starts).
            st.verifying.remove(&pid);
        }
        Ok(AppendOutcome {
            base_offset: first_base.unwrap_or(offsets.log_end),
            log_end: offsets.log_end,
            log_start: offsets.log_start,
            duplicate: false,
        })
    }

    /// Completes a leader append whose batches are in `write` and end at `next`: writes the
    /// new offsets, the epoch entry of a new leader epoch, the touched producer entries and
    /// the transaction events atomically, then updates the in-memory state and the watches.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish_leader_append(
        &self,
        st: &mut State,
        mut write: sled::Batch,
        next: i64,
        leader_epoch: i32,
        advance_hw: bool,
        touched: HashMap<i64, ProducerEntry>,
        events: Vec<TxnEvent>,
    ) -> Result<Offsets, LogError> {
        let offsets = Offsets {
            log_start: st.offsets.log_start,
            log_end: next,
            high_watermark: if advance_hw {
                next
            } else {
                st.offsets.high_watermark
            },
        };
        write.insert(STATE_KEY, &offsets.encode());
        let new_epoch = st
            .epochs
            .last_key_value()
            .is_none_or(|(e, _)| leader_epoch > *e);
        if new_epoch {
            write.insert(&epoch_key(leader_epoch), &st.offsets.log_end.to_be_bytes());
        }
        for (pid, entry) in &touched {
            let v = serde_json::to_vec(entry).map_err(|e| LogError::Corrupt(e.to_string()))?;
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
        let appended = (offsets.log_end - st.offsets.log_end) as u64;
        self.flush.note(&mut st.unflushed, appended);
        if new_epoch {
            let start = st.offsets.log_end;
            st.epochs.insert(leader_epoch, start);
        }
        st.offsets = offsets;
        st.producers.extend(touched);
        st.txns.apply(&events);
        self.hw.send_replace(offsets.high_watermark);
        self.end.send_replace(offsets.log_end);
        self.publish_stable(st);
        Ok(offsets)
    }

    /// Forgets transactions that became stable and publishes the last stable offset (call
    /// with the state locked, after the high watermark or the transactions changed).
    pub(super) fn publish_stable(&self, st: &mut State) {
        st.txns.prune(st.offsets.high_watermark);
        let lso = st.txns.last_stable_offset(&st.offsets);
        self.lso.send_if_modified(|v| {
            let changed = *v != lso;
            *v = lso;
            changed
        });
    }

    /// Drops the state of producers that have not written for `expiration_ms`
    /// (`producer.id.expiration.ms`), from memory and disk. Returns how many were dropped.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> Result<usize, LogError> {
        let mut st = self.lock();
        let expired: Vec<i64> = st
            .producers
            .iter()
            .filter(|(_, e)| e.expired(now_ms, expiration_ms))
            .map(|(pid, _)| *pid)
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        let mut write = sled::Batch::default();
        for pid in &expired {
            write.remove(&producer_key(*pid));
        }
        self.tree.apply_batch(write)?;
        for pid in &expired {
            st.producers.remove(pid);
        }
        // Give the table's memory back too, not only its entries.
        st.producers.shrink_to_fit();
        Ok(expired.len())
    }

    /// Producer ids with state in this partition (tests and diagnostics).
    pub fn producer_count(&self) -> usize {
        self.lock().producers.len()
    }

    /// Reads whole batches starting with the one that holds `offset`, below the high
    /// watermark, up to `max_bytes` — but always at least one batch when `min_one` is set
    /// (Kafka's rule, so a record larger than the fetch size still makes progress).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, LogError> {
        self.read_upto(offset, max_bytes, min_one, Limit::HighWatermark)
    }

    /// Like [`PartitionLog::read`] but below the last stable offset (a read_committed
    /// consumer's fetch, which also needs [`PartitionLog::aborted_transactions`]).
    pub fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, LogError> {
        self.read_upto(offset, max_bytes, min_one, Limit::Stable)
    }

    /// Like [`PartitionLog::read`] but up to the log end, for followers replicating the log.
    pub fn read_for_follower(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, LogError> {
        self.read_upto(offset, max_bytes, true, Limit::LogEnd)
    }

    /// [`PartitionLog::read_for_follower`], returning nothing when the next batch is larger
    /// than `max_bytes` unless `min_one`.
    pub fn read_for_follower_limited(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, LogError> {
        self.read_upto(offset, max_bytes, min_one, Limit::LogEnd)
    }

    /// Hands every stored batch holding offsets of `[from, to)` to `f`, in order, with the
    /// offset the read that found it started at (a batch may begin below it: skip its records
    /// below that offset, `f` saw them with the read before). Reads 1 MiB at a time and goes on
    /// after each batch's last offset, since compaction may remove a batch's last records but
    /// keeps its offset span. The replay of an internal topic's log (loading a coordinator).
    pub fn scan_batches(
        &self,
        from: i64,
        to: i64,
        mut f: impl FnMut(&Bytes, i64) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let mut pos = from;
        while pos < to {
            let read = self.read_for_follower(pos, 1 << 20)?;
            if read.records.is_empty() {
                break;
            }
            let mut next = pos;
            for b in super::batch::split_stored_batches(&read.records)? {
                next = next.max(BatchHeader::read(&b)?.last_offset() + 1);
                f(&b, pos)?;
            }
            if next <= pos {
                break;
            }
            pos = next;
        }
        Ok(())
    }

    fn read_upto(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        upto: Limit,
    ) -> Result<ReadResult, LogError> {
        let (offsets, last_stable_offset) = {
            let st = self.lock();
            (st.offsets, st.txns.last_stable_offset(&st.offsets))
        };
        if offset < offsets.log_start || offset > offsets.log_end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: offsets.log_start,
                log_end: offsets.log_end,
            });
        }
        let limit = match upto {
            Limit::LogEnd => offsets.log_end,
            Limit::HighWatermark => offsets.high_watermark,
            Limit::Stable => last_stable_offset,
        };
        let mut out = BytesMut::new();
        if offset >= limit {
            return Ok(ReadResult {
                records: out.freeze(),
                offsets,
                last_stable_offset,
            });
        }
        // Start at the batch containing `offset`, if it begins below it.
        let start = match self
            .tree
            .range(batch_key(0)..=batch_key(offset))
            .next_back()
            .transpose()?
        {
            Some((k, v))
                if BatchHeader::read(&v)
                    .map(|h| h.last_offset() >= offset)
                    .unwrap_or(false) =>
            {
                key_offset(&k)
            }
            _ => offset,
        };
        for kv in self.tree.range(batch_key(start)..batch_key(limit)) {
            let (k, v) = kv?;
            let len = super::chunks::declared_len(&v);
            if (!out.is_empty() || !min_one) && out.len() + len > max_bytes {
                break;
            }
            if !super::chunks::extend_whole(&self.tree, key_offset(&k), &v, &mut out)? {
                break; // deleted meanwhile (see chunks::extend_whole)
            }
        }
        Ok(ReadResult {
            records: out.freeze(),
            offsets,
            last_stable_offset,
        })
    }

    /// The offset of the first record whose timestamp is at least `ts`, with that record's
    /// timestamp, or `None` when every record is older.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        let offsets = self.offsets();
        let first = self.first_batch_key(offsets.log_start)?;
        for kv in self
            .tree
            .range(batch_key(first)..batch_key(offsets.high_watermark))
        {
            let (k, v) = kv?;
            let h = BatchHeader::read(&v)?;
            if h.max_timestamp < ts {
                continue;
            }
            let Some(batch) = super::chunks::whole(&self.tree, key_offset(&k), &v)? else {
                continue; // deleted meanwhile
            };
            // Through the bounded reader: a stored batch that does not decode is an error,
            // never an unbounded allocation.
            let recs = super::validate::stored_records(&batch)?;
            for r in recs.iter() {
                let r = r?;
                // On a LogAppendTime batch the broker's append time (the max timestamp)
                // stands for every record.
                let timestamp = if h.is_log_append_time() {
                    h.max_timestamp
                } else {
                    r.timestamp
                };
                if timestamp >= ts && r.offset >= offsets.log_start {
                    return Ok(Some((r.offset, timestamp)));
                }
            }
        }
        Ok(None)
    }
}

/// How far a read may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    LogEnd,
    HighWatermark,
    Stable,
}

pub(super) fn key_offset(k: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&k[1..9]);
    i64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;

    fn open() -> (PartitionLog, sled::Db) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        (PartitionLog::open(db.open_tree("t").unwrap()).unwrap(), db)
    }

    #[test]
    fn appends_assign_offsets_and_reads_return_whole_batches() {
        let (log, _db) = open();
        let a = log.append(&[make_batch(3, -1, -1)], 0).unwrap();
        assert_eq!((a.base_offset, a.log_end), (0, 3));
        let b = log.append(&[make_batch(2, -1, -1)], 0).unwrap();
        assert_eq!((b.base_offset, b.log_end), (3, 5));
        // Offset 4 lives in the second batch, which is returned from its start.
        let r = log.read(4, 1 << 20, true).unwrap();
        assert_eq!(BatchHeader::read(&r.records).unwrap().base_offset, 3);
        // A tiny max_bytes still returns one whole batch.
        let r = log.read(0, 1, true).unwrap();
        assert_eq!(BatchHeader::read(&r.records).unwrap().last_offset(), 2);
        assert_eq!(r.records.len(), make_batch(3, -1, -1).len());
        assert!(log.read(5, 100, true).unwrap().records.is_empty());
        assert!(matches!(
            log.read(6, 100, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
    }

    #[test]
    fn idempotent_retries_are_not_appended_twice() {
        let (log, _db) = open();
        let first = log.append(&[make_batch(3, 7, 0)], 0).unwrap();
        let retry = log.append(&[make_batch(3, 7, 0)], 0).unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.base_offset, first.base_offset);
        assert_eq!(log.offsets().log_end, 3);
        assert!(matches!(
            log.append(&[make_batch(1, 7, 9)], 0),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        assert_eq!(
            log.append(&[make_batch(1, 7, 3)], 0).unwrap().base_offset,
            3
        );
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let log = PartitionLog::open(db.open_tree("t").unwrap()).unwrap();
            log.append(&[make_batch(3, 7, 0)], 0).unwrap();
            db.flush().unwrap();
        }
        let db = crate::log::reopen::sled_when_unlocked(dir.path());
        let log = PartitionLog::open(db.open_tree("t").unwrap()).unwrap();
        assert_eq!(log.offsets().log_end, 3);
        assert_eq!(log.offsets().high_watermark, 3);
        // The producer's sequence state came back too: the retry is still a duplicate.
        assert!(log.append(&[make_batch(3, 7, 0)], 0).unwrap().duplicate);
    }

    #[test]
    fn a_stored_compression_bomb_fails_the_timestamp_lookup_instead_of_the_broker() {
        let (log, _db) = open();
        log.append(&[make_batch(2, -1, -1)], 0).unwrap();
        // Stored below the produce checks: a zstd batch inflating to 1 GiB.
        let mut b = BytesMut::from(&make_batch(1, -1, -1)[..super::super::batch::HEADER_LEN]);
        b.extend_from_slice(&crate::log::decompress::tests::zstd_zeros_frame(1 << 30));
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[22] |= 4;
        b[35..43].copy_from_slice(&5_000i64.to_be_bytes()); // max timestamp
        crate::log::validate::tests::fix_crc(&mut b);
        log.append(&[b.freeze()], 0).unwrap();
        assert_eq!(log.offset_for_timestamp(1001).unwrap(), Some((1, 1001)));
        let e = log.offset_for_timestamp(1002).unwrap_err();
        assert!(e.to_string().contains("compression bomb"), "{e}");
    }

    #[test]
    fn timestamps_find_the_exact_record() {
        let (log, _db) = open();
        log.append(&[make_batch(3, -1, -1)], 0).unwrap(); // timestamps 1000..1002
        log.append(&[make_batch(3, -1, -1)], 0).unwrap(); // again 1000..1002 at offsets 3..5
        assert_eq!(log.offset_for_timestamp(1001).unwrap(), Some((1, 1001)));
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 1000)));
        assert_eq!(log.offset_for_timestamp(5000).unwrap(), None);
    }

    #[test]
    fn timestamps_far_apart_in_one_batch_are_found() {
        use crate::log::validate::tests::batch_with_timestamps;
        let (log, _db) = open();
        let far = 999_999_999_999;
        log.append(&[batch_with_timestamps(&[1_234, far])], 0)
            .unwrap();
        assert_eq!(log.offset_for_timestamp(1_234).unwrap(), Some((0, 1_234)));
        assert_eq!(log.offset_for_timestamp(far).unwrap(), Some((1, far)));
        assert_eq!(log.offset_for_timestamp(1_235).unwrap(), Some((1, far)));
        assert_eq!(log.offset_for_timestamp(far + 1).unwrap(), None);
    }
}
