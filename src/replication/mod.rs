//! Partition replication outside Raft: followers pull batches from the partition leader,
//! the leader tracks each follower's log end, advances the high watermark to the minimum
//! over the ISR, and proposes ISR changes; followers truncate to the leader's epoch boundary
//! before they fetch, so divergent uncommitted tails disappear.
//!
//! The transport is abstract (`ReplicaFetch` requests and responses are plain structs); the
//! gRPC service and client live in `rpc/` and call into this module.
//!
//! May depend on: `log`, `metadata` (image types and commands). Not on `rpc` or the codec.

pub mod follower;
pub mod leader;
pub mod manager;

use bytes::Bytes;

/// One partition in a follower's fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFetch {
    pub topic: String,
    pub partition: i32,
    /// The leader epoch the follower believes current; a mismatch is refused.
    pub leader_epoch: i32,
    pub fetch_offset: i64,
    /// Epoch of the last batch the follower has (-1 when its log is empty).
    pub last_fetched_epoch: i32,
}

/// A follower's fetch request to a leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetchRequest {
    pub replica_id: i32,
    pub max_wait_ms: u64,
    /// Record bytes of the whole response (capped by the leader's `fetch.max.bytes`).
    pub max_bytes: usize,
    /// Record bytes per partition; the first batch of the first partition with data is sent
    /// whole even when larger.
    pub partition_max_bytes: usize,
    pub partitions: Vec<PartitionFetch>,
}

/// Why the leader refused a partition in a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchRefusal {
    /// This broker does not lead the partition (or not in that epoch yet).
    NotLeader,
    /// The follower's epoch is older than the leader's: it must refresh metadata.
    FencedLeaderEpoch,
    /// The follower's epoch is newer: the leader has not applied the change yet.
    UnknownLeaderEpoch,
    /// The fetch offset is outside the leader's log.
    OffsetOutOfRange,
    UnknownPartition,
    Storage,
}

/// The leader's answer for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFetchResult {
    pub topic: String,
    pub partition: i32,
    pub refusal: Option<FetchRefusal>,
    pub high_watermark: i64,
    pub log_start: i64,
    /// Set when the follower's log diverges: truncate to this (epoch, end offset) first.
    pub diverging: Option<(i32, i64)>,
    pub records: Bytes,
}

/// A leader's answer to a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetchResponse {
    pub partitions: Vec<PartitionFetchResult>,
}
