//! Kafka v2 record batches as raw bytes: reading the header, checking the CRC, and stamping
//! the broker-assigned base offset and leader epoch (fields the CRC does not cover, so the
//! client's bytes — compressed or not — are stored as sent).
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8, partitionLeaderEpoch i32 @12,
//! magic i8 @16, crc u32 @17, attributes i16 @21, lastOffsetDelta i32 @23,
//! baseTimestamp i64 @27, maxTimestamp i64 @35, producerId i64 @43, producerEpoch i16 @51,
//! baseSequence i32 @53, recordCount i32 @57, records @61. The CRC-32C covers bytes 21..end.

use bytes::{Bytes, BytesMut};

/// Size of the v2 batch header.
pub const HEADER_LEN: usize = 61;

/// Why a batch was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch truncated: {have} bytes, header says {want}")]
    Truncated { have: usize, want: usize },
    #[error("record batch uses message format v{0}; only v2 (Kafka 0.11+) is supported")]
    OldMagic(i8),
    #[error("record batch CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Crc { stored: u32, computed: u32 },
    #[error("record batch header is inconsistent: {0}")]
    Invalid(&'static str),
    #[error("record batch of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("clients may not write control batches (transaction markers)")]
    ControlBatch,
    #[error("a transactional batch must carry a producer id")]
    TransactionalWithoutProducerId,
}

/// The fields of a batch header that the broker looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads the header of a batch that is at least [`HEADER_LEN`] bytes long.
    pub fn read(b: &[u8]) -> Result<Self, BatchError> {
        if b.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                have: b.len(),
                want: HEADER_LEN,
            });
        }
        let i16_at = |o: usize| i16::from_be_bytes([b[o], b[o + 1]]);
        let i32_at = |o: usize| i32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let i64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            i64::from_be_bytes(a)
        };
        Ok(Self {
            base_offset: i64_at(0),
            leader_epoch: i32_at(12),
            attributes: i16_at(21),
            last_offset_delta: i32_at(23),
            base_timestamp: i64_at(27),
            max_timestamp: i64_at(35),
            producer_id: i64_at(43),
            producer_epoch: i16_at(51),
            base_sequence: i32_at(53),
            record_count: i32_at(57),
        })
    }

    /// The offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// The sequence number of the batch's last record (sequences wrap at i32::MAX).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        (last % (i32::MAX as i64 + 1)) as i32
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// True when the records' timestamps are the broker's append time (the batch's max
    /// timestamp), not the producer's.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & LOG_APPEND_TIME_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// Splits the records of a produce request into validated batches.
///
/// Every batch must be magic v2, have a correct CRC-32C and a consistent header, and be no
/// larger than `max_batch_bytes`.
pub fn split_batches(records: &Bytes, max_batch_bytes: usize) -> Result<Vec<Bytes>, BatchError> {
    split(records, max_batch_bytes, true)
}

/// Splits batches a leader serves to a follower. Like [`split_batches`], except that a batch
/// may hold fewer records than its offset span: compaction removes records but keeps the
/// batch's last offset (as Kafka's cleaner does), so `lastOffsetDelta >= recordCount - 1`.
pub fn split_stored_batches(records: &Bytes) -> Result<Vec<Bytes>, BatchError> {
    split(records, usize::MAX, false)
}

fn split(
    records: &Bytes,
    max_batch_bytes: usize,
    as_produced: bool,
) -> Result<Vec<Bytes>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < 17 {
            return Err(BatchError::Truncated {
                have: rest.len(),
                want: 17,
            });
        }
        let batch_len = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let magic = rest[16] as i8;
        if magic != 2 {
            return Err(BatchError::OldMagic(magic));
        }
        if batch_len < (HEADER_LEN - 12) as i32 {
            return Err(BatchError::Invalid("batch length smaller than its header"));
        }
        let total = 12 + batch_len as usize;
        if total > rest.len() {
            return Err(BatchError::Truncated {
                have: rest.len(),
                want: total,
            });
        }
        if total > max_batch_bytes {
            return Err(BatchError::TooLarge {
                size: total,
                max: max_batch_bytes,
            });
        }
        let batch = &rest[..total];
        let stored = u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]]);
        let computed = crc32c::crc32c(&batch[21..]);
        if stored != computed {
            return Err(BatchError::Crc { stored, computed });
        }
        let h = BatchHeader::read(batch)?;
        if h.record_count < 0 || h.last_offset_delta < 0 {
            return Err(BatchError::Invalid("negative record count or offset delta"));
        }
        if as_produced && h.record_count > 0 && h.last_offset_delta != h.record_count - 1 {
            return Err(BatchError::Invalid(
                "last offset delta does not match record count",
            ));
        }
        if h.record_count > h.last_offset_delta.saturating_add(1) {
            return Err(BatchError::Invalid(
                "more records than the batch's offset span",
            ));
        }
        if as_produced && h.is_control() {
            return Err(BatchError::ControlBatch);
        }
        if h.is_transactional() && !h.has_producer_id() {
            return Err(BatchError::TransactionalWithoutProducerId);
        }
        out.push(records.slice(pos..pos + total));
        pos += total;
    }
    if out.is_empty() {
        return Err(BatchError::Invalid("no record batch in produce request"));
    }
    Ok(out)
}

/// The offset after the last batch in `records` (whole stored batches, as a read returns
/// them), or `None` when there is no whole batch. Reads headers only.
pub fn end_offset(records: &[u8]) -> Option<i64> {
    let mut pos = 0usize;
    let mut end = None;
    while let Some(rest) = records.get(pos..) {
        if rest.len() < HEADER_LEN {
            break;
        }
        let h = BatchHeader::read(rest).ok()?;
        let len = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let total = usize::try_from(len).ok()?.checked_add(12)?;
        if total > rest.len() {
            break;
        }
        end = Some(h.last_offset() + 1);
        pos += total;
    }
    end
}

/// The attributes bit that says the batch's timestamps are the broker's append time.
const LOG_APPEND_TIME_BIT: i16 = 0x08;

/// Returns a copy of `batch` marked as a LogAppendTime batch with `now_ms` as its max
/// timestamp, the CRC recomputed. The records are untouched, as in Kafka: consumers take the
/// batch's max timestamp as every record's timestamp when the bit is set.
pub fn with_log_append_time(batch: &[u8], now_ms: i64) -> Bytes {
    let mut b = BytesMut::from(batch);
    let attributes = i16::from_be_bytes([b[21], b[22]]) | LOG_APPEND_TIME_BIT;
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    b[35..43].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// Returns a copy of `batch` with the broker's base offset and leader epoch written in.
pub fn stamp(batch: &[u8], base_offset: i64, leader_epoch: i32) -> BytesMut {
    let mut b = BytesMut::from(batch);
    b[0..8].copy_from_slice(&base_offset.to_be_bytes());
    b[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    b
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::batch_builder::BatchBuilder;

    /// Builds a real v2 batch with the codec crate (an encoder that is not ours): records
    /// k<i>=v<i> at 1000 + i, producer epoch 0; base sequence -1 marks a non-idempotent batch.
    pub fn make_batch(n: i32, producer_id: i64, base_seq: i32) -> Bytes {
        (0..n)
            .fold(
                BatchBuilder::new()
                    .producer(producer_id, 0, base_seq)
                    .partition_leader_epoch(0),
                |b, i| {
                    b.timestamp(1_000 + i as i64).record(
                        Some(format!("k{i}").as_bytes()),
                        Some(format!("v{i}").as_bytes()),
                    )
                },
            )
            .build()
            .unwrap()
    }

    #[test]
    fn valid_batches_split_and_headers_read() {
        let mut two = BytesMut::new();
        two.extend_from_slice(&make_batch(3, 7, 0));
        two.extend_from_slice(&make_batch(2, 7, 3));
        let batches = split_batches(&two.freeze(), 1 << 20).unwrap();
        assert_eq!(batches.len(), 2);
        let h = BatchHeader::read(&batches[1]).unwrap();
        assert_eq!(h.record_count, 2);
        assert_eq!(h.base_sequence, 3);
        assert_eq!(h.last_sequence(), 4);
        assert_eq!(h.producer_id, 7);
    }

    #[test]
    fn corrupt_and_oversize_batches_are_refused() {
        let b = make_batch(3, -1, -1);
        let mut bad = BytesMut::from(&b[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(
            split_batches(&bad.freeze(), 1 << 20),
            Err(BatchError::Crc { .. })
        ));
        assert!(matches!(
            split_batches(&b, 10),
            Err(BatchError::TooLarge { .. })
        ));
        assert!(matches!(
            split_batches(&b.slice(..b.len() - 1), 1 << 20),
            Err(BatchError::Truncated { .. })
        ));
        let mut old = BytesMut::from(&b[..]);
        old[16] = 1;
        assert_eq!(
            split_batches(&old.freeze(), 1 << 20),
            Err(BatchError::OldMagic(1))
        );
    }

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let b = make_batch(3, -1, -1);
        let s = stamp(&b, 42, 5).freeze();
        let h = BatchHeader::read(&split_batches(&s, 1 << 20).unwrap()[0]).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.leader_epoch, 5);
        assert_eq!(h.last_offset(), 44);
    }

    #[test]
    fn log_append_time_marks_the_batch_and_keeps_the_crc_valid() {
        let b = make_batch(3, -1, -1);
        assert!(!BatchHeader::read(&b).unwrap().is_log_append_time());
        let s = with_log_append_time(&b, 1_700_000_000_000);
        let h = BatchHeader::read(&split_batches(&s, 1 << 20).unwrap()[0]).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 1_700_000_000_000);
        assert_eq!((h.base_timestamp, h.record_count), (1_000, 3));
        // The records themselves are the producer's bytes.
        assert_eq!(s[HEADER_LEN..], b[HEADER_LEN..]);
    }

    #[test]
    fn sequences_wrap() {
        let mut h = BatchHeader::read(&make_batch(3, 1, 0)).unwrap();
        h.base_sequence = i32::MAX - 1;
        // Sequences MAX-1, MAX, then 0.
        assert_eq!(h.last_sequence(), 0);
    }
}
