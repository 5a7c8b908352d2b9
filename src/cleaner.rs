//! The log cleaner: every `log.retention.check.interval.ms` it applies each hosted
//! partition's `cleanup.policy` — retention (`delete`) on the partitions this broker leads,
//! compaction (`compact`) on every replica — and logs sled's on-disk size before and after
//! a pass that removed data.
//!
//! Retention is the leader's decision: it moves the log start offset, and followers delete
//! below the log start their leader reports in every replica fetch (see
//! `replication::follower`), so all replicas agree on it. Compaction runs on each replica
//! independently, over the records below its high watermark, as Kafka's log cleaner does:
//! it is a pure function of the committed log, so replicas converge on the same records.
//!
//! A partition whose retention or compaction fails is marked uncleanable ([`CleanerState`]),
//! logged once with the reason, and its compaction skipped until the broker restarts; the
//! pass goes on with the other partitions.
//!
//! May depend on: `broker` (metadata image, logs, roles), `topics` (effective topic configs),
//! `log`. Not on the network.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::Broker;
use crate::log::retention::RetentionPolicy;
use crate::log::{LogError, PartitionLog};
use crate::metadata::TopicMeta;
use crate::topics::Topics;

/// The cleanup settings of one topic, resolved against the broker defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupConfig {
    pub delete: bool,
    pub compact: bool,
    pub retention: RetentionPolicy,
    /// How long tombstones survive compaction (`delete.retention.ms`).
    pub delete_retention_ms: i64,
    /// Records younger than this stay uncompacted (`min.compaction.lag.ms`).
    pub min_compaction_lag_ms: i64,
}

impl CleanupConfig {
    /// The effective cleanup settings of `topic` on this broker.
    pub fn of(topics: &Topics, topic: &TopicMeta) -> Self {
        let get = |k: &str| topics.config_value(topic, k).unwrap_or_default();
        let num = |k: &str, default: i64| get(k).trim().parse::<i64>().unwrap_or(default);
        let policy = get("cleanup.policy");
        let has = |p: &str| policy.split(',').any(|x| x.trim() == p);
        Self {
            delete: has("delete"),
            compact: has("compact"),
            retention: RetentionPolicy {
                retention_ms: num("retention.ms", -1),
                retention_bytes: num("retention.bytes", -1),
            },
            delete_retention_ms: num("delete.retention.ms", 86_400_000),
            min_compaction_lag_ms: num("min.compaction.lag.ms", 0),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Partitions whose log start moved (retention).
    pub retained: usize,
    /// Partitions that compaction rewrote.
    pub compacted: usize,
    /// Followed partitions whose log start moved since the last pass (the leader's retention
    /// or DeleteRecords, applied by replica fetches).
    pub followed: usize,
    /// Batches were deleted from some log since the last pass (by this pass, DeleteRecords or
    /// replica fetches): sled should give the space back.
    pub removed_data: bool,
}

/// A partition: topic and index.
pub type PartitionKey = (String, i32);

/// The log start offset of every hosted partition at the previous pass.
pub type SeenStarts = HashMap<PartitionKey, i64>;

/// What the cleaner remembers between passes (in memory: a restart starts afresh).
#[derive(Debug, Default)]
pub struct CleanerState {
    seen: SeenStarts,
    /// Partitions whose cleaning failed, with the reason. Compaction skips them from then on
    /// (as Kafka's cleaner marks a partition uncleanable), so one undecodable batch costs
    /// one error line instead of stopping the pass or repeating every pass.
    uncleanable: HashMap<PartitionKey, String>,
}

impl CleanerState {
    /// The partitions marked uncleanable, with the reason.
    pub fn uncleanable(&self) -> &HashMap<PartitionKey, String> {
        &self.uncleanable
    }

    /// Marks a partition uncleanable; logs the reason the first time only.
    fn mark(&mut self, key: &PartitionKey, step: &str, e: &LogError) {
        if self.uncleanable.contains_key(key) {
            return;
        }
        let reason = format!("{step} failed: {e}");
        tracing::error!(topic = %key.0, partition = key.1, reason = %reason, "marking partition uncleanable; the cleaner skips its compaction until the broker restarts");
        self.uncleanable.insert(key.clone(), reason);
    }
}

/// Milliseconds since the Unix epoch (record timestamps are in this clock): [`crate::clock::unix_ms`].
pub use crate::clock::unix_ms as now_ms;

/// One hosted partition as a pass sees it.
pub struct Target {
    pub key: PartitionKey,
    pub log: Arc<PartitionLog>,
    pub cfg: CleanupConfig,
    /// This broker leads the partition (retention is the leader's decision).
    pub leads: bool,
}

/// One cleaner pass over every partition this broker hosts.
pub fn pass(broker: &Broker, now: i64, state: &mut CleanerState) -> PassStats {
    let image = broker.metadata.image();
    let me = broker.config.node_id;
    let mut targets = Vec::new();
    for topic in image.topics.values() {
        let cfg = CleanupConfig::of(&broker.topics, topic);
        for p in &topic.partitions {
            let Some(log) = broker.logs.partition(&topic.name, p.index) else {
                continue;
            };
            let leads = p.leader == me
                && broker
                    .replication
                    .is_leading(&topic.name, p.index, p.leader_epoch);
            targets.push(Target {
                key: (topic.name.clone(), p.index),
                log,
                cfg,
                leads,
            });
        }
    }
    clean(targets, now, state)
}

/// Applies retention and compaction to each target. A partition that fails is marked
/// uncleanable and the pass goes on with the others.
pub fn clean(targets: Vec<Target>, now: i64, state: &mut CleanerState) -> PassStats {
    let mut stats = PassStats::default();
    // Only partitions still hosted are remembered.
    let previous = std::mem::take(&mut state.seen);
    let hosted: std::collections::HashSet<&PartitionKey> = targets.iter().map(|t| &t.key).collect();
    state.uncleanable.retain(|k, _| hosted.contains(k));
    for Target {
        key,
        log,
        cfg,
        leads,
    } in &targets
    {
        let (topic, partition) = (&key.0, key.1);
        if cfg.delete && *leads {
            match log.apply_retention(now, cfg.retention) {
                Ok(Some(start)) => {
                    tracing::info!(topic = %topic, partition, log_start = start, "retention moved the log start offset");
                    stats.retained += 1;
                }
                Ok(None) => {}
                Err(e) => state.mark(key, "retention", &e),
            }
        }
        let start = log.offsets().log_start;
        if !leads && previous.get(key).is_some_and(|s| *s < start) {
            tracing::info!(topic = %topic, partition, log_start = start, "follower deleted below the leader's log start offset");
            stats.followed += 1;
        }
        state.seen.insert(key.clone(), start);
        if cfg.compact && !state.uncleanable.contains_key(key) {
            match log.compact_with_lag(now, cfg.delete_retention_ms, cfg.min_compaction_lag_ms) {
                Ok(c) if c.rewritten_batches > 0 || c.removed_batches > 0 => {
                    tracing::info!(topic = %topic, partition, records_removed = c.removed_records, batches_rewritten = c.rewritten_batches, batches_removed = c.removed_batches, "compacted");
                    stats.compacted += 1;
                }
                Ok(_) => {}
                Err(e) => state.mark(key, "compaction", &e),
            }
        }
        stats.removed_data |= log.take_removed();
    }
    stats
}

/// Runs a pass every `log.retention.check.interval.ms` until the broker shuts down.
pub async fn run(broker: Arc<Broker>) {
    let period = Duration::from_millis(broker.config.retention_check_interval_ms);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // Passes left that still ask sled to release space: the blobs of deleted data are
    // sometimes only freed a segment later (see `LogStore::release_space`); every release
    // that shrank the files earns another one.
    let mut release_passes = 0u32;
    let state = Arc::new(std::sync::Mutex::new(CleanerState::default()));
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let b = broker.clone();
        let state = state.clone();
        let result = tokio::task::spawn_blocking(move || {
            let before = b.logs.db().size_on_disk().ok();
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            let stats = pass(&b, now_ms(), &mut state);
            let removed = stats.removed_data;
            let mut shrank = false;
            if removed || release_passes > 0 {
                b.logs.flush()?;
                let pre = b.logs.db().size_on_disk().unwrap_or(0);
                b.logs.release_space()?;
                shrank = b.logs.db().size_on_disk().unwrap_or(u64::MAX) < pre;
            }
            if removed {
                let after = b.logs.db().size_on_disk().ok();
                tracing::info!(
                    retained = stats.retained,
                    compacted = stats.compacted,
                    followed = stats.followed,
                    sled_bytes_before = before.unwrap_or(0),
                    sled_bytes_after = after.unwrap_or(0),
                    "log cleaner pass"
                );
            }
            Ok::<_, LogError>((removed, shrank))
        })
        .await;
        // Keep asking while it helps: sled frees blobs a segment or two later.
        release_passes = match &result {
            Ok(Ok((true, _))) => 3,
            Ok(Ok((false, true))) => release_passes.max(2),
            _ => release_passes.saturating_sub(1),
        };
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "log cleaner pass failed"),
            Err(e) => tracing::error!(error = %e, "log cleaner task panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;
    use crate::log::batch::HEADER_LEN;
    use bytes::{Bytes, BytesMut};

    fn compact_cfg() -> CleanupConfig {
        CleanupConfig {
            delete: false,
            compact: true,
            retention: RetentionPolicy {
                retention_ms: -1,
                retention_bytes: -1,
            },
            delete_retention_ms: 0,
            min_compaction_lag_ms: 0,
        }
    }

    fn target(db: &sled::Db, name: &str) -> Target {
        let log = PartitionLog::open(db.open_tree(name).unwrap()).unwrap();
        Target {
            key: (name.to_string(), 0),
            log: Arc::new(log),
            cfg: compact_cfg(),
            leads: true,
        }
    }

    /// A batch with a valid CRC around `records` (one record declared), optionally zstd.
    fn with_records(records: &[u8], zstd: bool) -> Bytes {
        let mut b = BytesMut::from(&make_batch(1, -1, -1)[..HEADER_LEN]);
        b.extend_from_slice(records);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        if zstd {
            b[22] |= 4;
        }
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn a_partition_that_fails_compaction_is_marked_once_and_the_others_are_cleaned() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        // Stored below the produce checks (as data from before them would be): garbage
        // records, and a zstd bomb inflating to 1 GiB from 32 KiB.
        let garbage = target(&db, "a-garbage");
        garbage
            .log
            .append(&[with_records(&[0x7f; 30], false)], 0)
            .unwrap();
        let bomb = target(&db, "b-bomb");
        let frame = crate::log::decompress::tests::zstd_zeros_frame(1 << 30);
        bomb.log.append(&[with_records(&frame, true)], 0).unwrap();
        // A healthy compacted partition, sorted after the broken ones: keys k0..k2 twice.
        let good = target(&db, "c-good");
        good.log.append(&[make_batch(3, -1, -1)], 0).unwrap();
        good.log.append(&[make_batch(3, -1, -1)], 0).unwrap();
        let good_log = good.log.clone();

        let mut state = CleanerState::default();
        let targets = vec![garbage, bomb, good];
        let keys: Vec<PartitionKey> = targets.iter().map(|t| t.key.clone()).collect();
        let stats = clean(targets, 10_000, &mut state);
        assert_eq!(stats.compacted, 1, "the healthy partition was compacted");
        assert_eq!(good_log.batch_spans().unwrap().len(), 1);
        let marked = state.uncleanable();
        assert_eq!(marked.len(), 2, "{marked:?}");
        assert!(marked[&keys[0]].contains("record 0"), "{marked:?}");
        assert!(marked[&keys[1]].contains("compression bomb"), "{marked:?}");

        // Later passes skip them (the reason stays the first one) and keep going.
        let db2 = db.clone();
        let again: Vec<Target> = ["a-garbage", "b-bomb", "c-good"]
            .iter()
            .map(|n| target(&db2, n))
            .collect();
        let stats = clean(again, 20_000, &mut state);
        assert_eq!(stats.compacted, 0);
        assert_eq!(state.uncleanable().len(), 2);
        // A partition no longer hosted is forgotten.
        clean(Vec::new(), 30_000, &mut state);
        assert!(state.uncleanable().is_empty());
    }
}
