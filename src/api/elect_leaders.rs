//! ElectLeaders (key 43, kafka-leader-election.sh, KIP-460): preferred or unclean leader
//! elections for named partitions, or for every partition when `topic_partitions` is null.
//!
//! Each election is one `MetadataCommand::ElectLeader` committed through the metadata quorum
//! (a broker that is not the controller forwards it, as for every admin request) and decided
//! when applied, against the image of that moment (`metadata::election`): preferred needs the
//! first replica alive and in the ISR; unclean elects from the ISR when a member is alive and
//! only otherwise from outside it. Per partition the answer is Kafka's: ELECTION_NOT_NEEDED,
//! PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION.
//! Asked for every partition, partitions that need no election are left out of the answer,
//! as Kafka's controller does. v0 has no election type (preferred).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::{code, metadata_code};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::metadata::election::{self, ElectionType};
use crate::metadata::{MetadataCommand, MetadataError};
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: ElectLeadersRequest,
) -> ElectLeadersResponse {
    // Kafka: ALTER on the cluster; v0 has no top-level error, so every partition gets it.
    if !authz::cluster(ctx, Operation::Alter) {
        let denied = code(ResponseError::ClusterAuthorizationFailed);
        if ctx.api_version >= 1 {
            return ElectLeadersResponse::default().with_error_code(denied);
        }
        let results = req
            .topic_partitions
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                ReplicaElectionResult::default()
                    .with_partition_result(
                        t.partitions
                            .iter()
                            .map(|p| {
                                PartitionResult::default()
                                    .with_partition_id(*p)
                                    .with_error_code(denied)
                            })
                            .collect(),
                    )
                    .with_topic(t.topic)
            })
            .collect();
        return ElectLeadersResponse::default().with_replica_election_results(results);
    }
    let kind = if ctx.api_version == 0 {
        Some(ElectionType::Preferred)
    } else {
        ElectionType::from_wire(req.election_type)
    };
    let Some(kind) = kind else {
        return ElectLeadersResponse::default()
            .with_error_code(code(ResponseError::InvalidRequest));
    };
    let image = broker.metadata.image();
    // (topic, partitions) to elect; `all` leaves out partitions needing no election.
    let all = req.topic_partitions.is_none();
    let wanted: Vec<(TopicName, Vec<i32>)> = match req.topic_partitions {
        // Kafka reads the request as a set: a partition named twice is elected (and
        // answered) once, so a request cannot multiply metadata commits.
        Some(tps) => {
            let mut merged: BTreeMap<TopicName, BTreeSet<i32>> = BTreeMap::new();
            for t in tps {
                merged.entry(t.topic).or_default().extend(t.partitions);
            }
            merged
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().collect()))
                .collect()
        }
        None => image
            .topics
            .values()
            .map(|t| {
                let parts = t
                    .partitions
                    .iter()
                    .filter(|p| election::needed(p, kind))
                    .map(|p| p.index)
                    .collect();
                (TopicName(StrBytes::from_string(t.name.clone())), parts)
            })
            .filter(|(_, parts): &(TopicName, Vec<i32>)| !parts.is_empty())
            .collect(),
    };
    let mut results = Vec::with_capacity(wanted.len());
    let mut elected = false;
    for (topic, partitions) in wanted {
        let mut partition_result = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let outcome = elect(broker, &topic.0, partition, kind).await;
            elected |= outcome.is_ok();
            if all && matches!(outcome, Err(MetadataError::ElectionNotNeeded(_))) {
                continue;
            }
            let mut r = PartitionResult::default().with_partition_id(partition);
            if let Err(e) = outcome {
                r = r
                    .with_error_code(metadata_code(&e))
                    .with_error_message(Some(StrBytes::from_string(e.to_string())));
            }
            partition_result.push(r);
        }
        if !partition_result.is_empty() || !all {
            results.push(
                ReplicaElectionResult::default()
                    .with_topic(topic)
                    .with_partition_result(partition_result),
            );
        }
    }
    if elected {
        // Take up the new roles here at once (other brokers follow the applied image).
        if let Err(e) = broker.sync_roles() {
            tracing::warn!(error = %e, "taking up roles after an election failed");
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}

/// One election through the metadata quorum; unknown partitions are refused without it.
async fn elect(
    broker: &Broker,
    topic: &str,
    partition: i32,
    kind: ElectionType,
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
        .submit(&MetadataCommand::ElectLeader {
            topic: topic.to_string(),
            partition,
            election: kind,
        })
        .await?;
    tracing::info!(topic, partition, election = ?kind, "leader elected on request");
    Ok(())
}
