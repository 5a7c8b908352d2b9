//! The log start offset: where retention (time and size) may move it, moving it (retention,
//! DeleteRecords, a follower following its leader), and resetting a follower that fell
//! behind the leader's log start.
//!
//! Deletion works on whole batches, as Kafka's works on whole segments: a batch goes once
//! every offset in it is below the new log start; the batch that holds the log start stays
//! (fetches below the log start are refused, reads from it skip the records below it).
//! Only batches wholly below the high watermark are ever eligible for retention, so nothing
//! uncommitted is deleted. Aborted-transaction entries whose marker falls below the new log
//! start go with the batches (a marker follows its transaction's data, so the data is gone
//! first).

use super::batch::BatchHeader;
use super::partition::{
    batch_key, epoch_key, key_offset, producer_key, Offsets, PartitionLog, HW_KEY, STATE_KEY,
};
use super::LogError;

/// A partition's retention settings (`retention.ms`, `retention.bytes`; -1 = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub retention_ms: i64,
    pub retention_bytes: i64,
}

/// One stored batch as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpan {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Bytes of the stored batch.
    pub size: u64,
    pub max_timestamp: i64,
}

/// The log start offset retention allows, or `None` when nothing may go.
///
/// `batches` are the log's batches in offset order (the whole log: its size counts against
/// `retention.bytes`). Kafka's rules, per batch instead of per segment: the oldest batches
/// whose newest timestamp is older than `now - retention.ms` go, and the oldest batches go
/// while the log stays at least `retention.bytes` without them; either rule stops at the
/// first batch it keeps, and never at or above the high watermark.
pub fn retention_start(
    batches: &[BatchSpan],
    high_watermark: i64,
    now_ms: i64,
    policy: RetentionPolicy,
) -> Option<i64> {
    let eligible = batches
        .iter()
        .take_while(|b| b.last_offset < high_watermark)
        .count();
    let by_time = if policy.retention_ms >= 0 {
        let cutoff = now_ms.saturating_sub(policy.retention_ms);
        batches[..eligible]
            .iter()
            .take_while(|b| b.max_timestamp < cutoff)
            .count()
    } else {
        0
    };
    let by_size = if policy.retention_bytes >= 0 {
        let mut left: u64 = batches.iter().map(|b| b.size).sum();
        let limit = policy.retention_bytes as u64;
        batches[..eligible]
            .iter()
            .take_while(|b| {
                let go = left.saturating_sub(b.size) >= limit && left > limit;
                if go {
                    left -= b.size;
                }
                go
            })
            .count()
    } else {
        0
    };
    let deleted = by_time.max(by_size);
    if deleted == 0 {
        return None;
    }
    Some(
        batches
            .get(deleted)
            .map(|b| b.base_offset)
            .unwrap_or(batches[deleted - 1].last_offset + 1),
    )
}

impl PartitionLog {
    /// The stored batches from the one holding the log start onwards.
    pub fn batch_spans(&self) -> Result<Vec<BatchSpan>, LogError> {
        let start = self.first_batch_key(self.offsets().log_start)?;
        let mut out = Vec::new();
        for kv in self.tree.range(batch_key(start)..=batch_key(i64::MAX)) {
            let (_, v) = kv?;
            let h = BatchHeader::read(&v)?;
            out.push(BatchSpan {
                base_offset: h.base_offset,
                last_offset: h.last_offset(),
                size: super::chunks::declared_len(&v) as u64,
                max_timestamp: h.max_timestamp,
            });
        }
        Ok(out)
    }

    /// The base offset of the batch that holds `offset`, or `offset` when none does.
    pub(super) fn first_batch_key(&self, offset: i64) -> Result<i64, LogError> {
        if let Some((k, v)) = self
            .tree
            .range(batch_key(0)..=batch_key(offset.max(0)))
            .next_back()
            .transpose()?
        {
            if BatchHeader::read(&v)?.last_offset() >= offset {
                return Ok(key_offset(&k));
            }
        }
        Ok(offset.max(0))
    }

    /// Applies retention now (the partition leader's decision); returns the new log start
    /// offset when it moved.
    pub fn apply_retention(
        &self,
        now_ms: i64,
        policy: RetentionPolicy,
    ) -> Result<Option<i64>, LogError> {
        if policy.retention_ms < 0 && policy.retention_bytes < 0 {
            return Ok(None);
        }
        let spans = self.batch_spans()?;
        let hw = self.offsets().high_watermark;
        match retention_start(&spans, hw, now_ms, policy) {
            Some(start) => self.advance_log_start(start),
            None => Ok(None),
        }
    }

    /// Moves the log start offset forward to `offset` (capped at the high watermark and the
    /// log end) and deletes every batch wholly below it. Returns the new log start when it
    /// moved. Used by retention and DeleteRecords on the leader, and by followers with the
    /// leader's log start.
    pub fn advance_log_start(&self, offset: i64) -> Result<Option<i64>, LogError> {
        let mut st = self.lock();
        let new_start = offset
            .min(st.offsets.log_end)
            .min(st.offsets.high_watermark.max(st.offsets.log_start));
        if new_start <= st.offsets.log_start {
            return Ok(None);
        }
        let keep_from = {
            let mut keep = new_start;
            if let Some((k, v)) = self
                .tree
                .range(batch_key(0)..=batch_key(new_start))
                .next_back()
                .transpose()?
            {
                if BatchHeader::read(&v)?.last_offset() >= new_start {
                    keep = key_offset(&k);
                }
            }
            keep
        };
        let mut write = sled::Batch::default();
        for kv in self.tree.range(batch_key(0)..batch_key(keep_from)) {
            let (k, _) = kv?;
            write.remove(k);
        }
        super::chunks::remove_range(&self.tree, &mut write, 0, keep_from)?;
        let offsets = Offsets {
            log_start: new_start,
            ..st.offsets
        };
        write.insert(STATE_KEY, &offsets.encode());
        let mut txns = st.txns.clone();
        for k in txns.trim_below(new_start) {
            write.remove(&k);
        }
        self.tree.apply_batch(write)?;
        st.offsets = offsets;
        st.txns = txns;
        self.publish_stable(&mut st);
        self.mark_removed();
        Ok(Some(new_start))
    }

    /// Empties the log and restarts it at `offset` (Kafka's truncate-fully-and-start-at): a
    /// follower whose log ends below the leader's log start cannot catch up by fetching.
    pub fn reset_to(&self, offset: i64) -> Result<(), LogError> {
        let mut st = self.lock();
        let mut write = sled::Batch::default();
        for kv in self.tree.range(batch_key(0)..=batch_key(i64::MAX)) {
            write.remove(kv?.0);
        }
        for e in st.epochs.keys() {
            write.remove(&epoch_key(*e));
        }
        for pid in st.producers.keys() {
            write.remove(&producer_key(*pid));
        }
        for k in st.txns.keys_from(i64::MIN) {
            write.remove(&k);
        }
        let offsets = Offsets {
            log_start: offset,
            log_end: offset,
            high_watermark: offset,
        };
        write.insert(STATE_KEY, &offsets.encode());
        let _persist = self.hw_persist.lock().unwrap_or_else(|p| p.into_inner());
        write.insert(HW_KEY, &offset.to_be_bytes());
        self.tree.apply_batch(write)?;
        st.epochs.clear();
        st.producers.clear();
        st.txns.clear();
        st.offsets = offsets;
        self.publish_stable(&mut st);
        self.mark_removed();
        self.hw_checkpointed
            .store(offset, std::sync::atomic::Ordering::Relaxed);
        self.hw.send_replace(offset);
        self.end.send_replace(offset);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;

    fn span(base: i64, last: i64, size: u64, ts: i64) -> BatchSpan {
        BatchSpan {
            base_offset: base,
            last_offset: last,
            size,
            max_timestamp: ts,
        }
    }

    const NONE: RetentionPolicy = RetentionPolicy {
        retention_ms: -1,
        retention_bytes: -1,
    };

    #[test]
    fn time_retention_deletes_the_expired_prefix_below_the_high_watermark() {
        let b = [
            span(0, 9, 100, 1_000),
            span(10, 19, 100, 5_000),
            span(20, 29, 100, 2_000),
            span(30, 39, 100, 1_000),
        ];
        let p = RetentionPolicy {
            retention_ms: 3_000,
            ..NONE
        };
        // now 10_000: cutoff 7_000, every batch is expired, but only those below the HW go.
        assert_eq!(retention_start(&b, 40, 10_000, p), Some(40));
        assert_eq!(retention_start(&b, 35, 10_000, p), Some(30));
        // now 6_000: cutoff 3_000; the second batch is newer, so the prefix stops there.
        assert_eq!(retention_start(&b, 40, 6_000, p), Some(10));
        assert_eq!(retention_start(&b, 40, 3_000, p), None);
        assert_eq!(retention_start(&b, 40, 10_000, NONE), None);
    }

    #[test]
    fn size_retention_keeps_at_least_retention_bytes() {
        let b = [
            span(0, 9, 100, 0),
            span(10, 19, 100, 0),
            span(20, 29, 100, 0),
        ];
        let p = |bytes| RetentionPolicy {
            retention_bytes: bytes,
            ..NONE
        };
        assert_eq!(retention_start(&b, 30, 0, p(300)), None);
        assert_eq!(retention_start(&b, 30, 0, p(250)), None);
        assert_eq!(retention_start(&b, 30, 0, p(200)), Some(10));
        assert_eq!(retention_start(&b, 30, 0, p(150)), Some(10));
        assert_eq!(retention_start(&b, 30, 0, p(100)), Some(20));
        assert_eq!(retention_start(&b, 30, 0, p(0)), Some(30));
        // Above the high watermark nothing goes.
        assert_eq!(retention_start(&b, 10, 0, p(0)), Some(10));
    }

    fn log() -> (PartitionLog, sled::Db) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        (PartitionLog::open(db.open_tree("t").unwrap()).unwrap(), db)
    }

    #[test]
    fn advancing_the_log_start_deletes_whole_batches_and_refuses_reads_below() {
        let (l, _db) = log();
        for _ in 0..3 {
            l.append(&[make_batch(3, -1, -1)], 0).unwrap(); // 0..2, 3..5, 6..8
        }
        assert_eq!(l.advance_log_start(4).unwrap(), Some(4));
        assert_eq!(l.offsets().log_start, 4);
        // The batch holding offset 4 stays; the first is gone.
        assert_eq!(l.batch_spans().unwrap().len(), 2);
        assert!(matches!(
            l.read(2, 1 << 20, true),
            Err(LogError::OffsetOutOfRange { log_start: 4, .. })
        ));
        let r = l.read(4, 1 << 20, true).unwrap();
        assert_eq!(BatchHeader::read(&r.records).unwrap().base_offset, 3);
        // Never backwards, never past the high watermark.
        assert_eq!(l.advance_log_start(1).unwrap(), None);
        assert_eq!(l.advance_log_start(100).unwrap(), Some(9));
        assert!(l.batch_spans().unwrap().is_empty());
        // Appends continue at the log end.
        assert_eq!(
            l.append(&[make_batch(1, -1, -1)], 0).unwrap().base_offset,
            9
        );
    }

    #[test]
    fn retention_by_size_on_a_real_log() {
        let (l, _db) = log();
        for _ in 0..4 {
            l.append(&[make_batch(2, -1, -1)], 0).unwrap();
        }
        let size = l.batch_spans().unwrap()[0].size as i64;
        let p = RetentionPolicy {
            retention_ms: -1,
            retention_bytes: 2 * size,
        };
        assert_eq!(l.apply_retention(0, p).unwrap(), Some(4));
        assert_eq!(l.apply_retention(0, p).unwrap(), None);
        assert_eq!(l.batch_spans().unwrap().len(), 2);
    }

    #[test]
    fn reset_empties_the_log_and_starts_at_the_offset() {
        let (l, _db) = log();
        l.append(&[make_batch(3, 7, 0)], 0).unwrap();
        l.reset_to(50).unwrap();
        let o = l.offsets();
        assert_eq!((o.log_start, o.log_end, o.high_watermark), (50, 50, 50));
        assert_eq!(l.latest_epoch(), None);
        assert!(l.batch_spans().unwrap().is_empty());
    }
}
