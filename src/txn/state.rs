//! A transactional id's coordinator state and its record in `__transaction_state`.
//!
//! The states and transitions are Kafka's (`TransactionState`): Empty → Ongoing (first
//! AddPartitionsToTxn/AddOffsetsToTxn) → PrepareCommit | PrepareAbort (EndTxn, a timeout or a
//! re-initialising producer) → CompleteCommit | CompleteAbort (every marker written) → Ongoing
//! again with the next transaction, or Empty after an InitProducerId epoch bump.
//!
//! Record layout (raftka's own, not Kafka's binary `TransactionLogValue`): the key is
//! `i16 version (0) | i16 length | transactional id (UTF-8)` like Kafka's key, the value is
//! the [`TxnMeta`] as JSON (a later field gets a serde default). A null value (tombstone)
//! forgets the id.
//!
//! May depend on: serde. Nothing else in the crate.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Kafka's transaction states (the names ListTransactions and DescribeTransactions report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// The name Kafka's admin APIs use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The state named `s` (as ListTransactions filters name them).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Waiting for its markers to be written.
    pub fn is_preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// What the coordinator keeps for one transactional id (persisted whole on every change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The id and epoch before the last bump (-1: none): a retried InitProducerId whose
    /// answer was lost is recognised by them.
    #[serde(default = "minus_one")]
    pub last_producer_id: i64,
    #[serde(default = "minus_one_i16")]
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions of the current transaction (kept through Prepare*, cleared by Complete*).
    pub partitions: BTreeSet<(String, i32)>,
    /// When the current transaction began (unix ms; -1 when there is none).
    pub start_ms: i64,
    /// The last change (unix ms).
    pub update_ms: i64,
}

fn minus_one() -> i64 {
    -1
}

fn minus_one_i16() -> i16 {
    -1
}

/// Kafka's bound: an epoch this high cannot be bumped again, the id is replaced.
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// The record key of `id`.
pub fn encode_key(id: &str) -> Vec<u8> {
    let bytes = id.as_bytes();
    let len = i16::try_from(bytes.len()).unwrap_or(i16::MAX);
    let mut out = Vec::with_capacity(4 + bytes.len());
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes[..len as usize]);
    out
}

/// The transactional id of a record key; `None` for a key of another layout or version.
pub fn decode_key(key: &[u8]) -> Option<String> {
    let version = i16::from_be_bytes([*key.first()?, *key.get(1)?]);
    if version != 0 {
        return None;
    }
    let len = i16::from_be_bytes([*key.get(2)?, *key.get(3)?]);
    let body = key.get(4..4 + usize::try_from(len).ok()?)?;
    String::from_utf8(body.to_vec()).ok()
}

pub fn encode_value(meta: &TxnMeta) -> Vec<u8> {
    serde_json::to_vec(meta).unwrap_or_default()
}

pub fn decode_value(value: &[u8]) -> Option<TxnMeta> {
    serde_json::from_slice(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let meta = TxnMeta {
            producer_id: 7,
            producer_epoch: 3,
            last_producer_id: -1,
            last_producer_epoch: 2,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [("t".to_string(), 1), ("u".to_string(), 0)].into(),
            start_ms: 5,
            update_ms: 6,
        };
        assert_eq!(decode_key(&encode_key("tx-é")), Some("tx-é".to_string()));
        assert_eq!(decode_value(&encode_value(&meta)), Some(meta));
        assert_eq!(decode_key(&[0, 1, 0]), None);
        assert_eq!(decode_key(&[0, 0, 0, 9, b'a']), None);
        assert_eq!(decode_key(&[0, 0, 0xff, 0xff]), None);
        assert_eq!(decode_value(b"{"), None);
    }

    #[test]
    fn state_names_are_kafkas() {
        for s in TxnState::ALL {
            assert_eq!(TxnState::parse(s.name()), Some(s));
        }
        assert_eq!(TxnState::parse("Bogus"), None);
        assert!(epoch_exhausted(i16::MAX - 1));
        assert!(!epoch_exhausted(5));
    }
}
