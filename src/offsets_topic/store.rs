//! The replicated offset store: OffsetCommit appends to the group's `__consumer_offsets`
//! partition as its leader (through the same `PartitionWriter` as Produce) and waits for the
//! high watermark; reads come from an in-memory copy of each partition this broker leads,
//! where a commit shows only once replicated; [`load_partition`] replays a partition's log.
//!
//! May depend on: `group`, `log`, `writer`, `lease`, `raft` (the applied image), the codec's
//! record batches.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::placement::{offsets_partition_count, partition_for};
use super::{txn, OFFSETS_TOPIC};
use crate::clock::unix_ms;
use crate::group::group_records::{encode_group_record, GroupSnapshot};
use crate::group::records::encode_record;
use crate::group::{
    CommittedOffset, GroupError, OffsetRecord, OffsetStore, OffsetsPartition, SyncFuture,
    TopicPartition,
};
use crate::lease::SelfLease;
use crate::log::{LogError, LogStore, PartitionLog};
use crate::protocol::batch_builder::BatchBuilder;
use crate::raft::AppliedImage;
use crate::writer::{PartitionWriter, WriteError};

/// One offsets partition this broker leads.
pub(super) enum Slot {
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
pub(super) fn promote(logs: &LogStore, p: i32, slot: &mut Slot) {
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
pub(super) struct Pending<'a> {
    /// Log end after the last append.
    pub(super) end: &'a mut i64,
    pub(super) records: &'a mut VecDeque<(i64, Vec<OffsetRecord>)>,
}

impl Pending<'_> {
    pub(super) fn push(&mut self, end: i64, records: Vec<OffsetRecord>) {
        *self.end = end;
        self.records.push_back((end, records));
    }
}

/// Offsets in `__consumer_offsets` (see the module documentation).
pub struct ReplicatedOffsetStore {
    pub(super) logs: Arc<LogStore>,
    pub(super) writer: Arc<PartitionWriter>,
    pub(super) images: watch::Receiver<AppliedImage>,
    pub(super) slots: Mutex<HashMap<i32, Slot>>,
    pub(super) commit_timeout: Duration,
    /// This broker's self-lease: no group is served while it is expired.
    pub(super) lease: Arc<SelfLease>,
    /// This broker's node id: a slot serves only while the applied image names this broker
    /// the leader of its partition in the slot's epoch.
    pub(super) node_id: i32,
}

/// A write error as the group coordinator reports it; `what` names the group or partition.
pub(super) fn write_error(e: WriteError, what: &str) -> GroupError {
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

/// A record as (key, value; None: a tombstone), as the batch builders take it.
pub(super) type KeyValue = (Vec<u8>, Option<Vec<u8>>);

/// The `__consumer_offsets` records of `group`'s commits of `offsets`.
pub(super) fn encode_commits(
    group: &str,
    offsets: &[(TopicPartition, CommittedOffset)],
) -> Result<Vec<KeyValue>, GroupError> {
    offsets
        .iter()
        .map(|(tp, o)| encode_record(group, tp, Some(o)))
        .collect()
}

/// One v2 record batch (no producer id, uncompressed, partition leader epoch 0) holding
/// `records` as (key, value), built by the one batch builder.
pub fn build_batch(records: &[(Vec<u8>, Option<Vec<u8>>)], timestamp: i64) -> Bytes {
    records
        .iter()
        .fold(
            BatchBuilder::new()
                .partition_leader_epoch(0)
                .timestamp(timestamp),
            |b, (k, v)| b.record(Some(k), v.as_deref()),
        )
        .build()
        .expect("encoding an uncompressed batch cannot fail")
}

/// Replays an offsets partition's log from its start to its end.
pub fn load_partition(log: &PartitionLog) -> Result<OffsetsPartition, LogError> {
    let offsets = log.offsets();
    let mut part = OffsetsPartition::default();
    log.scan_batches(offsets.log_start, offsets.log_end, |b, pos| {
        let recs = crate::log::validate::stored_records(b)?;
        if txn::replay_batch(&mut part, b, &recs, pos, offsets.log_end)? {
            return Ok(());
        }
        for r in recs.iter() {
            let r = r?;
            if r.offset < pos || r.offset >= offsets.log_end {
                continue;
            }
            if let Some(k) = r.key {
                part.replay(k, r.value);
            }
        }
        Ok(())
    })?;
    part.txn.replayed_to = offsets.log_end;
    Ok(part)
}

impl ReplicatedOffsetStore {
    pub fn new(
        logs: Arc<LogStore>,
        writer: Arc<PartitionWriter>,
        images: watch::Receiver<AppliedImage>,
        commit_timeout: Duration,
        lease: Arc<SelfLease>,
        node_id: i32,
    ) -> Self {
        Self {
            logs,
            writer,
            images,
            slots: Mutex::new(HashMap::new()),
            commit_timeout,
            lease,
            node_id,
        }
    }

    /// Whether the applied metadata image still names this broker the leader of offsets
    /// partition `p` in leader epoch `epoch`. The replica manager drops a slot only when it
    /// gets to the image that moved the partition away; in between (a broker that resumed
    /// after a pause renews its lease as soon as that image is applied) the slot would
    /// answer from offsets the new coordinator may already have passed.
    fn still_leads(&self, p: i32, epoch: i32) -> bool {
        let applied = self.images.borrow();
        applied
            .image
            .topics
            .get(OFFSETS_TOPIC)
            .and_then(|t| t.partitions.iter().find(|m| m.index == p))
            .is_some_and(|m| m.leader == self.node_id && m.leader_epoch == epoch)
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slots, with every replicated pending record promoted.
    pub(super) fn promoted(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Slot>> {
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
    pub(super) fn with_loaded<R>(
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
            Some(Slot::Loaded { epoch, .. }) if !self.still_leads(p, *epoch) => {
                Err(GroupError::NotCoordinator(group.to_string()))
            }
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
    pub(super) fn append(
        &self,
        p: i32,
        epoch: i32,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<i64, GroupError> {
        let batch = build_batch(records, unix_ms());
        let out = self
            .writer
            .append(OFFSETS_TOPIC, p, epoch, &[batch])
            .map_err(|e| write_error(e, &format!("{OFFSETS_TOPIC}-{p} is not led here")))?;
        Ok(out.log_end)
    }

    /// Writes tombstones for `tps` of `group` (those that have offsets).
    pub(super) fn delete(
        &self,
        group: &str,
        tps: Option<&[TopicPartition]>,
    ) -> Result<(), GroupError> {
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
    pub(super) fn start_loading(&self, p: i32, epoch: i32) {
        self.lock().insert(p, Slot::Loading { epoch });
    }

    /// Loading of `p` in `epoch` finished; returns the groups found, or `None` when the
    /// partition changed hands meanwhile.
    pub(super) fn finish_loading(
        &self,
        p: i32,
        epoch: i32,
        offsets: OffsetsPartition,
    ) -> Option<Vec<String>> {
        let mut slots = self.lock();
        match slots.get(&p) {
            Some(Slot::Loading { epoch: e }) if *e == epoch => {
                let groups = offsets.groups();
                let end = self
                    .logs
                    .partition(OFFSETS_TOPIC, p)
                    .map_or(0, |l| l.offsets().log_end);
                let mut slot = Slot::Loaded {
                    epoch,
                    offsets,
                    pending_end: end,
                    pending: VecDeque::new(),
                };
                if let Err(e) = txn::catch_up(&self.logs, p, &mut slot) {
                    tracing::error!(partition = p, error = %e, "cannot replay transaction markers written while loading");
                }
                slots.insert(p, slot);
                Some(groups)
            }
            _ => None,
        }
    }

    pub(super) fn unload(&self, p: i32) {
        self.lock().remove(&p);
    }

    pub(super) fn is_held(&self, p: i32) -> bool {
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
            let records = encode_commits(group, offsets)?;
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

    fn put_group(&self, group: &str, record: Option<&GroupSnapshot>) -> Result<(), GroupError> {
        self.with_loaded(group, |p, epoch, _, pending| {
            let end = self.append(p, epoch, &[encode_group_record(group, record)?])?;
            pending.push(end, Vec::new());
            Ok(())
        })
    }

    fn put_txn(
        &self,
        group: &str,
        producer_id: i64,
        producer_epoch: i16,
        offsets: &[(TopicPartition, CommittedOffset)],
    ) -> Result<(), GroupError> {
        self.put_txn_offsets(group, producer_id, producer_epoch, offsets)
    }

    fn pending_txn(&self, group: &str) -> Result<Vec<TopicPartition>, GroupError> {
        self.pending_txn_offsets(group)
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn group_records_load_back_and_compaction_keeps_each_groups_latest() {
        use crate::group::group_records::MemberSnapshot;
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = LogStore::with_db(db, u64::MAX);
        let log = store.open_partition(OFFSETS_TOPIC, 0).unwrap();
        let snap = |generation: i32| GroupSnapshot {
            protocol_type: "consumer".into(),
            generation,
            protocol: Some("range".into()),
            leader: Some("m".into()),
            state_timestamp: 1,
            members: vec![MemberSnapshot {
                member_id: "m".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "h".into(),
                rebalance_timeout_ms: 1000,
                session_timeout_ms: 1000,
                subscription: Bytes::from_static(b"s"),
                assignment: Bytes::from_static(b"a"),
            }],
        };
        let off = CommittedOffset {
            offset: 3,
            leader_epoch: 1,
            metadata: String::new(),
            commit_timestamp: 5,
        };
        let t0 = TopicPartition::new("t", 0);
        let batches = [
            vec![encode_group_record("g", Some(&snap(1))).unwrap()],
            vec![
                encode_record("g", &t0, Some(&off)).unwrap(),
                encode_group_record("h", Some(&snap(4))).unwrap(),
            ],
            vec![encode_group_record("g", Some(&snap(2))).unwrap()],
            vec![encode_group_record("h", None).unwrap()],
            vec![encode_group_record("k", Some(&snap(9))).unwrap()],
        ];
        for (i, b) in batches.iter().enumerate() {
            log.append(&[build_batch(b, i as i64)], 1).unwrap();
        }
        let expect = vec![("g".to_string(), snap(2)), ("k".to_string(), snap(9))];
        let mut loaded = load_partition(&log).unwrap();
        assert_eq!(loaded.take_group_metadata(), expect);
        assert_eq!(loaded.get("g", &t0), Some(off.clone()));
        let s = log.compact(i64::MAX / 2, 0).unwrap();
        assert!(s.removed_records >= 2, "{s:?}");
        let mut loaded = load_partition(&log).unwrap();
        assert_eq!(loaded.take_group_metadata(), expect);
        assert_eq!(loaded.get("g", &t0), Some(off));
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

    /// A broker that resumed after a pause renews its lease once it has applied the image
    /// that moved its offsets partition away, possibly before the replica manager drops the
    /// slot: from that image on, OffsetFetch must answer NOT_COORDINATOR, never the slot's
    /// (possibly stale) offsets.
    #[test]
    fn a_slot_serves_only_while_the_image_names_this_broker_its_leader() {
        use crate::metadata::ClusterImage;
        use crate::replication::manager::{ReplicaManager, ReplicationConfig};

        let db = sled::Config::new().temporary(true).open().unwrap();
        let logs = Arc::new(LogStore::with_db(db, u64::MAX));
        let image = ClusterImage::with_brokers([1, 2])
            .with_topic(OFFSETS_TOPIC, vec![vec![1, 2]])
            .unwrap();
        let epoch = image.topics[OFFSETS_TOPIC].partitions[0].leader_epoch;
        let (images, rx) = watch::channel(AppliedImage {
            applied: None,
            image: Arc::new(image.clone()),
        });
        let replication = ReplicaManager::new(1, ReplicationConfig::default(), logs.clone());
        let writer = Arc::new(PartitionWriter::new(logs.clone(), replication));
        let lease = Arc::new(SelfLease::new(60_000));
        lease.renew(lease.now_ms());
        let store = ReplicatedOffsetStore::new(logs, writer, rx, Duration::from_secs(5), lease, 1);
        let tp = TopicPartition::new("t", 0);
        let mut offsets = OffsetsPartition::default();
        offsets.apply(OffsetRecord {
            group: "g".into(),
            tp: tp.clone(),
            offset: Some(CommittedOffset {
                offset: 7,
                leader_epoch: 0,
                metadata: String::new(),
                commit_timestamp: 1,
            }),
        });
        store.lock().insert(
            0,
            Slot::Loaded {
                epoch,
                offsets,
                pending_end: 0,
                pending: VecDeque::new(),
            },
        );
        assert_eq!(store.get("g", &tp).unwrap().map(|o| o.offset), Some(7));
        // The controller moved the partition to broker 2 (a new leader epoch); the slot is
        // still here.
        let mut moved = image;
        let part = &mut moved.topics.get_mut(OFFSETS_TOPIC).unwrap().partitions[0];
        part.leader = 2;
        part.leader_epoch += 1;
        images.send_replace(AppliedImage {
            applied: None,
            image: Arc::new(moved),
        });
        assert!(store.is_held(0));
        assert!(matches!(
            store.get("g", &tp),
            Err(GroupError::NotCoordinator(_))
        ));
        assert!(matches!(
            store.group_offsets("g"),
            Err(GroupError::NotCoordinator(_))
        ));
    }
}
