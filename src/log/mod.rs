//! Partition logs in sled: record batches stored as clients sent them, offsets assigned by
//! the broker, log start / log end / high watermark and idempotent-producer state kept
//! durable next to the data.
//!
//! May depend on: `sled`, `bytes`, the compression codecs, `kafka-protocol`'s compressors,
//! `clock` (the wall clock); its tests also on `protocol::batch_builder`.
//! Knows nothing about the network, the request codec or cluster metadata.

pub mod batch;
mod chunks;
pub mod commit;
pub mod compaction;
pub mod decompress;
pub mod flush;
pub mod partition;
pub mod producer;
mod replica;
pub mod retention;
pub mod sled_config;
pub mod space;
pub mod store;
mod timestamps;
pub mod txn;
pub mod validate;
pub mod wake;

/// Tests that reopen a sled directory (a restart within one process).
#[cfg(test)]
pub(crate) mod reopen {
    use std::path::Path;
    use std::time::{Duration, Instant};

    /// Opens the sled database at `dir`, waiting (up to 10 s) while one dropped in this process
    /// still holds sled's file lock: sled lets go only when its background flusher thread of
    /// the old handle ends, which can take a moment on a loaded machine.
    pub fn sled_when_unlocked(dir: &Path) -> sled::Db {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match sled::open(dir) {
                Ok(db) => return db,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("cannot reopen {}: {e}", dir.display()),
            }
        }
    }
}

pub use partition::{AppendOutcome, PartitionLog, ReadResult};
pub use store::LogStore;
pub use txn::{AbortedTxn, TxnMarker};

/// Errors of the log layer; `api::errors` maps them to Kafka error codes.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Batch(#[from] batch::BatchError),
    #[error(transparent)]
    Records(#[from] validate::RecordError),
    #[error("offset {offset} is outside the log's range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("producer {producer_id}: expected sequence {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id}: epoch {got} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        current: i16,
        got: i16,
    },
    #[error(
        "producer {producer_id}: transaction marker from coordinator epoch {got}, older than \
         the epoch {current} of the coordinator that wrote its last marker"
    )]
    CoordinatorFenced {
        producer_id: i64,
        current: i32,
        got: i32,
    },
    #[error(
        "producer {producer_id} has a transaction open in this partition: its writes must be \
         transactional until the transaction ends"
    )]
    InvalidTxnState { producer_id: i64 },
    #[error(
        "transactional write of producer {producer_id} refused: its transaction was not \
         verified with the coordinator, or ended (a marker was written) between the \
         verification and the append; the producer must abort and retry the transaction"
    )]
    TxnNotVerified { producer_id: i64 },
    #[error(
        "the data directory is nearly full ({free} bytes free, log.dir.min.free.bytes is \
         {min}): appends are refused until space is freed"
    )]
    NoSpace { free: u64, min: u64 },
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
    #[error(transparent)]
    Flush(#[from] commit::FlushError),
    #[error(
        "the log belongs to topic id {recorded:032x}, not to {expected:032x} (the topic was \
         deleted and re-created): its data is the old topic's"
    )]
    InconsistentTopicId { recorded: u128, expected: u128 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}
