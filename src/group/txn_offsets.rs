//! Transactional offset commits waiting for their transaction (TxnOffsetCommit, KIP-98 and
//! KIP-447): per producer, the offsets it committed inside its open transaction in one
//! offsets partition. They stay invisible to OffsetFetch (which answers
//! UNSTABLE_OFFSET_COMMIT for them when asked for stable offsets) until the transaction's
//! commit marker lands in the partition; an abort marker drops them.
//!
//! May depend on: `group::records` (the offset records). Nothing of the log or the network.

use std::collections::BTreeMap;

use super::offsets::TopicPartition;
use super::records::{decode_record, OffsetRecord, OffsetsPartition};

/// Pending transactional offsets of one offsets partition (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct TxnOffsets {
    /// Producer id → its transaction's offset records, in commit order (later ones win).
    by_producer: BTreeMap<i64, Vec<OffsetRecord>>,
    /// The log offset up to which the loader replayed the partition (0 for a live one).
    pub replayed_to: i64,
}

impl TxnOffsets {
    /// Adds records of `producer_id`'s open transaction.
    pub fn add(&mut self, producer_id: i64, records: impl IntoIterator<Item = OffsetRecord>) {
        self.by_producer
            .entry(producer_id)
            .or_default()
            .extend(records);
    }

    /// Adds one stored record (key and value as in the log) of `producer_id`'s transaction;
    /// records of other kinds are ignored.
    pub fn replay(&mut self, producer_id: i64, key: &[u8], value: Option<&[u8]>) {
        if let Some(r) = decode_record(key, value) {
            self.add(producer_id, [r]);
        }
    }

    /// Removes and returns `producer_id`'s pending records (its transaction ended).
    pub fn take(&mut self, producer_id: i64) -> Vec<OffsetRecord> {
        self.by_producer.remove(&producer_id).unwrap_or_default()
    }

    /// The partitions of `group` with pending transactional offsets.
    pub fn pending(&self, group: &str) -> Vec<TopicPartition> {
        let mut out: Vec<TopicPartition> = self
            .by_producer
            .values()
            .flatten()
            .filter(|r| r.group == group)
            .map(|r| r.tp.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// How many producers have pending offsets here.
    pub fn producers(&self) -> usize {
        self.by_producer.len()
    }
}

impl OffsetsPartition {
    /// Ends `producer_id`'s transaction while replaying the log: a commit applies its
    /// pending offsets, an abort drops them.
    pub fn end_txn(&mut self, producer_id: i64, commit: bool) {
        let records = self.txn.take(producer_id);
        if commit {
            for r in records {
                self.apply(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::records::encode_record;
    use crate::group::CommittedOffset;

    fn off(o: i64) -> CommittedOffset {
        CommittedOffset {
            offset: o,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 1,
        }
    }

    #[test]
    fn pending_offsets_apply_on_commit_and_vanish_on_abort() {
        let tp = TopicPartition::new("t", 0);
        let mut p = OffsetsPartition::default();
        let (k, v) = encode_record("g", &tp, Some(&off(5))).unwrap();
        p.replay(&k, v.as_deref());
        let (k, v) = encode_record("g", &tp, Some(&off(9))).unwrap();
        p.txn.replay(7, &k, v.as_deref());
        let (k, v) = encode_record("g", &TopicPartition::new("t", 1), Some(&off(3))).unwrap();
        p.txn.replay(8, &k, v.as_deref());
        assert_eq!(p.get("g", &tp).map(|o| o.offset), Some(5));
        assert_eq!(
            p.txn.pending("g"),
            vec![tp.clone(), TopicPartition::new("t", 1)]
        );
        p.end_txn(7, true);
        assert_eq!(p.get("g", &tp).map(|o| o.offset), Some(9));
        p.end_txn(8, false);
        assert_eq!(p.get("g", &TopicPartition::new("t", 1)), None);
        assert!(p.txn.pending("g").is_empty());
        // Ending again (a marker seen twice) changes nothing.
        p.end_txn(7, true);
        assert_eq!(p.get("g", &tp).map(|o| o.offset), Some(9));
    }
}
