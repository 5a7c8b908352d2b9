//! Committed offsets in a cluster: the internal, replicated topic `__consumer_offsets`, as
//! Kafka keeps them.
//!
//! - [`OffsetsTopicPlacement`]: group G is coordinated by the current leader of partition
//!   `abs(hashCode(G)) % N` of `__consumer_offsets` (Java's `String.hashCode`, N = the topic's
//!   partition count); before the topic exists no broker coordinates (COORDINATOR_NOT_AVAILABLE)
//!   and FindCoordinator creates it ([`Broker::ensure_offsets_topic`](crate::broker::Broker::ensure_offsets_topic)).
//! - [`ReplicatedOffsetStore`]: OffsetCommit appends one record per offset (layout in
//!   `group::offsets`) to the group's partition as its leader, through the same
//!   [`PartitionWriter`] as Produce, and `sync` waits until they are flushed and the high
//!   watermark passes them (acks=all) within
//!   `offsets.commit.timeout.ms` (else REQUEST_TIMED_OUT). OffsetDelete, DeleteGroups and deleted
//!   topics append tombstones. Reads are served from an in-memory copy of each partition this
//!   broker leads.
//! - [`OffsetsLoader`]: the replica manager's role listener. On becoming leader of an offsets
//!   partition it marks the partition loading (requests for its groups answer
//!   COORDINATOR_LOAD_IN_PROGRESS), replays the partition's log from its start to its end and
//!   hands the groups found to the coordinator; on losing leadership it drops the partition and
//!   its groups (NOT_COORDINATOR from then on).
//!
//! The loader reads to the log end, not only to the high watermark: the leader's log is the
//! partition's truth (followers truncate to it, it is never truncated while it leads), so a
//! commit above the high watermark will be committed as followers catch up — and every
//! acknowledged commit is below it anyway.
//!
//! May depend on: `group`, `log`, `writer`, `replication` (the role listener), `metadata`, `raft`
//! (the applied image channel),
//! the codec's record batches. Not on `api` or the network.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::watch;

use crate::group::records::encode_record;
use crate::group::{
    CommittedOffset, GroupCoordinator, GroupError, OffsetRecord, OffsetStore, OffsetsPartition,
    Placement, SyncFuture, TopicPartition,
};
use crate::lease::SelfLease;
use crate::log::{LogError, LogStore, PartitionLog};
use crate::metadata::ClusterImage;
use crate::raft::AppliedImage;
use crate::replication::manager::RoleListener;
use crate::writer::{PartitionWriter, WriteError};

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Java's `String.hashCode` (over UTF-16 code units).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The offsets partition of a group: `Utils.abs(hashCode) % partitions`, as Kafka computes it
/// (`abs(Integer.MIN_VALUE)` is 0 there).
pub fn partition_for(group: &str, partitions: usize) -> i32 {
    let h = java_string_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    (abs as usize % partitions.max(1)) as i32
}

fn offsets_partition_count(image: &ClusterImage) -> Option<usize> {
    image
        .topics
        .get(OFFSETS_TOPIC)
        .map(|t| t.partitions.len())
        .filter(|n| *n > 0)
}

/// Coordinator = leader of the group's offsets partition (see the module documentation).
pub struct OffsetsTopicPlacement {
    pub images: watch::Receiver<AppliedImage>,
}

impl Placement for OffsetsTopicPlacement {
    fn coordinator_of(&self, group_id: &str) -> Option<i32> {
        let image = self.images.borrow().image.clone();
        let n = offsets_partition_count(&image)?;
        let p = &image.topics[OFFSETS_TOPIC].partitions[partition_for(group_id, n) as usize];
        image
            .brokers
            .get(&p.leader)
            .filter(|b| !b.fenced)
            .map(|b| b.id)
    }
}

/// One offsets partition this broker leads.
enum Slot {
    /// Being replayed from the log (requests answer COORDINATOR_LOAD_IN_PROGRESS).
    Loading { epoch: i32 },
    Loaded {
        epoch: i32,
        /// Committed offsets: what OffsetFetch serves.
        offsets: OffsetsPartition,
        /// Log end after this broker's last append: `sync` waits for the high watermark.
        pending_end: i64,
        /// Appended records not yet below the high watermark, with the log end after each
        /// append. They join `offsets` only once replicated to the ISR (as Kafka keeps
        /// pending commits out of OffsetFetch): a commit that the ISR never gets — lost with
        /// a leadership change — must never have been visible.
        pending: VecDeque<(i64, Vec<OffsetRecord>)>,
    },
}

/// Moves the pending records of a loaded slot of partition `p` that are now below the
/// high watermark into its committed offsets, in append order.
fn promote(logs: &LogStore, p: i32, slot: &mut Slot) {
    let Slot::Loaded {
        offsets, pending, ..
    } = slot
    else {
        return;
    };
    if pending.is_empty() {
        return;
    }
    let Some(log) = logs.partition(OFFSETS_TOPIC, p) else {
        return;
    };
    let hw = log.offsets().high_watermark;
    while pending.front().is_some_and(|(end, _)| *end <= hw) {
        if let Some((_, records)) = pending.pop_front() {
            for r in records {
                offsets.apply(r);
            }
        }
    }
}

/// A loaded slot's appends in flight, as `with_loaded` hands them out.
struct Pending<'a> {
    /// Log end after the last append.
    end: &'a mut i64,
    records: &'a mut VecDeque<(i64, Vec<OffsetRecord>)>,
}

impl Pending<'_> {
    fn push(&mut self, end: i64, records: Vec<OffsetRecord>) {
        *self.end = end;
        self.records.push_back((end, records));
    }
}

/// Offsets in `__consumer_offsets` (see the module documentation).
pub struct ReplicatedOffsetStore {
    logs: Arc<LogStore>,
    writer: Arc<PartitionWriter>,
    images: watch::Receiver<AppliedImage>,
    slots: Mutex<HashMap<i32, Slot>>,
    commit_timeout: Duration,
    /// This broker's self-lease: no group is served while it is expired.
    lease: Arc<SelfLease>,
}

/// A write error as the group coordinator reports it; `what` names the group or partition.
fn write_error(e: WriteError, what: &str) -> GroupError {
    match e {
        WriteError::NotLeader { .. } | WriteError::LeadershipLost { .. } => {
            GroupError::NotCoordinator(what.to_string())
        }
        WriteError::Timeout { .. } => GroupError::Timeout,
        WriteError::Log(e) => storage(e),
    }
}

fn storage(e: LogError) -> GroupError {
    GroupError::Storage(e.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One v2 record batch (no producer id, uncompressed) holding `records` as (key, value).
pub fn build_batch(records: &[(Vec<u8>, Option<Vec<u8>>)], timestamp: i64) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Base sequence -1 (no idempotence); offset - sequence stays constant so the encoder
            // keeps every record in one batch.
            sequence: i as i32 - 1,
            timestamp,
            key: Some(Bytes::copy_from_slice(k)),
            value: v.as_deref().map(Bytes::copy_from_slice),
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
    .expect("encoding an uncompressed batch cannot fail");
    buf.freeze()
}

/// Replays an offsets partition's log from its start to its end.
pub fn load_partition(log: &PartitionLog) -> Result<OffsetsPartition, LogError> {
    let offsets = log.offsets();
    let mut part = OffsetsPartition::default();
    let mut pos = offsets.log_start;
    while pos < offsets.log_end {
        let read = log.read_for_follower(pos, 1 << 20)?;
        if read.records.is_empty() {
            break;
        }
        // Continue after each batch's last offset: compaction may have removed a batch's
        // last records but keeps its offset span.
        let mut next = pos;
        for b in crate::log::batch::split_stored_batches(&read.records)? {
            let recs = crate::log::validate::stored_records(&b)?;
            next = next.max(recs.header.last_offset() + 1);
            for r in recs.iter() {
                let r = r?;
                if r.offset < pos || r.offset >= offsets.log_end {
                    continue;
                }
                if let Some(k) = r.key {
                    part.replay(k, r.value);
                }
            }
        }
        if next <= pos {
            break;
        }
        pos = next;
    }
    Ok(part)
}

impl ReplicatedOffsetStore {
    pub fn new(
        logs: Arc<LogStore>,
        writer: Arc<PartitionWriter>,
        images: watch::Receiver<AppliedImage>,
        commit_timeout: Duration,
        lease: Arc<SelfLease>,
    ) -> Self {
        Self {
            logs,
            writer,
            images,
            slots: Mutex::new(HashMap::new()),
            commit_timeout,
            lease,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slots, with every replicated pending record promoted.
    fn promoted(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Slot>> {
        let mut slots = self.lock();
        for (p, slot) in slots.iter_mut() {
            promote(&self.logs, *p, slot);
        }
        slots
    }

    /// The offsets partition of `group` (COORDINATOR_NOT_AVAILABLE before the topic exists).
    pub fn partition_of(&self, group: &str) -> Result<i32, GroupError> {
        let image = self.images.borrow().image.clone();
        offsets_partition_count(&image)
            .map(|n| partition_for(group, n))
            .ok_or(GroupError::CoordinatorNotAvailable)
    }

    /// Runs `f` on the loaded partition of `group`.
    fn with_loaded<R>(
        &self,
        group: &str,
        f: impl FnOnce(i32, i32, &mut OffsetsPartition, &mut Pending) -> Result<R, GroupError>,
    ) -> Result<R, GroupError> {
        let p = self.partition_of(group)?;
        // A broker that may have been fenced (paused, cut off) may also have been replaced as
        // this group's coordinator, and its offsets may be older than the new coordinator's:
        // it serves nothing until it has heard from the controller again (src/lease.rs).
        if !self.lease.is_valid() {
            return Err(GroupError::NotCoordinator(group.to_string()));
        }
        let mut slots = self.lock();
        let slot = slots.get_mut(&p);
        if let Some(slot) = slot {
            promote(&self.logs, p, slot);
        }
        match slots.get_mut(&p) {
            None => Err(GroupError::NotCoordinator(group.to_string())),
            Some(Slot::Loading { .. }) => Err(GroupError::CoordinatorLoadInProgress),
            Some(Slot::Loaded {
                epoch,
                offsets,
                pending_end,
                pending,
            }) => f(
                p,
                *epoch,
                offsets,
                &mut Pending {
                    end: pending_end,
                    records: pending,
                },
            ),
        }
    }

    /// Appends records to offsets partition `p` as its leader in `epoch`; returns the new
    /// log end.
    fn append(
        &self,
        p: i32,
        epoch: i32,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<i64, GroupError> {
        let batch = build_batch(records, now_ms());
        let out = self
            .writer
            .append(OFFSETS_TOPIC, p, epoch, &[batch])
            .map_err(|e| write_error(e, &format!("{OFFSETS_TOPIC}-{p} is not led here")))?;
        Ok(out.log_end)
    }

    /// Writes tombstones for `tps` of `group` (those that have offsets).
    fn delete(&self, group: &str, tps: Option<&[TopicPartition]>) -> Result<(), GroupError> {
        self.with_loaded(group, |p, epoch, offsets, pending| {
            let gone: Vec<TopicPartition> = match tps {
                Some(tps) => tps
                    .iter()
                    .filter(|tp| offsets.get(group, tp).is_some())
                    .cloned()
                    .collect(),
                None => offsets
                    .group_offsets(group)
                    .into_iter()
                    .map(|(tp, _)| tp)
                    .collect(),
            };
            if gone.is_empty() {
                return Ok(());
            }
            let records = gone
                .iter()
                .map(|tp| encode_record(group, tp, None))
                .collect::<Result<Vec<_>, _>>()?;
            let end = self.append(p, epoch, &records)?;
            pending.push(
                end,
                gone.into_iter()
                    .map(|tp| OffsetRecord {
                        group: group.to_string(),
                        tp,
                        offset: None,
                    })
                    .collect(),
            );
            Ok(())
        })
    }

    /// Leadership of partition `p` began in `epoch`: start loading.
    fn start_loading(&self, p: i32, epoch: i32) {
        self.lock().insert(p, Slot::Loading { epoch });
    }

    /// Loading of `p` in `epoch` finished; returns the groups found, or `None` when the
    /// partition changed hands meanwhile.
    fn finish_loading(&self, p: i32, epoch: i32, offsets: OffsetsPartition) -> Option<Vec<String>> {
        let mut slots = self.lock();
        match slots.get(&p) {
            Some(Slot::Loading { epoch: e }) if *e == epoch => {
                let groups = offsets.groups();
                let end = self
                    .logs
                    .partition(OFFSETS_TOPIC, p)
                    .map_or(0, |l| l.offsets().log_end);
                slots.insert(
                    p,
                    Slot::Loaded {
                        epoch,
                        offsets,
                        pending_end: end,
                        pending: VecDeque::new(),
                    },
                );
                Some(groups)
            }
            _ => None,
        }
    }

    fn unload(&self, p: i32) {
        self.lock().remove(&p);
    }

    fn is_held(&self, p: i32) -> bool {
        self.lock().contains_key(&p)
    }
}

impl OffsetStore for ReplicatedOffsetStore {
    fn put(
        &self,
        group: &str,
        offsets: &[(TopicPartition, CommittedOffset)],
    ) -> Result<(), GroupError> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.with_loaded(group, |p, epoch, _, pending| {
            let records = offsets
                .iter()
                .map(|(tp, o)| encode_record(group, tp, Some(o)))
                .collect::<Result<Vec<_>, _>>()?;
            let end = self.append(p, epoch, &records)?;
            pending.push(
                end,
                offsets
                    .iter()
                    .map(|(tp, o)| OffsetRecord {
                        group: group.to_string(),
                        tp: tp.clone(),
                        offset: Some(o.clone()),
                    })
                    .collect(),
            );
            Ok(())
        })
    }

    fn sync(&self, group: &str) -> SyncFuture {
        let deadline = tokio::time::Instant::now() + self.commit_timeout;
        let pending = self
            .with_loaded(group, |p, epoch, _, pending| Ok((p, epoch, *pending.end)))
            .and_then(|(p, epoch, end)| {
                self.writer
                    .pending(OFFSETS_TOPIC, p, epoch, end)
                    .map_err(|e| write_error(e, group))
            });
        let writer = self.writer.clone();
        let group = group.to_string();
        Box::pin(async move {
            let pending = pending?;
            // Durable first (group commit by default), then committed by the ISR in this
            // broker's leadership epoch (a high watermark reached in another epoch says
            // nothing about our records).
            writer
                .make_durable()
                .await
                .map_err(|e| write_error(e, &group))?;
            writer
                .wait_committed(&pending, deadline)
                .await
                .map_err(|e| write_error(e, &group))
        })
    }

    fn ready(&self, group: &str) -> Result<(), GroupError> {
        self.with_loaded(group, |_, _, _, _| Ok(()))
    }

    fn get(&self, group: &str, tp: &TopicPartition) -> Result<Option<CommittedOffset>, GroupError> {
        self.with_loaded(group, |_, _, offsets, _| Ok(offsets.get(group, tp)))
    }

    fn group_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<(TopicPartition, CommittedOffset)>, GroupError> {
        self.with_loaded(group, |_, _, offsets, _| Ok(offsets.group_offsets(group)))
    }

    fn remove(&self, group: &str, tps: &[TopicPartition]) -> Result<(), GroupError> {
        self.delete(group, Some(tps))
    }

    fn remove_group(&self, group: &str) -> Result<(), GroupError> {
        self.delete(group, None)
    }

    fn remove_topic(&self, topic: &str) -> Result<(), GroupError> {
        let entries: Vec<(String, TopicPartition)> = self
            .promoted()
            .values()
            .flat_map(|s| match s {
                Slot::Loaded { offsets, .. } => offsets.of_topic(topic),
                Slot::Loading { .. } => Vec::new(),
            })
            .collect();
        let mut by_group: HashMap<String, Vec<TopicPartition>> = HashMap::new();
        for (g, tp) in entries {
            by_group.entry(g).or_default().push(tp);
        }
        for (g, tps) in by_group {
            self.delete(&g, Some(&tps))?;
        }
        Ok(())
    }

    fn groups(&self) -> Result<Vec<String>, GroupError> {
        let mut out: Vec<String> = self
            .promoted()
            .values()
            .flat_map(|s| match s {
                Slot::Loaded { offsets, .. } => offsets.groups(),
                Slot::Loading { .. } => Vec::new(),
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// Loads and drops offsets partitions as this broker gains and loses their leadership, and
/// tells the group coordinator (see the module documentation).
pub struct OffsetsLoader {
    pub store: Weak<ReplicatedOffsetStore>,
    pub groups: Weak<GroupCoordinator>,
}

impl RoleListener for OffsetsLoader {
    fn roles_changed(&self, gained: &[(String, i32, i32)], lost: &[(String, i32)]) {
        let (Some(store), Some(groups)) = (self.store.upgrade(), self.groups.upgrade()) else {
            return;
        };
        let lost: Vec<i32> = lost
            .iter()
            .filter(|(t, _)| t == OFFSETS_TOPIC)
            .map(|(_, p)| *p)
            .collect();
        if !lost.is_empty() {
            for p in &lost {
                store.unload(*p);
            }
            groups.groups_unloaded(|g| {
                store
                    .partition_of(g)
                    .map_or(true, |p| lost.contains(&p) && !store.is_held(p))
            });
            tracing::info!(partitions = ?lost, "dropped offsets partitions (no longer leader)");
        }
        for (topic, p, epoch) in gained {
            if topic != OFFSETS_TOPIC {
                continue;
            }
            let (p, epoch) = (*p, *epoch);
            store.start_loading(p, epoch);
            let Some(log) = store.logs.partition(OFFSETS_TOPIC, p) else {
                continue;
            };
            let store = store.clone();
            let groups = groups.clone();
            let task = move || {
                let started = std::time::Instant::now();
                match load_partition(&log) {
                    Ok(offsets) => {
                        let entries: usize = offsets
                            .groups()
                            .iter()
                            .map(|g| offsets.group_offsets(g).len())
                            .sum();
                        if let Some(ids) = store.finish_loading(p, epoch, offsets) {
                            tracing::info!(
                                partition = p,
                                epoch,
                                groups = ids.len(),
                                offsets = entries,
                                ms = started.elapsed().as_millis() as u64,
                                "loaded offsets partition"
                            );
                            groups.groups_loaded(ids);
                        }
                    }
                    Err(e) => {
                        tracing::error!(partition = p, epoch, error = %e, "cannot load offsets partition");
                    }
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn_blocking(task);
                }
                Err(_) => task(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_hash_is_javas_string_hash_code() {
        // Values of java.lang.String#hashCode, so every broker (and Kafka) agrees.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("console-consumer-12345"), 158_455_506);
        assert_eq!(java_string_hash("é"), 233);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE; Kafka's Utils.abs makes it 0.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 10), 0);
        assert_eq!(partition_for("hello", 10), 2);
    }

    #[test]
    fn written_batches_load_back() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = LogStore::with_db(db, u64::MAX);
        let log = store.open_partition(OFFSETS_TOPIC, 0).unwrap();
        let off = |o: i64| CommittedOffset {
            offset: o,
            leader_epoch: 1,
            metadata: "m".into(),
            commit_timestamp: 5,
        };
        let t0 = TopicPartition::new("t", 0);
        let t1 = TopicPartition::new("t", 1);
        let b1 = build_batch(
            &[
                encode_record("g", &t0, Some(&off(3))).unwrap(),
                encode_record("g", &t1, Some(&off(4))).unwrap(),
                encode_record("h", &t0, Some(&off(1))).unwrap(),
            ],
            1,
        );
        let b2 = build_batch(
            &[
                encode_record("g", &t0, Some(&off(9))).unwrap(),
                encode_record("h", &t0, None).unwrap(),
            ],
            2,
        );
        log.append(&[b1], 0).unwrap();
        log.append(&[b2], 1).unwrap();
        assert_eq!(log.offsets().log_end, 5);
        let loaded = load_partition(&log).unwrap();
        assert_eq!(loaded.groups(), vec!["g".to_string()]);
        assert_eq!(loaded.get("g", &t0), Some(off(9)));
        assert_eq!(loaded.get("g", &t1), Some(off(4)));
        assert_eq!(loaded.get("h", &t0), None);
        // A compacted partition (the first batch gone, the second ending with a removed
        // tombstone) still loads every latest offset.
        let b3 = build_batch(
            &[encode_record("g", &TopicPartition::new("u", 0), Some(&off(7))).unwrap()],
            3,
        );
        log.append(&[b3], 2).unwrap();
        let b4 = build_batch(&[encode_record("g", &t1, Some(&off(8))).unwrap()], 4);
        log.append(&[b4], 2).unwrap();
        let s = log.compact(i64::MAX / 2, 0).unwrap();
        assert!(s.removed_records > 0);
        let loaded = load_partition(&log).unwrap();
        assert_eq!(loaded.get("g", &t0), Some(off(9)));
        assert_eq!(loaded.get("g", &t1), Some(off(8)));
        assert_eq!(loaded.get("g", &TopicPartition::new("u", 0)), Some(off(7)));
    }

    #[test]
    fn commits_become_visible_only_below_the_high_watermark() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = LogStore::with_db(db, u64::MAX);
        let log = store.open_partition(OFFSETS_TOPIC, 0).unwrap();
        let t0 = TopicPartition::new("t", 0);
        let off = |o: i64| CommittedOffset {
            offset: o,
            leader_epoch: 1,
            metadata: String::new(),
            commit_timestamp: 5,
        };
        let rec = |o: i64| OffsetRecord {
            group: "g".into(),
            tp: t0.clone(),
            offset: Some(off(o)),
        };
        let batch = |o: i64| build_batch(&[encode_record("g", &t0, Some(&off(o))).unwrap()], 1);
        let end1 = log
            .append_as_leader(&[batch(10)], 1, false)
            .unwrap()
            .log_end;
        let end2 = log
            .append_as_leader(&[batch(20)], 1, false)
            .unwrap()
            .log_end;
        let mut slot = Slot::Loaded {
            epoch: 1,
            offsets: OffsetsPartition::default(),
            pending_end: end2,
            pending: VecDeque::from([(end1, vec![rec(10)]), (end2, vec![rec(20)])]),
        };
        let committed = |slot: &Slot| match slot {
            Slot::Loaded { offsets, .. } => offsets.get("g", &t0).map(|o| o.offset),
            Slot::Loading { .. } => unreachable!(),
        };
        // Nothing replicated yet: OffsetFetch must not see either commit.
        log.set_high_watermark(0).unwrap();
        promote(&store, 0, &mut slot);
        assert_eq!(committed(&slot), None);
        // The first commit reached the ISR, the second did not.
        log.set_high_watermark(end1).unwrap();
        promote(&store, 0, &mut slot);
        assert_eq!(committed(&slot), Some(10));
        log.set_high_watermark(end2).unwrap();
        promote(&store, 0, &mut slot);
        assert_eq!(committed(&slot), Some(20));
    }
}
