//! Idempotent-producer state of one partition: for each producer id, its epoch and the
//! sequence ranges of its last five batches (Kafka keeps the same five, matching the
//! client's `max.in.flight.requests.per.connection` limit for idempotence).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::batch::BatchHeader;
use super::LogError;

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<SeqBatch>,
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
pub fn check(entry: Option<&ProducerEntry>, h: &BatchHeader) -> Result<SeqCheck, LogError> {
    let Some(entry) = entry else {
        return if h.base_sequence == 0 {
            Ok(SeqCheck::Append)
        } else {
            Err(LogError::OutOfOrderSequence {
                producer_id: h.producer_id,
                expected: 0,
                got: h.base_sequence,
            })
        };
    };
    if h.producer_epoch < entry.epoch {
        return Err(LogError::InvalidProducerEpoch {
            producer_id: h.producer_id,
            current: entry.epoch,
            got: h.producer_epoch,
        });
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

/// Records an appended batch in the producer's entry.
pub fn record(entry: &mut ProducerEntry, h: &BatchHeader, base_offset: i64) {
    if h.producer_epoch != entry.epoch {
        entry.epoch = h.producer_epoch;
        entry.batches.clear();
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
        record(&mut e, &h0, 100);
        // A retry of the same batch is a duplicate pointing at the original offset.
        assert_eq!(
            check(Some(&e), &h0).unwrap(),
            SeqCheck::Duplicate { base_offset: 100 }
        );
        let h1 = header(3, 2, 0);
        assert_eq!(check(Some(&e), &h1).unwrap(), SeqCheck::Append);
        record(&mut e, &h1, 103);
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
        assert!(check(None, &header(4, 1, 0)).is_err());
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut e = ProducerEntry::default();
        for i in 0..7 {
            record(&mut e, &header(i, 1, 0), i as i64);
        }
        assert_eq!(e.batches.len(), CACHED_BATCHES);
        assert_eq!(e.batches.front().unwrap().first_seq, 2);
    }
}
