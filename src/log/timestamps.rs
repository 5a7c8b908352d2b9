//! The record with the largest timestamp in a partition's committed log: ListOffsets'
//! MAX_TIMESTAMP (-3, KIP-734), answered with the offset of the first record carrying it, as
//! Kafka does (a later record with an equal timestamp does not replace it).
//!
//! May depend on: `log::partition`, `log::retention` (batch spans), `log::batch`,
//! `log::validate` (the bounded record reader).

use super::batch::{split_stored_batches, BatchHeader};
use super::validate::stored_records;
use super::{LogError, PartitionLog};

impl PartitionLog {
    /// `(offset, timestamp)` of the first record with the largest timestamp among the batches
    /// wholly below the high watermark, from the log start on; `None` for an empty log.
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, LogError> {
        let o = self.offsets();
        let mut best: Option<(i64, i64)> = None; // (batch base offset, max timestamp)
        for span in self.batch_spans()? {
            if span.last_offset >= o.high_watermark {
                break;
            }
            if best.is_none_or(|(_, ts)| span.max_timestamp > ts) {
                best = Some((span.base_offset, span.max_timestamp));
            }
        }
        let Some((base, max_ts)) = best else {
            return Ok(None);
        };
        let read = self.read(base.max(o.log_start), 1, true)?;
        let Some(batch) = split_stored_batches(&read.records)?.into_iter().next() else {
            return Ok(None);
        };
        let h = BatchHeader::read(&batch)?;
        if h.is_log_append_time() {
            // The broker's append time stands for every record of the batch.
            return Ok(Some((base.max(o.log_start), h.max_timestamp)));
        }
        for r in stored_records(&batch)?.iter() {
            let r = r?;
            if r.timestamp == max_ts && r.offset >= o.log_start {
                return Ok(Some((r.offset, r.timestamp)));
            }
        }
        // A header whose max timestamp no record carries (a client bug): its first record.
        Ok(Some((base.max(o.log_start), max_ts)))
    }
}
