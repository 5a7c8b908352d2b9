//! Partition logs in sled: record batches stored as clients sent them, offsets assigned by
//! the broker, log start / log end / high watermark and idempotent-producer state kept
//! durable next to the data.
//!
//! May depend on: `sled`, `bytes`, the compression codecs, `kafka-protocol`'s compressors.
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
pub mod validate;
pub mod wake;

pub use partition::{AppendOutcome, PartitionLog, ReadResult};
pub use store::LogStore;

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
        "the data directory is nearly full ({free} bytes free, log.dir.min.free.bytes is \
         {min}): appends are refused until space is freed"
    )]
    NoSpace { free: u64, min: u64 },
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
    #[error(transparent)]
    Flush(#[from] commit::FlushError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}
