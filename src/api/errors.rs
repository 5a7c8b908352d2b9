//! The one place where internal errors become Kafka error codes.

use kafka_protocol::ResponseError as E;

use crate::broker::LeaderError;
use crate::group::GroupError;
use crate::log::{batch::BatchError, validate::RecordError, LogError};
use crate::metadata::MetadataError;
use crate::topics::TopicsError;

/// Kafka error codes of SASL and SCRAM credential management (newer or absent in the codec
/// crate's table under these names).
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub const ILLEGAL_SASL_STATE: i16 = 34;
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
pub const RESOURCE_NOT_FOUND: i16 = 91;
pub const DUPLICATE_RESOURCE: i16 = 92;
pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;

/// The Kafka error code for a metadata error.
pub fn metadata_code(e: &MetadataError) -> i16 {
    match e {
        MetadataError::TopicExists(_) => E::TopicAlreadyExists,
        MetadataError::UnknownTopic(_) => E::UnknownTopicOrPartition,
        MetadataError::InvalidTopicName { .. } => E::InvalidTopicException,
        MetadataError::InvalidPartitions(_) => E::InvalidPartitions,
        MetadataError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor,
        MetadataError::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment,
        MetadataError::InvalidConfig { .. } => E::InvalidConfig,
        MetadataError::UnknownBroker(_) => E::BrokerNotAvailable,
        MetadataError::FencedLeaderEpoch(_) => E::FencedLeaderEpoch,
        MetadataError::InvalidUpdateVersion(_) => E::InvalidUpdateVersion,
        MetadataError::StaleBrokerEpoch(_) => E::StaleBrokerEpoch,
        // INELIGIBLE_REPLICA (107) is newer than the codec crate's error table.
        MetadataError::IneligibleReplica(_) => E::Unknown(107),
        MetadataError::PolicyViolation(_) => E::PolicyViolation,
        MetadataError::ElectionNotNeeded(_) => E::ElectionNotNeeded,
        MetadataError::PreferredLeaderNotAvailable(_) => E::PreferredLeaderNotAvailable,
        MetadataError::EligibleLeadersNotAvailable(_) => E::EligibleLeadersNotAvailable,
        MetadataError::BrokerHostsReplicas { .. } => E::InvalidRequest,
        MetadataError::NoReassignmentInProgress(_) => E::NoReassignmentInProgress,
        MetadataError::QuorumUnavailable(_) => E::RequestTimedOut,
        MetadataError::Storage(_) => E::KafkaStorageError,
    }
    .code()
}

/// The Kafka error code for a topic admin error: a refusal answers as its metadata error; a
/// committed change this broker's logs or group offsets could not follow is a storage error.
pub fn topics_code(e: &TopicsError) -> i16 {
    match e {
        TopicsError::Metadata(e) => metadata_code(e),
        TopicsError::Log(_) | TopicsError::Groups(_) => E::KafkaStorageError.code(),
    }
}

/// The Kafka error code for a log error.
pub fn log_code(e: &LogError) -> i16 {
    match e {
        LogError::Batch(BatchError::TooLarge { .. }) => E::MessageTooLarge,
        LogError::Batch(BatchError::OldMagic(_)) => E::UnsupportedForMessageFormat,
        LogError::Batch(BatchError::ControlBatch) => E::InvalidRecord,
        LogError::Batch(BatchError::TransactionalWithoutProducerId) => E::InvalidRecord,
        LogError::Batch(BatchError::Invalid(_)) => E::InvalidRecord,
        LogError::Batch(_) => E::CorruptMessage,
        LogError::Records(RecordError::ZstdNeedsV7(_)) => E::UnsupportedCompressionType,
        LogError::Records(_) => E::InvalidRecord,
        LogError::OffsetOutOfRange { .. } => E::OffsetOutOfRange,
        LogError::OutOfOrderSequence { .. } => E::OutOfOrderSequenceNumber,
        LogError::InvalidProducerEpoch { .. } => E::InvalidProducerEpoch,
        LogError::CoordinatorFenced { .. } => E::TransactionCoordinatorFenced,
        LogError::InvalidTxnState { .. } | LogError::TxnNotVerified { .. } => E::InvalidTxnState,
        LogError::InconsistentTopicId { .. } => E::InconsistentTopicId,
        LogError::Storage(_)
        | LogError::Flush(_)
        | LogError::Corrupt(_)
        | LogError::NoSpace { .. } => E::KafkaStorageError,
    }
    .code()
}

/// The Kafka error code when a partition cannot be served here.
pub fn leader_code(e: LeaderError) -> i16 {
    match e {
        LeaderError::UnknownPartition => E::UnknownTopicOrPartition,
        LeaderError::NotLeader => E::NotLeaderOrFollower,
    }
    .code()
}

/// The Kafka error code for a group coordinator error.
pub fn group_code(e: &GroupError) -> i16 {
    match e {
        GroupError::InvalidGroupId => E::InvalidGroupId,
        GroupError::NotCoordinator(_) => E::NotCoordinator,
        GroupError::CoordinatorNotAvailable => E::CoordinatorNotAvailable,
        GroupError::CoordinatorLoadInProgress => E::CoordinatorLoadInProgress,
        GroupError::Timeout => E::RequestTimedOut,
        GroupError::UnknownMemberId(_) => E::UnknownMemberId,
        GroupError::MemberIdRequired => E::MemberIdRequired,
        GroupError::IllegalGeneration { .. } => E::IllegalGeneration,
        GroupError::RebalanceInProgress => E::RebalanceInProgress,
        GroupError::InconsistentGroupProtocol => E::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout { .. } => E::InvalidSessionTimeout,
        GroupError::FencedInstanceId(_) => E::FencedInstanceId,
        GroupError::GroupMaxSizeReached(_) => E::GroupMaxSizeReached,
        GroupError::NonEmptyGroup => E::NonEmptyGroup,
        GroupError::GroupIdNotFound(_) => E::GroupIdNotFound,
        GroupError::GroupSubscribedToTopic => E::GroupSubscribedToTopic,
        GroupError::OffsetMetadataTooLarge { .. } => E::OffsetMetadataTooLarge,
        // Retriable for clients, as Kafka answers when the offsets log cannot be written.
        GroupError::Storage(_) => E::CoordinatorNotAvailable,
        GroupError::InvalidProducerEpoch(_) => E::InvalidProducerEpoch,
        GroupError::TransactionsUnsupported => E::CoordinatorNotAvailable,
    }
    .code()
}

/// The error code of an optional group error (0 = none).
pub fn group_code_of(e: &Option<GroupError>) -> i16 {
    e.as_ref().map_or(NONE, group_code)
}

pub const NONE: i16 = 0;

pub fn code(e: E) -> i16 {
    e.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused topic operation answers as its metadata error; a committed change this
    /// broker's logs or group offsets could not follow is a storage error, whatever the lower
    /// error's own code would be (as when these failures were `MetadataError::Storage`).
    #[test]
    fn topics_errors_keep_their_kafka_codes() {
        let exists = TopicsError::from(MetadataError::TopicExists("t".into()));
        assert_eq!(topics_code(&exists), E::TopicAlreadyExists.code());
        let quorum = TopicsError::from(MetadataError::QuorumUnavailable("down".into()));
        assert_eq!(topics_code(&quorum), E::RequestTimedOut.code());
        let log = TopicsError::from(LogError::InconsistentTopicId {
            recorded: 1,
            expected: 2,
        });
        assert_eq!(topics_code(&log), E::KafkaStorageError.code());
        let corrupt = TopicsError::from(LogError::Corrupt("bad".into()));
        assert_eq!(topics_code(&corrupt), E::KafkaStorageError.code());
        let groups = TopicsError::from(GroupError::Storage("disk".into()));
        assert_eq!(topics_code(&groups), E::KafkaStorageError.code());
    }
}
