//! Partition replication outside Raft: followers pull batches from the partition leader,
//! the leader tracks each follower's log end, advances the high watermark to the minimum
//! over the ISR, and proposes ISR changes; followers truncate to the leader's epoch boundary
//! before they fetch, so divergent uncommitted tails disappear.
//!
//! The transport is abstract (`ReplicaFetch` requests and responses are plain structs); the
//! gRPC service and client live in `rpc/` and call into this module.
//!
//! May depend on: `log`, `metadata` (image types and commands), `clock`. Not on `rpc` or the
//! codec.

pub mod follower;
pub mod leader;
pub mod manager;
pub mod session;
pub mod throttle;

use bytes::Bytes;

/// Why a call to another broker failed: the error of every inter-broker transport trait
/// (follower fetches here, transaction markers and verification in `txn`). The gRPC side
/// (`rpc::cluster::ClusterPeers`) builds it; callers log it and retry or move on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// This broker has no peers (a single broker).
    #[error("this broker has no peers (a single broker, or a test)")]
    NoPeers,
    /// No inter-broker address is known for the broker (not a quorum member yet).
    #[error("no inter-broker (gRPC) address known for broker {0}: it is not a member of the metadata quorum yet")]
    UnknownBroker(i32),
    /// The broker's address or id cannot make a channel (a bad advertised address, an id
    /// that names no TLS certificate).
    #[error("cannot make a channel to broker {broker}: {reason}")]
    Channel { broker: i32, reason: String },
    /// The call failed: the broker did not answer in time, refused the connection, or
    /// answered with a gRPC error (its code and message here).
    #[error("{call} to broker {broker} failed (gRPC status {code}): {message}")]
    Call {
        broker: i32,
        call: &'static str,
        code: i32,
        message: String,
    },
    /// The broker answered something this broker cannot use.
    #[error("{call} to broker {broker}: unusable answer: {reason}")]
    BadAnswer {
        broker: i32,
        call: &'static str,
        reason: String,
    },
}

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
    /// The topic id the follower's log records (0: none); a leader whose log records
    /// another id refuses with [`FetchRefusal::InconsistentTopicId`].
    pub topic_id: u128,
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
    /// The fetch session this request belongs to ([`session`]).
    pub session: SessionRequest,
}

/// A follower's fetch session fields (KIP-227's idea for replica fetches, see [`session`]).
/// All default (id 0, not `open`): a sessionless fetch, every partition named and answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionRequest {
    /// Open a new session holding the request's partitions (replacing the follower's
    /// previous one); the answer names its id.
    pub open: bool,
    /// The session of an incremental fetch (0: none).
    pub id: u64,
    /// The epoch the session expects next (1 after opening, then one more per fetch).
    pub epoch: u32,
    /// Partitions to drop from the session.
    pub forgotten: Vec<(String, i32)>,
}

/// Why a leader refused a session fetch: the follower opens a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// The leader has no such session for this follower (restarted, or replaced it).
    NotFound,
    /// The epoch is not the one the session expects (a request or answer was lost).
    InvalidEpoch,
}

/// The session part of a leader's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionAnswer {
    /// The session the follower is in after this answer (0: none, fetch sessionless).
    pub id: u64,
    pub error: Option<SessionError>,
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
    /// The leader's log belongs to another topic id than the follower's (Kafka's
    /// INCONSISTENT_TOPIC_ID): one of them holds a deleted topic's data.
    InconsistentTopicId,
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
    /// The topic id the leader's log records (0: none); a follower whose log records another
    /// id applies nothing of the answer.
    pub topic_id: u128,
}

/// A leader's answer to a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetchResponse {
    pub partitions: Vec<PartitionFetchResult>,
    pub session: SessionAnswer,
}
