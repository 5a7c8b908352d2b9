//! Idempotent-producer state of one partition: for each producer id, its epoch and the
//! sequence ranges of its last five batches (Kafka keeps the same five, matching the
//! client's `max.in.flight.requests.per.connection` limit for idempotence), and when it last
//! wrote, so that producers gone quiet for `producer.id.expiration.ms` can be forgotten; for
//! transactional producers also the first offset of the transaction open in the partition and
//! the epoch of the coordinator that wrote its last marker (see `txn.rs`).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::batch::BatchHeader;
use super::LogError;

/// The clock of `last_write_ms`: the wall clock (`crate::clock::unix_ms`).
pub use crate::clock::unix_ms as now_ms;

/// How many recent batches per producer are remembered to recognise retries.
pub const CACHED_BATCHES: usize = 5;

/// A batch that was appended: its sequence range and where it landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
}

/// One producer's state in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<SeqBatch>,
    /// When this replica last appended a batch of the producer (broker clock, ms since the
    /// epoch); `producer.id.expiration.ms` after it the entry is dropped. Absent in entries
    /// written before expiry existed: those count from when the log is opened.
    #[serde(default = "unknown_write_time")]
    pub last_write_ms: i64,
    /// The offset of the first batch of the producer's transaction open in this partition
    /// (`None` when none is open). Absent in entries written before transactions existed.
    #[serde(default)]
    pub txn_first_offset: Option<i64>,
    /// The coordinator epoch of the last transaction marker written for the producer (-1:
    /// none yet); a marker from an older coordinator is fenced.
    #[serde(default = "no_coordinator_epoch")]
    pub coordinator_epoch: i32,
    /// The producer's last transaction ended in this partition: its first offset and its
    /// marker's offset (it stays unstable until the high watermark passes the marker, also
    /// across a restart or a truncation).
    #[serde(default)]
    pub last_txn: Option<(i64, i64)>,
    /// The max timestamp of the producer's last batch (DescribeProducers), -1 when unknown.
    #[serde(default = "unknown_write_time")]
    pub last_timestamp: i64,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        Self {
            epoch: 0,
            batches: VecDeque::new(),
            last_write_ms: 0,
            txn_first_offset: None,
            last_txn: None,
            coordinator_epoch: -1,
            last_timestamp: -1,
        }
    }
}

fn unknown_write_time() -> i64 {
    -1
}

fn no_coordinator_epoch() -> i32 {
    -1
}

impl ProducerEntry {
    /// True when the producer has not written for `expiration_ms` at `now_ms`.
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        // A producer with an open transaction is kept (as in Kafka): its entry holds the
        // last stable offset.
        self.txn_first_offset.is_none()
            && self.last_write_ms >= 0
            && now_ms.saturating_sub(self.last_write_ms) >= expiration_ms
    }

    /// The sequence of the producer's last batch, -1 when none is remembered.
    pub fn last_sequence(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }
}

/// What to do with an incoming batch of an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// New data: append it.
    Append,
    /// A retry of a batch already in the log at this base offset: answer success, append nothing.
    Duplicate { base_offset: i64 },
}

/// Checks a batch's producer epoch and sequence against the producer's entry (if any).
///
/// A producer without an entry may start at any sequence, as in Kafka: its state may have
/// expired (`producer.id.expiration.ms`) or gone with the batches that held it (retention,
/// DeleteRecords), and the producer cannot know.
pub fn check(entry: Option<&ProducerEntry>, h: &BatchHeader) -> Result<SeqCheck, LogError> {
    let Some(entry) = entry else {
        return Ok(SeqCheck::Append);
    };
    if h.producer_epoch < entry.epoch {
        return Err(LogError::InvalidProducerEpoch {
            producer_id: h.producer_id,
            current: entry.epoch,
            got: h.producer_epoch,
        });
    }
    if h.base_sequence < 0 {
        // A transactional batch without sequence (the group coordinator's TxnOffsetCommit
        // records): fenced by epoch, not sequenced.
        return Ok(SeqCheck::Append);
    }
    if h.producer_epoch > entry.epoch || entry.batches.is_empty() {
        // A bumped epoch restarts sequences at zero.
        return if h.base_sequence == 0 {
            Ok(SeqCheck::Append)
        } else {
            Err(LogError::OutOfOrderSequence {
                producer_id: h.producer_id,
                expected: 0,
                got: h.base_sequence,
            })
        };
    }
    let last_seq = h.last_sequence();
    if let Some(dup) = entry
        .batches
        .iter()
        .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
    {
        return Ok(SeqCheck::Duplicate {
            base_offset: dup.base_offset,
        });
    }
    let newest = entry.batches.back().map(|b| b.last_seq).unwrap_or(-1);
    let expected = if newest == i32::MAX { 0 } else { newest + 1 };
    if h.base_sequence == expected {
        Ok(SeqCheck::Append)
    } else {
        Err(LogError::OutOfOrderSequence {
            producer_id: h.producer_id,
            expected,
            got: h.base_sequence,
        })
    }
}

/// Records an appended batch in the producer's entry, written at `now_ms`.
pub fn record(entry: &mut ProducerEntry, h: &BatchHeader, base_offset: i64, now_ms: i64) {
    entry.last_write_ms = now_ms;
    entry.last_timestamp = h.max_timestamp;
    if h.producer_epoch != entry.epoch {
        entry.epoch = h.producer_epoch;
        entry.batches.clear();
    }
    if h.base_sequence < 0 {
        return;
    }
    entry.batches.push_back(SeqBatch {
        first_seq: h.base_sequence,
        last_seq: h.last_sequence(),
        base_offset,
    });
    while entry.batches.len() > CACHED_BATCHES {
        entry.batches.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;

    fn header(seq: i32, n: i32, epoch: i16) -> BatchHeader {
        let mut h = BatchHeader::read(&make_batch(n, 9, seq)).unwrap();
        h.producer_epoch = epoch;
        h
    }

    #[test]
    fn in_order_duplicates_and_gaps() {
        let mut e = ProducerEntry::default();
        let h0 = header(0, 3, 0);
        assert_eq!(check(None, &h0).unwrap(), SeqCheck::Append);
        record(&mut e, &h0, 100, 1);
        // A retry of the same batch is a duplicate pointing at the original offset.
        assert_eq!(
            check(Some(&e), &h0).unwrap(),
            SeqCheck::Duplicate { base_offset: 100 }
        );
        let h1 = header(3, 2, 0);
        assert_eq!(check(Some(&e), &h1).unwrap(), SeqCheck::Append);
        record(&mut e, &h1, 103, 2);
        // A gap is refused.
        assert!(matches!(
            check(Some(&e), &header(9, 1, 0)),
            Err(LogError::OutOfOrderSequence {
                expected: 5,
                got: 9,
                ..
            })
        ));
        // An old epoch is fenced; a new epoch must start at zero.
        assert!(matches!(
            check(Some(&e), &header(5, 1, -1)),
            Err(LogError::InvalidProducerEpoch { .. })
        ));
        assert!(check(Some(&e), &header(5, 1, 1)).is_err());
        assert_eq!(check(Some(&e), &header(0, 1, 1)).unwrap(), SeqCheck::Append);
        // Without state (new, or expired) any sequence is taken, as in Kafka.
        assert_eq!(check(None, &header(4, 1, 0)).unwrap(), SeqCheck::Append);
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut e = ProducerEntry::default();
        for i in 0..7 {
            record(&mut e, &header(i, 1, 0), i as i64, 0);
        }
        assert_eq!(e.batches.len(), CACHED_BATCHES);
        assert_eq!(e.batches.front().unwrap().first_seq, 2);
    }

    #[test]
    fn entries_expire_after_their_last_write() {
        let mut e = ProducerEntry::default();
        record(&mut e, &header(0, 1, 0), 0, 1_000);
        assert!(!e.expired(1_999, 1_000));
        assert!(e.expired(2_000, 1_000));
        // Entries stored before expiry existed carry no time and are given one on load.
        let old: ProducerEntry = serde_json::from_str(r#"{"epoch":0,"batches":[]}"#).unwrap();
        assert_eq!(old.last_write_ms, -1);
        assert!(!old.expired(i64::MAX, 1));
    }
}
