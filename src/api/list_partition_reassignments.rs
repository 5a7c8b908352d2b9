//! ListPartitionReassignments (key 46, KIP-455): the partitions being reassigned, each with
//! its replica set during the move (the union, target first) and the replicas being added and
//! removed. Without topics every moving partition; with topics the named ones that are moving
//! (unknown or idle partitions are left out, as Kafka's controller does). Needs DESCRIBE on
//! the cluster, as in Kafka.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::code;
use super::{authz, RequestContext};
use crate::metadata::{reassign, PartitionMeta};
use crate::metadata_source::MetadataSource;
use crate::security::acl::Operation;

pub async fn handle(
    metadata: &MetadataSource,
    ctx: &RequestContext,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !authz::cluster(ctx, Operation::Describe) {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(code(ResponseError::ClusterAuthorizationFailed));
    }
    let image = metadata.image();
    // None: every topic; otherwise the named partitions.
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|topics| {
        let mut m: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for t in topics {
            m.entry(t.name.0.to_string())
                .or_default()
                .extend(t.partition_indexes);
        }
        m
    });
    let mut topics = Vec::new();
    for t in image.topics.values() {
        let named = wanted.as_ref().map(|w| w.get(&t.name));
        if matches!(named, Some(None)) {
            continue;
        }
        let partitions: Vec<OngoingPartitionReassignment> = t
            .partitions
            .iter()
            .filter(|p| reassign::in_progress(p))
            .filter(|p| named.flatten().is_none_or(|ps| ps.contains(&p.index)))
            .map(ongoing)
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

fn ongoing(p: &PartitionMeta) -> OngoingPartitionReassignment {
    let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect::<Vec<_>>();
    OngoingPartitionReassignment::default()
        .with_partition_index(p.index)
        .with_replicas(ids(&p.replicas))
        .with_adding_replicas(ids(&p.adding))
        .with_removing_replicas(ids(&p.removing))
}
