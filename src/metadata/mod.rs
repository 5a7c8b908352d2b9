//! Cluster metadata: brokers, topics, partitions (replicas, leader, leader epoch, ISR) and
//! topic configs. Handlers read an immutable [`ClusterImage`] snapshot; changes are
//! [`MetadataCommand`]s applied by [`ClusterImage::apply`] — the state-machine shape the
//! Raft quorum will feed — and persisted by [`MetadataStore`].
//!
//! Reads are local and may lag a concurrent change by one command; every handler that
//! changes metadata goes through the store, which serialises commands.
//!
//! May depend on: `config` (defaults), `sled`, `serde`. Not on the network or the log.

pub mod config_ops;
pub mod controller;
pub mod election;
pub mod image;
pub mod reassign;
pub mod store;
pub mod topic_config;
pub mod topic_id;

pub use image::{BrokerMeta, ClusterImage, Endpoint, MetadataCommand, PartitionMeta, TopicMeta};
pub use store::{MetadataStore, StoreError};

/// Errors of the metadata layer; `api::errors` maps them to Kafka error codes. Serializable
/// because a command the Raft state machine rejects carries its error back to the submitter
/// as data (possibly over gRPC from the leader).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MetadataError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("invalid value for config '{key}': {reason}")]
    InvalidConfig { key: String, reason: String },
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    #[error("stale leader epoch: {0}")]
    FencedLeaderEpoch(String),
    #[error("ineligible replica: {0}")]
    IneligibleReplica(String),
    /// A decision about a broker process that has since restarted (Kafka's broker epoch).
    #[error("stale broker incarnation: {0}")]
    StaleBrokerEpoch(String),
    #[error("stale partition epoch: {0}")]
    InvalidUpdateVersion(String),
    /// The request is larger than a broker limit (Kafka's POLICY_VIOLATION).
    #[error("{0}")]
    PolicyViolation(String),
    /// ElectLeaders: the partition already has the leader the election would give it.
    #[error("election not needed: {0}")]
    ElectionNotNeeded(String),
    #[error("preferred leader not available: {0}")]
    PreferredLeaderNotAvailable(String),
    #[error("no eligible leader: {0}")]
    EligibleLeadersNotAvailable(String),
    /// UnregisterBroker of a broker that is still a replica somewhere.
    #[error(
        "broker {id} still hosts {partitions} partition replica(s) (e.g. {first}): reassign \
         them to other brokers first (AlterPartitionReassignments, `raftka admin decommission`)"
    )]
    BrokerHostsReplicas {
        id: i32,
        partitions: usize,
        first: String,
    },
    /// Cancelling a partition reassignment when none runs.
    #[error("no reassignment in progress: {0}")]
    NoReassignmentInProgress(String),
    #[error("the metadata quorum is unavailable: {0}")]
    QuorumUnavailable(String),
    #[error("metadata storage error: {0}")]
    Storage(String),
}

impl From<sled::Error> for MetadataError {
    fn from(e: sled::Error) -> Self {
        MetadataError::Storage(e.to_string())
    }
}

/// Kafka's controller's answer to a request that would create too many records at once.
pub const EXCESSIVE_BATCH: &str = "Unable to perform excessively large batch operation.";

/// Refuses an operation that would create `records` metadata records when the broker allows
/// `max` (`max.records.per.user.op`). Callers check this before placing any replica, so a
/// request's declared partition count never sizes an allocation.
pub fn check_record_count(records: u64, max: usize) -> Result<(), MetadataError> {
    if records > max as u64 {
        return Err(MetadataError::PolicyViolation(EXCESSIVE_BATCH.to_string()));
    }
    Ok(())
}

/// Kafka's topic name rule: 1-249 characters from `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), MetadataError> {
    let bad = |reason: &str| {
        Err(MetadataError::InvalidTopicName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("the name is empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if name.len() > 249 {
        return bad("longer than 249 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("quickstart-events").is_ok());
        assert!(validate_topic_name("a.b_c-1").is_ok());
        for bad in ["", ".", "..", "bad name!", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}
