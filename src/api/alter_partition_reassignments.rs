//! AlterPartitionReassignments (key 45, kafka-reassign-partitions.sh, KIP-455): starts,
//! replaces or (with null replicas) cancels the reassignment of named partitions. Each one is
//! a `MetadataCommand::AlterReassignment` committed through the metadata quorum and decided
//! when applied (`metadata::reassign`); the move itself then runs in the background (new
//! replicas catch up, join the ISR, the reassignment completes). Per partition Kafka's errors:
//! INVALID_REPLICA_ASSIGNMENT (empty list, a broker twice, an unregistered broker),
//! NO_REASSIGNMENT_IN_PROGRESS (cancel without one), UNKNOWN_TOPIC_OR_PARTITION. Needs ALTER
//! on the cluster, as in Kafka.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::{code, metadata_code};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::metadata::{check_record_count, MetadataCommand, MetadataError};
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    if !authz::cluster(ctx, Operation::Alter) {
        return AlterPartitionReassignmentsResponse::default()
            .with_error_code(code(ResponseError::ClusterAuthorizationFailed));
    }
    // One metadata command per partition: a request cannot commit more than a user op may.
    let count: u64 = req.topics.iter().map(|t| t.partitions.len() as u64).sum();
    if let Err(e) = check_record_count(count, broker.config.max_records_per_user_op) {
        return AlterPartitionReassignmentsResponse::default()
            .with_error_code(metadata_code(&e))
            .with_error_message(Some(StrBytes::from_string(e.to_string())));
    }
    let mut responses = Vec::with_capacity(req.topics.len());
    let mut changed = false;
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let target = p
                .replicas
                .map(|rs| rs.into_iter().map(|b| b.0).collect::<Vec<i32>>());
            let outcome = reassign(broker, &t.name.0, p.partition_index, target).await;
            changed |= outcome.is_ok();
            let mut r =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            if let Err(e) = outcome {
                r = r
                    .with_error_code(metadata_code(&e))
                    .with_error_message(Some(StrBytes::from_string(e.to_string())));
            }
            partitions.push(r);
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    if changed {
        // Take up the new roles here at once (other brokers follow the applied image).
        if let Err(e) = broker.sync_roles() {
            tracing::warn!(error = %e, "taking up roles after a reassignment failed");
        }
    }
    AlterPartitionReassignmentsResponse::default().with_responses(responses)
}

/// One reassignment through the metadata quorum; unknown partitions are refused without it.
async fn reassign(
    broker: &Broker,
    topic: &str,
    partition: i32,
    target: Option<Vec<i32>>,
) -> Result<(), MetadataError> {
    let image = broker.metadata.image();
    let known = image
        .topics
        .get(topic)
        .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len());
    if !known {
        return Err(MetadataError::UnknownTopic(format!("{topic}-{partition}")));
    }
    broker
        .metadata
        .submit(&MetadataCommand::AlterReassignment {
            topic: topic.to_string(),
            partition,
            target: target.clone(),
        })
        .await?;
    match target {
        Some(t) => tracing::info!(topic, partition, target = ?t, "partition reassignment started"),
        None => tracing::info!(topic, partition, "partition reassignment cancelled"),
    }
    Ok(())
}
