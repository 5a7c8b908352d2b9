//! Committed offsets in a cluster: the internal, replicated topic `__consumer_offsets`, as
//! Kafka keeps them.
//!
//! - [`OffsetsTopicPlacement`]: group G is coordinated by the current leader of partition
//!   `abs(hashCode(G)) % N` of `__consumer_offsets` (Java's `String.hashCode`, N = the topic's
//!   partition count); before the topic exists no broker coordinates (COORDINATOR_NOT_AVAILABLE)
//!   and FindCoordinator creates it ([`Topics::ensure_offsets_topic`](crate::topics::Topics::ensure_offsets_topic)).
//! - [`ReplicatedOffsetStore`]: OffsetCommit appends one record per offset (layout in
//!   `group::offsets`) to the group's partition as its leader, through the same
//!   [`PartitionWriter`](crate::writer::PartitionWriter) as Produce, and `sync` waits until they are flushed and the high
//!   watermark passes them (acks=all) within
//!   `offsets.commit.timeout.ms` (else REQUEST_TIMED_OUT). OffsetDelete, DeleteGroups and deleted
//!   topics append tombstones. Reads are served from an in-memory copy of each partition this
//!   broker leads.
//! - [`OffsetsLoader`]: the replica manager's role listener. On becoming leader of an offsets
//!   partition it marks the partition loading (requests for its groups answer
//!   COORDINATOR_LOAD_IN_PROGRESS), replays the partition's log from its start to its end and
//!   hands the groups found to the coordinator (those with a group-metadata record are taken
//!   over as persisted: `group::group_records`); on losing leadership it drops the partition and
//!   its groups (NOT_COORDINATOR from then on).
//!
//! One file a part: `placement.rs`, `store.rs`, `loader.rs`; transactional offset commits
//! (TxnOffsetCommit) and the transaction markers that end them live in `txn.rs`.
//!
//! The loader reads to the log end, not only to the high watermark: the leader's log is the
//! partition's truth (followers truncate to it, it is never truncated while it leads), so a
//! commit above the high watermark will be committed as followers catch up — and every
//! acknowledged commit is below it anyway.
//!
//! May depend on: `group`, `log`, `writer`, `replication` (the role listener), `metadata`, `raft`
//! (the applied image channel),
//! the codec's record batches. Not on `api` or the network.

pub mod loader;
pub mod placement;
pub mod store;
pub mod txn;

pub use loader::OffsetsLoader;
pub use placement::{java_string_hash, partition_for, OffsetsTopicPlacement};
pub use store::{build_batch, load_partition, ReplicatedOffsetStore};

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
