//! The broker's sled database and the partition logs open in it.
//!
//! One sled `Db` per broker; each partition is its own tree named `log:<topic>:<partition>`
//! (topic names cannot contain `:`). Appends wake long-polling fetches through the partition's
//! own watches (see [`super::wake`]); [`LogStore::appended`] is only a broker-wide nudge for
//! changes of roles or metadata.
//!
//! Durability: [`LogStore::after_append`] is awaited before an append is answered (or, on a
//! follower, before its new log end is reported to the leader). By default it waits for a
//! group-commit flush ([`super::commit`]); with Kafka's `log.flush.interval.messages` set
//! explicitly it flushes only when that many messages accumulated.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use super::commit::GroupCommit;
use super::flush::FlushPolicy;
use super::sled_config::{self, SledSettings, SLED_DEFAULT_SEGMENT_BYTES};
use super::space::DiskSpace;
use super::{LogError, PartitionLog};

/// Identifies a partition.
pub type PartitionKey = (String, i32);

/// All partition logs of this broker.
pub struct LogStore {
    db: sled::Db,
    /// The sled segment size `db` runs with.
    segment_bytes: usize,
    partitions: RwLock<HashMap<PartitionKey, Arc<PartitionLog>>>,
    /// Serialises opening and deleting partition logs (not reading the map): without it an
    /// open could take up a sled tree a concurrent delete is dropping, and keep serving a
    /// log whose tree is gone.
    lifecycle: std::sync::Mutex<()>,
    /// Notified when roles or metadata change, so every long poll re-checks (appends wake
    /// only the partition's own watches).
    appended: Notify,
    /// `log.flush.interval.messages`: appends count against it, and the append path flushes
    /// (fsync) before answering once it is due. Used only when `flush_before_ack` is off.
    flush: Arc<FlushPolicy>,
    /// Every append is flushed before it is answered (the default; off when Kafka's
    /// `log.flush.interval.*` settings are given explicitly).
    flush_before_ack: bool,
    /// The flusher thread shared by all partitions of the database.
    commit: GroupCommit,
    /// Flushes `log.flush.interval.messages` caused (diagnostics and tests).
    interval_flushes: std::sync::atomic::AtomicU64,
    /// The free-space reserve every partition's appends check (`log.dir.min.free.bytes`).
    space: Arc<DiskSpace>,
    /// Serialises [`LogStore::release_space`] (the cleaner and deletions both call it).
    releasing: std::sync::Mutex<()>,
}

/// A scratch tree for [`LogStore::release_space`].
const PAD_TREE: &str = "sled_padding";

/// Largest segment size for which [`LogStore::release_space`] writes padding.
const PAD_MAX_SEGMENT: usize = 1 << 20;

/// The padding [`LogStore::release_space`] writes for a segment size: values of three quarters
/// of sled's inline limit (never a blob file themselves), enough of them to fill two segments.
fn padding(segment_bytes: usize) -> (usize, usize) {
    let pad_len = sled_config::inline_limit(segment_bytes) / 4 * 3;
    (pad_len, 2 * segment_bytes / pad_len + 1)
}

fn tree_name(topic: &str, partition: i32) -> String {
    format!("log:{topic}:{partition}")
}

impl LogStore {
    /// Opens the database at `dir` (see [`sled_config::open`]: a new directory gets
    /// `settings.segment_bytes`, an existing one keeps the segment size it recorded).
    pub fn open(
        dir: &Path,
        settings: &SledSettings,
        flush_interval_messages: u64,
    ) -> Result<Self, LogError> {
        let opened = sled_config::open(dir, settings)?;
        if opened.kept_recorded_size {
            tracing::info!(
                dir = %dir.display(),
                recorded = opened.segment_bytes,
                configured = settings.segment_bytes,
                "the data directory keeps the sled segment size it was created with \
                 (sled.segment.bytes applies to new data directories)"
            );
        }
        Ok(Self::with_db(opened.db, flush_interval_messages)
            .with_segment_bytes(opened.segment_bytes))
    }

    /// Wraps an already open database (tests use a temporary one). `flush_interval_messages`
    /// is Kafka's `log.flush.interval.messages` (`u64::MAX`: never). The segment size is
    /// taken to be sled's default unless [`LogStore::with_segment_bytes`] says otherwise.
    pub fn with_db(db: sled::Db, flush_interval_messages: u64) -> Self {
        Self {
            commit: GroupCommit::start(db.clone()),
            db,
            segment_bytes: SLED_DEFAULT_SEGMENT_BYTES,
            partitions: RwLock::new(HashMap::new()),
            lifecycle: std::sync::Mutex::new(()),
            appended: Notify::new(),
            flush: Arc::new(FlushPolicy::every(flush_interval_messages)),
            flush_before_ack: false,
            interval_flushes: Default::default(),
            space: Arc::new(DiskSpace::unlimited()),
            releasing: std::sync::Mutex::new(()),
        }
    }

    /// Flush every append before it is answered (group commit), instead of only when
    /// `log.flush.interval.messages` says so.
    pub fn with_flush_before_ack(mut self, on: bool) -> Self {
        self.flush_before_ack = on;
        self
    }

    /// The segment size `db` was opened with (sled does not report it): sizes the padding of
    /// [`LogStore::release_space`].
    pub fn with_segment_bytes(mut self, segment_bytes: usize) -> Self {
        self.segment_bytes = segment_bytes;
        self
    }

    /// The segment size of the database.
    pub fn segment_bytes(&self) -> usize {
        self.segment_bytes
    }

    /// Keeps `min_free` bytes free on the file system of `dir`: appends to partitions opened
    /// from now on are refused below it (see [`DiskSpace`]). Call before opening partitions.
    pub fn with_space_reserve(mut self, dir: &Path, min_free: u64) -> Self {
        self.space = Arc::new(DiskSpace::new(dir, min_free));
        self
    }

    /// The underlying database, shared with the metadata store.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Opens or creates the log of a partition.
    pub fn open_partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<PartitionLog>, LogError> {
        let key = (topic.to_string(), partition);
        if let Some(p) = self.read_map().get(&key) {
            return Ok(p.clone());
        }
        let _lifecycle = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = self.read_map().get(&key) {
            return Ok(p.clone());
        }
        let log = Arc::new(PartitionLog::open_with(
            self.db.open_tree(tree_name(topic, partition))?,
            self.flush.clone(),
            self.space.clone(),
        )?);
        let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
        Ok(map.entry(key).or_insert(log).clone())
    }

    /// Opens or creates the log of a partition of the topic with id `id` (see
    /// [`PartitionLog::check_topic_id`]): a log recorded for another id is refused with
    /// [`LogError::InconsistentTopicId`] and left as it is.
    pub fn open_partition_with_id(
        &self,
        topic: &str,
        partition: i32,
        id: u128,
    ) -> Result<Arc<PartitionLog>, LogError> {
        let log = self.open_partition(topic, partition)?;
        log.check_topic_id(id)?;
        Ok(log)
    }

    /// Deletes the log of a partition if it was recorded for another topic id than `id` (the
    /// data of a topic deleted and re-created under the same name while this broker did not
    /// see it), returning that id. A log without a recorded id adopts `id`.
    pub fn delete_if_other_topic(
        &self,
        topic: &str,
        partition: i32,
        id: u128,
    ) -> Result<Option<u128>, LogError> {
        let log = self.open_partition(topic, partition)?;
        match log.check_topic_id(id) {
            Err(LogError::InconsistentTopicId { recorded, .. }) => {
                drop(log);
                self.delete_partition(topic, partition)?;
                Ok(Some(recorded))
            }
            other => other.map(|()| None),
        }
    }

    /// The log of a partition, if it is open.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        self.read_map()
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// [`LogStore::partition`] by an owned key (no allocation: the hot paths of replication
    /// hold their keys).
    pub fn partition_at(&self, key: &PartitionKey) -> Option<Arc<PartitionLog>> {
        self.read_map().get(key).cloned()
    }

    /// The partitions with an open log.
    pub fn open_partitions(&self) -> Vec<PartitionKey> {
        self.read_map().keys().cloned().collect()
    }

    /// Removes a partition's log and its data.
    pub fn delete_partition(&self, topic: &str, partition: i32) -> Result<(), LogError> {
        let _lifecycle = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        self.partitions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(topic.to_string(), partition));
        self.db.drop_tree(tree_name(topic, partition))?;
        Ok(())
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<PartitionKey, Arc<PartitionLog>>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Notified when roles or metadata change (long polls re-check their partitions).
    pub fn appended(&self) -> &Notify {
        &self.appended
    }

    /// Called after appends, before they are answered or reported: with `flush_before_ack`
    /// waits for a group-commit flush that covers them; otherwise flushes only when
    /// `log.flush.interval.messages` says so (see [`super::flush`]).
    pub async fn after_append(&self) -> Result<(), LogError> {
        if self.flush_before_ack {
            self.commit.flush().await?;
        } else if self.flush.take_due() {
            self.commit.flush().await?;
            self.interval_flushes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Flushes the group commit has performed (tests and diagnostics).
    pub fn group_flushes(&self) -> u64 {
        self.commit.flushes()
    }

    /// Writes the high-watermark checkpoint of every partition whose high watermark moved
    /// since its last one. Blocking (sled writes): run it off the async workers.
    pub fn checkpoint_high_watermarks(&self) -> usize {
        let logs: Vec<(PartitionKey, Arc<PartitionLog>)> = self
            .read_map()
            .iter()
            .map(|(k, l)| (k.clone(), l.clone()))
            .collect();
        let mut written = 0;
        for ((topic, partition), log) in logs {
            match log.checkpoint_high_watermark() {
                Ok(true) => written += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%topic, partition, error = %e, "cannot checkpoint the high watermark")
                }
            }
        }
        written
    }

    /// Checkpoints high watermarks every `interval` on a thread of its own (Kafka's `replica.high.watermark.checkpoint.interval.ms`).
    /// The thread ends when the store is dropped.
    pub fn spawn_checkpointer(self: &Arc<Self>, interval: std::time::Duration) {
        let store = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("raftka-hw-checkpoint".into())
            .spawn(move || {
                // Sleeps in short steps so shutdown is noticed promptly.
                let step = interval.min(std::time::Duration::from_millis(100));
                let mut next = std::time::Instant::now() + interval;
                loop {
                    std::thread::sleep(step);
                    if std::time::Instant::now() < next {
                        continue;
                    }
                    let Some(store) = store.upgrade() else { return };
                    store.checkpoint_high_watermarks();
                    next = std::time::Instant::now() + interval;
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the high-watermark checkpoint thread");
        }
    }

    /// Makes sled give back the disk space of data deleted since the last call.
    ///
    /// Small segments (sled's default 512 KiB, kept by data directories created with it):
    /// sled stores large tree nodes as blob files and deletes a replaced node's blob only when
    /// the log segment holding the replacement is sealed; with the data itself in blobs,
    /// sled's log grows by a few bytes per write, so the segment stays open and deleted data
    /// keeps its disk space (measured without this: 8 MB produced → 36 MB, retention to 1 MB
    /// → 40 MB, 8 MB more under retention → 86 MB). Writing two segments' worth of padding
    /// (and removing it) seals that segment and the next (one was not always enough): the
    /// blobs go now, and the padding's own space is reused by sled's segment cleaner.
    /// Measured: 8 MB produced, 36.5 MB on disk; retention down to 1 MB → 4.4 MB on disk
    /// (tests/python/test_retention.py prints the figures).
    ///
    /// Segments above `PAD_MAX_SEGMENT` (the 16 MiB default): no blob files are written
    /// (see `sled_config`), sled's own segment cleaner relocates what is live in a segment
    /// that fell below half live and reuses its room, and padding would only grow the file
    /// by two segments (measured: 22.9 MB → 70.3 MB with 16 MiB segments). So only a flush.
    pub fn release_space(&self) -> Result<(), LogError> {
        let _one_at_a_time = self.releasing.lock().unwrap_or_else(|p| p.into_inner());
        if self.segment_bytes <= PAD_MAX_SEGMENT {
            let (pad_len, rounds) = padding(self.segment_bytes);
            let tree = self.db.open_tree(PAD_TREE)?;
            let pad = vec![0u8; pad_len];
            for i in 0..rounds {
                tree.insert(b"pad", &pad[..pad_len - i])?;
                self.db.flush()?;
            }
            tree.remove(b"pad")?;
        }
        self.db.flush()?;
        self.space.space_freed();
        Ok(())
    }

    /// How many flushes `log.flush.interval.messages` caused so far.
    pub fn interval_flushes(&self) -> u64 {
        self.interval_flushes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs [`LogStore::release_space`] now on a blocking thread, without waiting for it:
    /// after DeleteTopics or DeleteRecords, so a full disk gets space back at once rather
    /// than at the next cleaner pass.
    pub fn release_space_soon(self: &Arc<Self>) {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.release_space() {
                tracing::warn!(error = %e, "cannot release disk space");
            }
        });
    }

    /// Checkpoints the high watermarks and flushes everything to disk (used on shutdown).
    pub fn flush(&self) -> Result<(), LogError> {
        self.checkpoint_high_watermarks();
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;
    use crate::log::sled_config::DEFAULT_SEGMENT_BYTES;
    use crate::protocol::batch_builder::BatchBuilder;
    use bytes::Bytes;

    /// One uncompressed batch of `n` records with `value_len`-byte values.
    fn batch_of(n: i32, value_len: usize) -> Bytes {
        let value = vec![b'x'; value_len];
        BatchBuilder::new()
            .producer(-1, 0, -1)
            .partition_leader_epoch(0)
            .timestamp(1_000)
            .values((0..n).map(|_| &value))
            .build()
            .unwrap()
    }

    fn temp_store() -> LogStore {
        let db = sled::Config::new().temporary(true).open().unwrap();
        LogStore::with_db(db, u64::MAX)
    }

    #[test]
    fn a_new_log_records_its_topic_id_and_keeps_it_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = LogStore::with_db(db.clone(), u64::MAX);
        let log = store.open_partition_with_id("t", 0, 7).unwrap();
        assert_eq!(log.topic_id(), Some(7));
        log.append(&[make_batch(2, -1, -1)], 0).unwrap();
        drop((log, store));
        // The id is in the tree: a fresh store (a restart) reads it back.
        let store = LogStore::with_db(db, u64::MAX);
        let log = store.open_partition("t", 0).unwrap();
        assert_eq!(log.topic_id(), Some(7));
        assert_eq!(log.offsets().log_end, 2);
        assert!(store.open_partition_with_id("t", 0, 7).is_ok());
    }

    /// Opens racing deletes of the same partition (a role sync with a newer image against
    /// the image follower deleting a moved-off replica): whatever log the store serves at the
    /// end lives in the database — what is appended to it is there when the tree is read
    /// afresh, not in a dropped tree.
    #[test]
    fn an_open_racing_a_delete_never_serves_a_dropped_tree() {
        let store = Arc::new(temp_store());
        for round in 0..500 {
            store.open_partition("t", 0).unwrap();
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let deleter = {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    store.delete_partition("t", 0).unwrap();
                })
            };
            barrier.wait();
            // Open until the open comes after the delete (then it creates the tree anew).
            let log = loop {
                let log = store.open_partition("t", 0).unwrap();
                if deleter.is_finished() {
                    break store.open_partition("t", 0).unwrap();
                }
                drop(log);
            };
            deleter.join().unwrap();
            let before = log.offsets().log_end;
            log.append(&[make_batch(1, -1, -1)], 0).unwrap();
            let fresh =
                PartitionLog::open(store.db().open_tree(tree_name("t", 0)).unwrap()).unwrap();
            assert_eq!(
                fresh.offsets().log_end,
                before + 1,
                "round {round}: the served log's append is not in the database"
            );
        }
    }

    #[test]
    fn a_log_without_a_recorded_id_adopts_the_images_id() {
        let store = temp_store();
        // A log written before ids were recorded: data, no `i` key.
        let log = store.open_partition("old", 0).unwrap();
        log.append(&[make_batch(3, -1, -1)], 0).unwrap();
        assert_eq!(log.topic_id(), None);
        assert_eq!(store.delete_if_other_topic("old", 0, 42).unwrap(), None);
        let log = store.partition("old", 0).unwrap();
        assert_eq!((log.topic_id(), log.offsets().log_end), (Some(42), 3));
        // From now on another id is a mismatch.
        assert!(matches!(
            store.open_partition_with_id("old", 0, 43),
            Err(LogError::InconsistentTopicId {
                recorded: 42,
                expected: 43
            })
        ));
    }

    #[test]
    fn a_log_of_another_topic_id_is_refused_and_deleted() {
        let store = temp_store();
        let log = store.open_partition_with_id("t", 1, 100).unwrap();
        log.append(&[make_batch(5, -1, -1)], 0).unwrap();
        // Opening for another id refuses and leaves the data alone.
        assert!(matches!(
            store.open_partition_with_id("t", 1, 200),
            Err(LogError::InconsistentTopicId { .. })
        ));
        assert_eq!(store.partition("t", 1).unwrap().offsets().log_end, 5);
        // The same id deletes nothing.
        assert_eq!(store.delete_if_other_topic("t", 1, 100).unwrap(), None);
        // Another id deletes the old topic's data; the new log is empty and has the new id.
        assert_eq!(store.delete_if_other_topic("t", 1, 200).unwrap(), Some(100));
        let log = store.open_partition_with_id("t", 1, 200).unwrap();
        assert_eq!(log.offsets().log_end, 0);
        assert_eq!(log.topic_id(), Some(200));
        assert!(log
            .read_for_follower(0, 1 << 20)
            .unwrap()
            .records
            .is_empty());
    }

    fn blob_files(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("blobs")).map_or(0, |d| d.count())
    }

    #[test]
    fn batches_up_to_message_max_bytes_never_become_sled_blob_files() {
        let dir = tempfile::tempdir().unwrap();
        let settings = SledSettings {
            cache_bytes: 8 << 20,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            flush_every_ms: 1000,
        };
        let store = LogStore::open(dir.path(), &settings, u64::MAX).unwrap();
        assert_eq!(store.segment_bytes(), DEFAULT_SEGMENT_BYTES);
        let log = store.open_partition("t", 0).unwrap();
        // librdkafka's largest batch (message.max.bytes, 1048588) and a typical one under load.
        let large = batch_of(1000, 1037);
        assert!(
            large.len() > 1_040_000 && large.len() <= 1_048_588,
            "{}",
            large.len()
        );
        let typical = batch_of(100, 1000);
        for _ in 0..30 {
            log.append(std::slice::from_ref(&large), 0).unwrap();
            log.append(&[typical.clone(), typical.clone()], 0).unwrap();
        }
        store.flush().unwrap();
        assert_eq!(blob_files(dir.path()), 0);
        // Every batch reads back whole, chunked or not.
        let mut offset = 0;
        let mut sizes = Vec::new();
        while offset < log.offsets().log_end {
            let r = log.read(offset, 1, true).unwrap();
            let h = crate::log::batch::BatchHeader::read(&r.records).unwrap();
            assert_eq!(h.base_offset, offset);
            sizes.push(r.records.len());
            crate::log::validate::stored_records(&r.records).unwrap();
            offset = h.last_offset() + 1;
        }
        assert_eq!(sizes.len(), 90);
        assert!(sizes
            .chunks(3)
            .all(|c| c == [large.len(), typical.len(), typical.len()]));
        // The check sees blob files: the same batches stored whole under one key each do
        // become blobs (a sled leaf of 17 large values is far above a quarter segment).
        let control = store.db().open_tree("control").unwrap();
        for i in 0u32..30 {
            control.insert(i.to_be_bytes(), large.as_ref()).unwrap();
        }
        store.flush().unwrap();
        assert!(blob_files(dir.path()) > 0);
    }

    #[test]
    fn release_space_pads_below_the_blob_limit_and_fills_two_segments() {
        const { assert!(PAD_MAX_SEGMENT < DEFAULT_SEGMENT_BYTES) };
        for seg in [SLED_DEFAULT_SEGMENT_BYTES, PAD_MAX_SEGMENT] {
            let (pad, rounds) = padding(seg);
            assert!(pad + 64 < sled_config::inline_limit(seg), "{seg}");
            assert!(pad * rounds - rounds * rounds >= 2 * seg, "{seg}");
        }
    }

    #[tokio::test]
    async fn appends_are_flushed_once_n_messages_accumulate_in_a_partition() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = LogStore::with_db(db, 5);
        let a = store.open_partition("a", 0).unwrap();
        let b = store.open_partition("b", 0).unwrap();
        let mut flushes = Vec::new();
        for (log, n) in [(&a, 3), (&b, 3), (&a, 2), (&b, 2), (&b, 3), (&a, 9)] {
            log.append(&[make_batch(n, -1, -1)], 0).unwrap();
            store.after_append().await.unwrap();
            flushes.push(store.interval_flushes());
        }
        // a reaches 5 on its second append; that flush covered b's 3, so b needs 5 more.
        // One append of more than N flushes at once.
        assert_eq!(flushes, vec![0, 0, 1, 1, 2, 3]);
        let never = LogStore::with_db(
            sled::Config::new().temporary(true).open().unwrap(),
            i64::MAX as u64,
        );
        let c = never.open_partition("c", 0).unwrap();
        c.append(&[make_batch(100, -1, -1)], 0).unwrap();
        never.after_append().await.unwrap();
        assert_eq!(never.interval_flushes(), 0);
    }

    #[tokio::test]
    async fn by_default_every_append_is_flushed_before_it_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = LogStore::with_db(db, i64::MAX as u64).with_flush_before_ack(true);
        let a = store.open_partition("a", 0).unwrap();
        for i in 1..=3 {
            a.append(&[make_batch(1, -1, -1)], 0).unwrap();
            store.after_append().await.unwrap();
            assert_eq!(store.group_flushes(), i);
        }
        // How concurrent callers share flushes is timing-dependent here (a flush of nothing is
        // instant); `commit::tests` proves the sharing deterministically.
    }
}
