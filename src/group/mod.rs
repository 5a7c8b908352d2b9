//! Consumer groups: the coordinator of Kafka's classic group protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup) and committed offsets.
//!
//! - [`state`]: one group's state machine (Empty → PreparingRebalance → CompletingRebalance →
//!   Stable, Dead). Pure apart from the one-shot channels that answer waiting Join/Sync
//!   requests; time is passed in, so tests drive it with tokio's paused clock.
//! - [`offsets`]: where committed offsets live ([`OffsetStore`]; on one broker a sled tree in
//!   the broker's database).
//! - [`coordinator`]: the groups this broker coordinates, the waits of Join/Sync requests,
//!   the sweeper that expires sessions and rebalance timeouts, and offset commit/fetch.
//! - [`subscription`]: reading topic names out of the consumer protocol's member metadata.
//!
//! Two seams connect it to the cluster: [`Placement`] says which broker coordinates a group
//! (on one broker always this one; in a cluster the leader of its `__consumer_offsets`
//! partition), and [`OffsetStore`] says where offsets are made durable (an fsynced sled tree
//! on one broker; the replicated offsets topic in a cluster). Group membership lives in
//! memory; in a cluster the coordinator also persists each group after every completed
//! rebalance and when it empties ([`group_records`], Kafka's GroupMetadata record), so a new
//! coordinator takes the group over as it was (same generation and members, no rebalance).
//! On one broker membership is rebuilt by rejoining after a restart.
//!
//! May depend on: `sled`, `tokio` (time, channels), `bytes`, the codec's consumer-protocol
//! messages. Not on `api`, `broker` or the network.

pub mod coordinator;
pub mod group_records;
pub mod messages;
pub mod offsets;
#[cfg(test)]
mod persist_tests;
pub mod records;
pub mod state;
pub mod subscription;
pub mod txn_offsets;

pub use coordinator::{GroupConfig, GroupCoordinator};
pub use offsets::{CommittedOffset, OffsetStore, SledOffsetStore, SyncFuture, TopicPartition};
pub use records::{OffsetRecord, OffsetsPartition};
pub use state::{GroupState, JoinRequest, JoinResponse, MemberRef, SyncRequest, SyncResponse};

/// Why a group operation failed; `api::errors::group_code` turns each into a Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the group id is not valid (it must not be empty)")]
    InvalidGroupId,
    #[error(
        "this broker is not the coordinator of group `{0}`; look it up again with FindCoordinator"
    )]
    NotCoordinator(String),
    #[error("the group coordinator is not available")]
    CoordinatorNotAvailable,
    #[error("the coordinator is loading the group's offsets; retry shortly")]
    CoordinatorLoadInProgress,
    #[error("the offsets were not replicated within offsets.commit.timeout.ms")]
    Timeout,
    #[error("`{0}` is not a member of the group")]
    UnknownMemberId(String),
    #[error("rejoin with the member id given in this response")]
    MemberIdRequired,
    #[error("generation {got} is not the group's current generation {current}")]
    IllegalGeneration { got: i32, current: i32 },
    #[error("the group is rebalancing; rejoin it")]
    RebalanceInProgress,
    #[error("the member's protocol type or protocols do not match the group's")]
    InconsistentGroupProtocol,
    #[error("session timeout {got} ms is outside the broker's range {min}-{max} ms")]
    InvalidSessionTimeout { got: i32, min: i32, max: i32 },
    #[error("static member `{0}` was replaced by a newer member with the same group.instance.id")]
    FencedInstanceId(String),
    #[error("the group has reached group.max.size ({0} members)")]
    GroupMaxSizeReached(usize),
    #[error("the group still has members")]
    NonEmptyGroup,
    #[error("group `{0}` does not exist")]
    GroupIdNotFound(String),
    #[error("the group's members are subscribed to this topic")]
    GroupSubscribedToTopic,
    #[error("offset metadata of {len} bytes exceeds offset.metadata.max.bytes ({max})")]
    OffsetMetadataTooLarge { len: usize, max: usize },
    #[error("cannot store committed offsets: {0}")]
    Storage(String),
    #[error("producer fenced: {0}")]
    InvalidProducerEpoch(String),
    #[error(
        "transactional offset commits need the __consumer_offsets topic, which a single \
         broker without a metadata quorum does not have"
    )]
    TransactionsUnsupported,
}

/// Which broker coordinates a group. On one broker that is always this broker; in a cluster
/// it is the leader of the group's `__consumer_offsets` partition.
pub trait Placement: Send + Sync {
    /// The node id of the coordinator of `group_id`, or `None` while there is none.
    fn coordinator_of(&self, group_id: &str) -> Option<i32>;
}

/// Every group is coordinated by one node (the single broker).
#[derive(Debug, Clone, Copy)]
pub struct LocalPlacement {
    pub node_id: i32,
}

impl Placement for LocalPlacement {
    fn coordinator_of(&self, _group_id: &str) -> Option<i32> {
        Some(self.node_id)
    }
}
