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
//! topics (`validate::produced_batches`); any such record already in the log (the policy changed later) is
//! kept.
//!
//! Records are read through `validate::stored_records` (the bounded reader and the same
//! record checks as produce), so a batch that does not decode or inflates beyond its limit
//! makes compaction of that partition fail with an error instead of exhausting memory; the
//! cleaner then marks the partition uncleanable.
//!
//! Transactions: only the stable part of the log is compacted (below the last stable offset,
//! where every transaction is decided). Records of committed transactions are compacted like
//! any record (a later value or tombstone of their key removes them, and they remove older
//! ones). Batches of aborted transactions (found in the aborted index) are left untouched and
//! their records do not count as a key's latest value, so an aborted record never replaces a
//! committed one; they stay in the log, where the aborted index (which compaction does not
//! change) keeps them invisible to read_committed consumers. Transaction markers (control
//! batches) are never removed, so no marker goes while data of its transaction may remain.
//! Kafka goes further — it removes aborted records and, after `delete.retention.ms`, markers
//! whose transaction is gone — so a compacted topic written transactionally keeps more here.
//!
//! Compaction is a pure function of the committed log and the clock, so each replica runs
//! it on its own copy (Kafka does the same) and replicas converge on the same records.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use super::batch::{BatchHeader, HEADER_LEN};
use super::decompress::Codec;
use super::partition::{batch_key, key_offset, PartitionLog};
use super::validate::{stored_records, RecordView};
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

/// Appends `v` zig-zag encoded as a varint/varlong (Kafka's record fields).
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Encodes `kept` (records of the batch `orig`, in offset order, at least one) as one batch
/// that still ends at `orig`'s last offset, compressed as `orig` was. Each record's key,
/// value and headers are copied as stored; only its offset and timestamp deltas are
/// re-encoded against the new batch's base.
pub fn rebuild(
    orig: &BatchHeader,
    codec: Codec,
    kept: &[RecordView<'_>],
) -> Result<Bytes, LogError> {
    let first = kept
        .first()
        .ok_or_else(|| LogError::Corrupt("rebuilding a batch without records".into()))?;
    let new_base = first.offset;
    let base_ts = first.timestamp;
    let log_append_time = orig.attributes & 0x8 != 0;
    let max_ts = if log_append_time {
        orig.max_timestamp
    } else {
        kept.iter().map(|r| r.timestamp).max().unwrap_or(base_ts)
    };
    let mut records = Vec::new();
    let mut body = Vec::new();
    for r in kept {
        body.clear();
        body.push(r.attributes as u8);
        put_varint(&mut body, r.timestamp.wrapping_sub(base_ts));
        put_varint(&mut body, r.offset - new_base);
        body.extend_from_slice(r.tail);
        put_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let mut buf = BytesMut::with_capacity(HEADER_LEN + records.len());
    buf.resize(HEADER_LEN, 0);
    let fill = |tmp: &mut BytesMut| -> anyhow::Result<()> {
        tmp.extend_from_slice(&records);
        Ok(())
    };
    let compressed = match codec {
        Codec::None => {
            buf.extend_from_slice(&records);
            Ok(())
        }
        Codec::Gzip => Gzip::compress(&mut buf, fill),
        Codec::Snappy => Snappy::compress(&mut buf, fill),
        Codec::Lz4 => Lz4::compress(&mut buf, fill),
        Codec::Zstd => Zstd::compress(&mut buf, fill),
    };
    compressed
        .map_err(|e| LogError::Corrupt(format!("cannot recompress a compacted batch: {e}")))?;
    let delta = i32::try_from(orig.last_offset() - new_base)
        .map_err(|_| LogError::Corrupt("compacted batch spans too many offsets".into()))?;
    let base_sequence = if orig.base_sequence < 0 {
        -1
    } else {
        orig.base_sequence
            .wrapping_add((new_base - orig.base_offset) as i32)
    };
    let batch_len = i32::try_from(buf.len() - 12)
        .map_err(|_| LogError::Corrupt("compacted batch is too large".into()))?;
    let mut h = &mut buf[..HEADER_LEN];
    h.put_i64(new_base);
    h.put_i32(batch_len);
    h.put_i32(orig.leader_epoch);
    h.put_i8(2);
    h.put_u32(0); // CRC, below
    h.put_i16(orig.attributes);
    h.put_i32(delta);
    h.put_i64(base_ts);
    h.put_i64(max_ts);
    h.put_i64(orig.producer_id);
    h.put_i16(orig.producer_epoch);
    h.put_i32(base_sequence);
    h.put_i32(kept.len() as i32);
    let crc = crc32c::crc32c(&buf[21..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(buf.freeze())
}

/// Plans the compaction of `batches` (base offset, stored bytes; every one below the high
/// watermark, in offset order): which batches to rebuild or drop, and how many records go.
///
/// Two passes: the first keeps only each key's latest offset (keys copied, so one batch's
/// inflated records are in memory at a time), the second inflates each batch again and
/// rebuilds it from the records it keeps. Every batch goes through the bounded reader of
/// `validate::stored_records`; one that does not decode fails the whole plan, so nothing is
/// written.
fn plan(
    batches: &[(i64, Bytes)],
    now_ms: i64,
    delete_retention_ms: i64,
) -> Result<(Vec<Rewrite>, u64), LogError> {
    let mut latest: HashMap<Bytes, i64> = HashMap::new();
    for (_, raw) in batches {
        for r in stored_records(raw)?.iter() {
            let r = r?;
            if let Some(k) = r.key {
                match latest.get_mut(k) {
                    Some(o) => *o = r.offset,
                    None => {
                        latest.insert(Bytes::copy_from_slice(k), r.offset);
                    }
                }
            }
        }
    }
    let tombstone_cutoff = now_ms.saturating_sub(delete_retention_ms);
    let mut out = Vec::new();
    let mut removed = 0u64;
    for (base, raw) in batches {
        let recs = stored_records(raw)?;
        let mut total = 0usize;
        let mut kept = Vec::new();
        for r in recs.iter() {
            let r = r?;
            total += 1;
            let keep = match r.key {
                None => true,
                Some(k) => {
                    latest.get(k) == Some(&r.offset)
                        && !(r.value.is_none() && r.timestamp < tombstone_cutoff)
                }
            };
            if keep {
                kept.push(r);
            }
        }
        if kept.len() == total {
            continue;
        }
        removed += (total - kept.len()) as u64;
        if kept.is_empty() {
            out.push(Rewrite::Remove { old_base: *base });
        } else {
            out.push(Rewrite::Replace {
                old_base: *base,
                batch: rebuild(&recs.header, recs.codec, &kept)?,
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
        self.compact_with_lag(now_ms, delete_retention_ms, 0)
    }

    /// [`Self::compact`] that also leaves alone, with everything after it, the first batch
    /// whose newest timestamp is less than `min_lag_ms` old (`min.compaction.lag.ms`: Kafka's
    /// cleaner stops at the first segment that young).
    pub fn compact_with_lag(
        &self,
        now_ms: i64,
        delete_retention_ms: i64,
        min_lag_ms: i64,
    ) -> Result<CompactionStats, LogError> {
        let young = now_ms.saturating_sub(min_lag_ms.max(0));
        let st = self.lock();
        // The stable part only: below it every transaction is committed or aborted.
        let hw = st.txns.last_stable_offset(&st.offsets);
        let start = self.first_batch_key(st.offsets.log_start)?;
        let mut batches = Vec::new();
        for kv in self.tree.range(batch_key(start)..batch_key(hw)) {
            let (k, v) = kv?;
            let h = BatchHeader::read(&v)?;
            if h.last_offset() >= hw || (min_lag_ms > 0 && h.max_timestamp > young) {
                break;
            }
            if h.is_control()
                || (h.is_transactional() && st.txns.is_aborted(h.producer_id, h.base_offset))
            {
                continue; // markers and aborted transactions stay as written (see above)
            }
            // Appends wait for the partition lock held here, so every chunk is present.
            let whole = super::chunks::whole(&self.tree, key_offset(&k), &v)?.ok_or_else(|| {
                LogError::Corrupt(format!("batch {} lacks chunks", h.base_offset))
            })?;
            batches.push((h.base_offset, whole));
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
                    super::chunks::remove_one(&self.tree, &mut write, old_base)?;
                    stats.removed_batches += 1;
                }
                Rewrite::Replace { old_base, batch } => {
                    let new_base = BatchHeader::read(&batch)?.base_offset;
                    // Later writes to a key in a sled batch win: the old batch and its
                    // chunks go, except the keys the new batch rewrites.
                    super::chunks::remove_one(&self.tree, &mut write, old_base)?;
                    super::chunks::put(&mut write, new_base, &batch);
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
    use crate::protocol::batch_builder::BatchBuilder;
    use kafka_protocol::records::Compression;

    /// A client-style batch of (key, value) records, compressed with `c`.
    fn batch(kvs: &[(&str, Option<&str>)], ts: i64, c: Compression) -> Bytes {
        kvs.iter()
            .fold(
                BatchBuilder::new()
                    .partition_leader_epoch(0)
                    .timestamp(ts)
                    .compression(c),
                |b, (k, v)| b.record(Some(k.as_bytes()), v.map(str::as_bytes)),
            )
            .build()
            .unwrap()
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
            for rec in stored_records(&b).unwrap().iter() {
                let rec = rec.unwrap();
                out.push((
                    rec.offset,
                    String::from_utf8_lossy(rec.key.unwrap_or_default()).into(),
                    rec.value.map(|v| String::from_utf8_lossy(v).into()),
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
    fn transactional_batches_and_markers_are_kept_and_do_not_shadow_committed_values() {
        use crate::log::txn::tests::txn_batch;
        use crate::log::TxnMarker;
        let (l, _db) = log();
        // "tk0" committed plainly, then written in a transaction that aborts.
        l.append(&[batch(&[("tk0", Some("1"))], 1_000, Compression::None)], 0)
            .unwrap(); // 0
        l.append(&[txn_batch(1, 7, 0, 0)], 0).unwrap(); // 1: tk0 = tv0, aborted below
        l.append_txn_marker(
            TxnMarker {
                producer_id: 7,
                producer_epoch: 0,
                coordinator_epoch: 0,
                commit: false,
            },
            0,
            true,
        )
        .unwrap(); // 2
        l.append(&[batch(&[("x", Some("1"))], 1_000, Compression::None)], 0)
            .unwrap(); // 3
        l.append(&[batch(&[("x", Some("2"))], 1_000, Compression::None)], 0)
            .unwrap(); // 4
        let s = l.compact(2_000, 0).unwrap();
        // Only the superseded plain "x" goes; the committed "tk0" is not shadowed by the
        // aborted one, and the aborted batch and its marker stay, still indexed as aborted.
        assert_eq!(s.removed_records, 1);
        let spans: Vec<i64> = l
            .batch_spans()
            .unwrap()
            .iter()
            .map(|b| b.base_offset)
            .collect();
        assert_eq!(spans, vec![0, 1, 2, 4]);
        assert_eq!(l.aborted_transactions(0, 5).len(), 1);

        // A committed transaction writes "tk0" (shadowing the plain value), then a plain
        // tombstone deletes it: the committed record goes with the tombstone (it must not come
        // back once the tombstone is gone). An open transaction's "x" (above the last stable
        // offset) is not compacted and does not shadow the committed plain "x".
        let m = |pid: i64, commit: bool| TxnMarker {
            producer_id: pid,
            producer_epoch: 0,
            coordinator_epoch: 0,
            commit,
        };
        l.append(&[txn_batch(1, 8, 0, 0)], 0).unwrap(); // 5: tk0 = tv0
        l.append_txn_marker(m(8, true), 0, true).unwrap(); // 6
        l.append(&[batch(&[("tk0", None)], 1_000, Compression::None)], 0)
            .unwrap(); // 7
        l.append(&[txn_batch(1, 9, 0, 0)], 0).unwrap(); // 8: tk0 again, still open
        assert_eq!(l.last_stable_offset(), 8);
        let s = l.compact(2_000, 0).unwrap();
        assert_eq!(
            s.removed_records, 3,
            "plain tk0, committed tk0 and the tombstone"
        );
        let spans: Vec<i64> = l
            .batch_spans()
            .unwrap()
            .iter()
            .map(|b| b.base_offset)
            .collect();
        assert_eq!(
            spans,
            vec![1, 2, 4, 6, 8],
            "aborted data, markers, x=2, open data"
        );
    }

    #[test]
    fn rebuilt_batches_keep_headers_byte_for_byte_in_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let (l, _db) = log();
            // A null header value, which the codec crate's decoder cannot read back.
            let orig = (0..3)
                .fold(
                    BatchBuilder::new().partition_leader_epoch(0).compression(c),
                    |b, i| {
                        let b = b
                            .timestamp(1_000 + i)
                            .record(Some(if i == 1 { b"b" } else { b"a" }), Some(b"v"));
                        if i == 1 {
                            b.header("h", None).header("g", Some(b"\x00\xff"))
                        } else {
                            b
                        }
                    },
                )
                .build()
                .unwrap();
            let before: Vec<u8> = stored_records(&orig)
                .unwrap()
                .iter()
                .nth(1)
                .unwrap()
                .unwrap()
                .tail
                .to_vec();
            l.append(&[orig], 0).unwrap();
            assert_eq!(l.compact(2_000, 0).unwrap().removed_records, 1, "{c:?}");
            let r = l.read(0, 1 << 20, true).unwrap();
            let b = split_stored_batches(&r.records).unwrap().remove(0);
            let h = BatchHeader::read(&b).unwrap();
            assert_eq!(h.attributes & 7, c as i16, "{c:?} kept");
            let recs = stored_records(&b).unwrap();
            let kept: Vec<_> = recs.iter().map(|r| r.unwrap()).collect();
            assert_eq!(kept.len(), 2);
            assert_eq!((kept[0].offset, kept[0].timestamp), (1, 1_001));
            assert_eq!(kept[0].tail, &before[..], "{c:?}: headers as stored");
            assert_eq!((kept[1].offset, kept[1].timestamp), (2, 1_002));
            assert_eq!(h.max_timestamp, 1_002);
        }
    }

    #[test]
    fn min_compaction_lag_leaves_young_batches_and_what_follows_them() {
        let (l, _db) = log();
        l.append(&[batch(&[("a", Some("1"))], 1_000, Compression::None)], 0)
            .unwrap();
        l.append(&[batch(&[("a", Some("2"))], 5_000, Compression::None)], 0)
            .unwrap();
        l.append(&[batch(&[("a", Some("3"))], 1_000, Compression::None)], 0)
            .unwrap();
        l.set_high_watermark(3).unwrap();
        // At 6 s with a 2 s lag the second batch is too young: only the first is eligible,
        // and alone it holds nothing superseded.
        assert_eq!(
            l.compact_with_lag(6_000, 0, 2_000).unwrap().removed_records,
            0
        );
        assert_eq!(contents(&l).len(), 3);
        // Once everything is old enough, the latest value alone stays.
        let s = l.compact_with_lag(8_000, 0, 2_000).unwrap();
        assert_eq!(s.removed_records, 2);
        assert_eq!(contents(&l), vec![(2, "a".into(), Some("3".into()))]);
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
