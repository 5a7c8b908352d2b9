//! Log compaction (`cleanup.policy=compact`): keep only the latest record of each key among
//! the committed records (below the high watermark), and drop tombstones (records with a key
//! and no value) once they are older than `delete.retention.ms`.
//!
//! Batches are stored as clients sent them, so compaction rebuilds a batch from the records
//! it keeps: same compression, producer id, epoch and leader epoch; the kept records keep
//! their offsets (offsets become sparse, as in Kafka) and the batch keeps its last offset
//! (`lastOffsetDelta` is not `recordCount - 1` any more, which Kafka's format allows for
//! exactly this reason). The rebuilt batch is stored under its first kept offset. A batch
//! left without records is removed. Produce refuses records without a key for compacted
//! topics ([`keyless_records`]); any such record already in the log (the policy changed
//! later) is kept.
//!
//! Compaction is a pure function of the committed log and the clock, so each replica runs
//! it on its own copy (Kafka does the same) and replicas converge on the same records.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use super::batch::{BatchHeader, HEADER_LEN};
use super::partition::{batch_key, PartitionLog};
use super::LogError;

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub removed_records: u64,
    pub rewritten_batches: u64,
    pub removed_batches: u64,
}

/// A batch to keep with fewer records, or to drop.
#[derive(Debug)]
enum Rewrite {
    Replace { old_base: i64, batch: Bytes },
    Remove { old_base: i64 },
}

/// Decodes a stored batch into its records.
fn decode(raw: &[u8]) -> Result<Vec<Record>, LogError> {
    let mut buf = Bytes::copy_from_slice(raw);
    RecordBatchDecoder::decode(&mut buf)
        .map(|set| set.records)
        .map_err(|e| LogError::Corrupt(format!("stored batch does not decode: {e}")))
}

fn compression_of(h: &BatchHeader) -> Result<Compression, LogError> {
    Ok(match h.attributes & 0x7 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        c => return Err(LogError::Corrupt(format!("unknown compression codec {c}"))),
    })
}

/// The indexes (within the batch, from 0) of a produced batch's records that have no key:
/// compacted topics refuse them, and Produce v8+ names each one (KIP-467). The records are
/// decompressed with at most `inflate_limit` bytes of output.
pub fn keyless_records(batch: &[u8], inflate_limit: usize) -> Result<Vec<i32>, LogError> {
    let section = super::records::records_section(batch, inflate_limit)?;
    let mut keyless = Vec::new();
    for (i, r) in super::records::Records::new(&section).enumerate() {
        if r?.key.is_none() {
            keyless.push(i32::try_from(i).unwrap_or(i32::MAX));
        }
    }
    Ok(keyless)
}

/// Encodes `kept` (records of the batch `orig`, in offset order, at least one) as one batch
/// that still ends at `orig`'s last offset.
pub fn rebuild(orig: &BatchHeader, kept: &[Record]) -> Result<Bytes, LogError> {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: compression_of(orig)?,
    };
    RecordBatchEncoder::encode(&mut buf, kept.iter(), &options)
        .map_err(|e| LogError::Corrupt(format!("cannot re-encode a compacted batch: {e}")))?;
    let first = kept
        .first()
        .ok_or_else(|| LogError::Corrupt("rebuilding a batch without records".into()))?;
    if buf.len() < HEADER_LEN {
        return Err(LogError::Corrupt("re-encoded batch is too short".into()));
    }
    let new_base = first.offset;
    let delta = i32::try_from(orig.last_offset() - new_base)
        .map_err(|_| LogError::Corrupt("compacted batch spans too many offsets".into()))?;
    let base_sequence = if orig.base_sequence < 0 {
        -1
    } else {
        orig.base_sequence
            .wrapping_add((new_base - orig.base_offset) as i32)
    };
    buf[0..8].copy_from_slice(&new_base.to_be_bytes());
    buf[12..16].copy_from_slice(&orig.leader_epoch.to_be_bytes());
    buf[23..27].copy_from_slice(&delta.to_be_bytes());
    buf[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&buf[21..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(buf.freeze())
}

/// Plans the compaction of `batches` (base offset, stored bytes; every one below the high
/// watermark, in offset order): which batches to rebuild or drop, and how many records go.
fn plan(
    batches: &[(i64, Bytes)],
    now_ms: i64,
    delete_retention_ms: i64,
) -> Result<(Vec<Rewrite>, u64), LogError> {
    let mut latest: HashMap<Bytes, i64> = HashMap::new();
    let mut decoded = Vec::with_capacity(batches.len());
    for (base, raw) in batches {
        let h = BatchHeader::read(raw)?;
        let records = decode(raw)?;
        for r in &records {
            if let Some(k) = &r.key {
                latest.insert(k.clone(), r.offset);
            }
        }
        decoded.push((*base, h, records));
    }
    let tombstone_cutoff = now_ms.saturating_sub(delete_retention_ms);
    let mut out = Vec::new();
    let mut removed = 0u64;
    for (base, h, records) in decoded {
        let total = records.len();
        let kept: Vec<Record> = records
            .into_iter()
            .filter(|r| match &r.key {
                None => true,
                Some(k) => {
                    latest.get(k) == Some(&r.offset)
                        && !(r.value.is_none() && r.timestamp < tombstone_cutoff)
                }
            })
            .collect();
        if kept.len() == total {
            continue;
        }
        removed += (total - kept.len()) as u64;
        if kept.is_empty() {
            out.push(Rewrite::Remove { old_base: base });
        } else {
            out.push(Rewrite::Replace {
                old_base: base,
                batch: rebuild(&h, &kept)?,
            });
        }
    }
    Ok((out, removed))
}

impl PartitionLog {
    /// Compacts the committed part of the log (see the module documentation). Appends to
    /// this partition wait while it runs.
    pub fn compact(
        &self,
        now_ms: i64,
        delete_retention_ms: i64,
    ) -> Result<CompactionStats, LogError> {
        let st = self.lock();
        let hw = st.offsets.high_watermark;
        let start = self.first_batch_key(st.offsets.log_start)?;
        let mut batches = Vec::new();
        for kv in self.tree.range(batch_key(start)..batch_key(hw)) {
            let (_, v) = kv?;
            let h = BatchHeader::read(&v)?;
            if h.last_offset() >= hw {
                break;
            }
            batches.push((h.base_offset, Bytes::copy_from_slice(&v)));
        }
        let (rewrites, removed_records) = plan(&batches, now_ms, delete_retention_ms)?;
        let mut stats = CompactionStats {
            removed_records,
            ..Default::default()
        };
        if rewrites.is_empty() {
            return Ok(stats);
        }
        let mut write = sled::Batch::default();
        for r in rewrites {
            match r {
                Rewrite::Remove { old_base } => {
                    write.remove(&batch_key(old_base));
                    stats.removed_batches += 1;
                }
                Rewrite::Replace { old_base, batch } => {
                    let new_base = BatchHeader::read(&batch)?.base_offset;
                    if new_base != old_base {
                        write.remove(&batch_key(old_base));
                    }
                    write.insert(&batch_key(new_base), batch.as_ref());
                    stats.rewritten_batches += 1;
                }
            }
        }
        self.tree.apply_batch(write)?;
        drop(st);
        self.mark_removed();
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::split_stored_batches;
    use kafka_protocol::records::TimestampType;

    fn rec(offset: i64, key: &str, value: Option<&str>, ts: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1 + offset as i32,
            timestamp: ts,
            key: Some(Bytes::from(key.to_string())),
            value: value.map(|v| Bytes::from(v.to_string())),
            headers: Default::default(),
        }
    }

    /// A client-style batch of (key, value) records, compressed with `c`.
    fn batch(kvs: &[(&str, Option<&str>)], ts: i64, c: Compression) -> Bytes {
        let records: Vec<Record> = kvs
            .iter()
            .enumerate()
            .map(|(i, (k, v))| rec(i as i64, k, *v, ts))
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: c,
            },
        )
        .unwrap();
        buf.freeze()
    }

    fn log() -> (PartitionLog, sled::Db) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        (PartitionLog::open(db.open_tree("t").unwrap()).unwrap(), db)
    }

    /// Every (offset, key, value) a consumer reading from the start would see.
    fn contents(l: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
        let r = l.read(l.offsets().log_start, 1 << 30, true).unwrap();
        let mut out = Vec::new();
        for b in split_stored_batches(&r.records).unwrap() {
            for rec in decode(&b).unwrap() {
                out.push((
                    rec.offset,
                    String::from_utf8_lossy(rec.key.as_deref().unwrap_or_default()).into(),
                    rec.value.map(|v| String::from_utf8_lossy(&v).into()),
                ));
            }
        }
        out
    }

    #[test]
    fn keeps_the_latest_value_per_key_with_sparse_offsets() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let (l, _db) = log();
            l.append(&[batch(&[("a", Some("1")), ("b", Some("1"))], 1_000, c)], 0)
                .unwrap(); // 0, 1
            l.append(&[batch(&[("a", Some("2")), ("c", Some("1"))], 1_000, c)], 0)
                .unwrap(); // 2, 3
            l.append(&[batch(&[("a", Some("3"))], 1_000, c)], 0)
                .unwrap(); // 4
            let s = l.compact(2_000, 86_400_000).unwrap();
            assert_eq!(s.removed_records, 2, "{c:?}");
            assert_eq!(
                contents(&l),
                vec![
                    (1, "b".into(), Some("1".into())),
                    (3, "c".into(), Some("1".into())),
                    (4, "a".into(), Some("3".into())),
                ],
                "{c:?}"
            );
            // The batch that lost its first record still ends at its old last offset, and
            // the log end is unchanged: appends continue at 5.
            let spans = l.batch_spans().unwrap();
            assert_eq!(
                spans
                    .iter()
                    .map(|s| (s.base_offset, s.last_offset))
                    .collect::<Vec<_>>(),
                vec![(1, 1), (3, 3), (4, 4)]
            );
            assert_eq!(l.append(&[make(1)], 0).unwrap().base_offset, 5);
            // Compacting again changes nothing.
            assert_eq!(
                l.compact(2_000, 86_400_000).unwrap(),
                CompactionStats::default()
            );
        }
    }

    fn make(n: i32) -> Bytes {
        crate::log::batch::tests::make_batch(n, -1, -1)
    }

    #[test]
    fn only_committed_records_are_compacted() {
        let (l, _db) = log();
        l.append(&[batch(&[("a", Some("1"))], 1_000, Compression::None)], 0)
            .unwrap();
        l.append_as_leader(
            &[batch(&[("a", Some("2"))], 1_000, Compression::None)],
            0,
            false,
        )
        .unwrap();
        // Offset 1 is above the high watermark: offset 0 is still the latest committed "a".
        assert_eq!(l.compact(2_000, 0).unwrap().removed_records, 0);
        l.set_high_watermark(2).unwrap();
        assert_eq!(l.compact(2_000, 0).unwrap().removed_records, 1);
        assert_eq!(contents(&l), vec![(1, "a".into(), Some("2".into()))]);
    }

    #[test]
    fn records_without_a_key_are_refused_for_compacted_topics() {
        let limit = 1 << 20;
        let keyed = batch(&[("a", Some("1"))], 0, Compression::Gzip);
        assert_eq!(keyless_records(&keyed, limit).unwrap(), Vec::<i32>::new());
        for compression in [Compression::None, Compression::Lz4] {
            let records: Vec<Record> = (0..5)
                .map(|i| {
                    let mut r = rec(i, "a", Some("1"), 0);
                    if i % 2 == 1 {
                        r.key = None;
                    }
                    r
                })
                .collect();
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                records.iter(),
                &RecordEncodeOptions {
                    version: 2,
                    compression,
                },
            )
            .unwrap();
            assert_eq!(keyless_records(&buf, limit).unwrap(), vec![1, 3]);
        }
    }

    #[test]
    fn tombstones_go_after_delete_retention() {
        let (l, _db) = log();
        l.append(
            &[batch(
                &[("a", Some("1")), ("b", Some("1"))],
                1_000,
                Compression::None,
            )],
            0,
        )
        .unwrap();
        l.append(&[batch(&[("a", None)], 5_000, Compression::None)], 0)
            .unwrap();
        // The tombstone supersedes "a" but is kept while younger than delete.retention.ms.
        l.compact(6_000, 10_000).unwrap();
        assert_eq!(
            contents(&l),
            vec![(1, "b".into(), Some("1".into())), (2, "a".into(), None)]
        );
        // Later it goes too; its batch is removed, the log end stays.
        let s = l.compact(20_000, 10_000).unwrap();
        assert_eq!(s.removed_batches, 1);
        assert_eq!(contents(&l), vec![(1, "b".into(), Some("1".into()))]);
        assert_eq!(l.offsets().log_end, 3);
    }

    #[test]
    fn rebuilt_batches_pass_the_follower_checks_and_replicate() {
        let (l, _db) = log();
        l.append(
            &[batch(
                &[("a", Some("1")), ("a", Some("2")), ("b", Some("1"))],
                1_000,
                Compression::Lz4,
            )],
            0,
        )
        .unwrap();
        l.compact(2_000, 0).unwrap();
        let r = l.read_for_follower(0, 1 << 20).unwrap();
        let batches = split_stored_batches(&r.records).unwrap();
        let h = BatchHeader::read(&batches[0]).unwrap();
        assert_eq!((h.base_offset, h.last_offset(), h.record_count), (1, 2, 2));
        let (f, _d) = log();
        assert_eq!(f.append_replicated(&batches).unwrap(), 3);
        f.set_high_watermark(3).unwrap();
        assert_eq!(contents(&l), contents(&f));
    }
}
