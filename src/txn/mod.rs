//! The transaction coordinator (Kafka's KIP-98 `TransactionCoordinator`): transactional ids,
//! their producer ids and epochs, and the two-phase end of each transaction.
//!
//! - [`state`]: the states of a transactional id and their record in `__transaction_state`.
//! - [`coordinator`]: the per-partition state machine (InitProducerId, AddPartitionsToTxn,
//!   AddOffsetsToTxn, EndTxn, the timeout reaper, ListTransactions/DescribeTransactions).
//! - [`loader`]: loads a `__transaction_state` partition when this broker becomes its leader and
//!   finishes the transactions it finds half-ended; drops it when leadership goes.
//! - [`markers`]: writing commit/abort markers as a partition leader, and the transport to
//!   other brokers.
//! - [`host`]: what the coordinator needs of the broker (the image, offsets markers on a
//!   single broker); `broker` implements it, so nothing here imports `broker`.
//!
//! Placement: transactional id T is coordinated by the leader of partition
//! `abs(javaHashCode(T)) % N` of `__transaction_state` (N = the topic's partition count),
//! as Kafka places it; the first FindCoordinator with key type 1 creates the topic.
//!
//! May depend on: `log`, `writer`, `replication` (role listener), `metadata`, `lease`,
//! `offsets_topic` (the hash and the batch builder). Not on `broker`.

pub mod coordinator;
pub mod host;
pub mod loader;
pub mod markers;
pub mod state;
#[cfg(test)]
mod tests;

use kafka_protocol::ResponseError;

pub use coordinator::TxnCoordinator;

/// The internal topic holding the coordinator's state.
pub const TXN_TOPIC: &str = "__transaction_state";

/// The coordinator's settings (Kafka names in brackets).
#[derive(Debug, Clone, Copy)]
pub struct TxnSettings {
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms` a producer may ask.
    pub max_timeout_ms: i32,
    /// How long a state change waits for the ISR of its `__transaction_state` partition.
    pub write_timeout: std::time::Duration,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms` (expired ids are looked
    /// for at the same interval).
    pub abort_interval: std::time::Duration,
    /// `transactional.id.expiration.ms`.
    pub id_expiration_ms: i64,
    /// Whether this broker is a cluster member (its self-lease matters).
    pub cluster: bool,
}

/// Why a transactional request failed; each maps to Kafka's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("this broker does not coordinate the transactional id (any more); look it up again")]
    NotCoordinator,
    #[error("the coordinator is loading the transaction state; retry")]
    LoadInProgress,
    #[error("no broker coordinates transactions yet (__transaction_state has no leader); retry")]
    NotAvailable,
    #[error("a previous state change of this transactional id is still completing; retry")]
    Concurrent,
    #[error("a newer producer with the same transactional id has fenced this one")]
    ProducerFenced,
    #[error("the producer id does not belong to the transactional id")]
    InvalidProducerIdMapping,
    #[error("{0}")]
    InvalidState(String),
    #[error(
        "transaction.timeout.ms must be positive and at most the broker's \
         transaction.max.timeout.ms ({0})"
    )]
    InvalidTimeout(i32),
    #[error("unknown transactional id")]
    NotFound,
    #[error("the transactional id is longer than 32767 bytes")]
    IdTooLong,
    #[error("cannot allocate a producer id: {0}")]
    Storage(String),
}

impl TxnError {
    /// Kafka's error for this failure.
    pub fn kafka(&self) -> ResponseError {
        match self {
            TxnError::NotCoordinator => ResponseError::NotCoordinator,
            TxnError::LoadInProgress => ResponseError::CoordinatorLoadInProgress,
            TxnError::NotAvailable => ResponseError::CoordinatorNotAvailable,
            TxnError::Concurrent => ResponseError::ConcurrentTransactions,
            TxnError::ProducerFenced => ResponseError::ProducerFenced,
            TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
            TxnError::InvalidState(_) => ResponseError::InvalidTxnState,
            TxnError::InvalidTimeout(_) => ResponseError::InvalidTransactionTimeout,
            TxnError::NotFound => ResponseError::TransactionalIdNotFound,
            TxnError::IdTooLong => ResponseError::InvalidRequest,
            TxnError::Storage(_) => ResponseError::KafkaStorageError,
        }
    }

    /// The error code for a request of an API whose versions below `fenced_from` predate
    /// PRODUCER_FENCED (KIP-588): those get INVALID_PRODUCER_EPOCH instead, as Kafka answers.
    pub fn code_for(&self, version: i16, fenced_from: i16) -> i16 {
        match self.kafka() {
            ResponseError::ProducerFenced if version < fenced_from => {
                ResponseError::InvalidProducerEpoch.code()
            }
            e => e.code(),
        }
    }
}

/// The `__transaction_state` partition of `id` among `partitions`.
pub fn partition_for(id: &str, partitions: usize) -> i32 {
    crate::offsets_topic::partition_for(id, partitions)
}
