//! DescribeTopicPartitions (key 75, KIP-966): topics with their ids and partitions, in name
//! order, at most `response_partition_limit` partitions per response (and never more than
//! [`MAX_PARTITIONS`], Kafka's `max.request.partition.size.limit` default). When partitions
//! are left over, `next_cursor` names the topic and partition to continue from; a request
//! carrying that cursor resumes there. An empty topic list means every topic (unknown names
//! are then impossible); a named topic that does not exist is UNKNOWN_TOPIC_OR_PARTITION, and
//! a cursor naming a topic outside a non-empty list is INVALID_REQUEST, as in Kafka. raftka
//! has no eligible leader replicas (KIP-966's ELR), so those lists are empty; offline replicas
//! are replicas on fenced or unregistered brokers.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::errors::code;
use super::{authorized_ops, authz, topic_ids, RequestContext};
use crate::metadata::{ClusterImage, TopicMeta};
use crate::metadata_source::MetadataSource;
use crate::security::acl::Operation;

/// The most partitions one response holds, whatever the request asks for.
pub const MAX_PARTITIONS: usize = 2000;

pub async fn handle(
    metadata: &MetadataSource,
    ctx: &RequestContext,
    req: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = metadata.image();
    let all = req.topics.is_empty();
    let describable = |name: &str| authz::topic(ctx, Operation::Describe, name);
    let mut names: Vec<String> = if all {
        // Listing everything shows only what the principal may DESCRIBE (as Metadata).
        image
            .topics
            .keys()
            .filter(|n| describable(n))
            .cloned()
            .collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let (start_topic, mut start_partition) = match &req.cursor {
        Some(c) => (Some(c.topic_name.0.to_string()), c.partition_index.max(0)),
        None => (None, 0),
    };
    if let Some(t) = &start_topic {
        if !all && !names.contains(t) {
            // Kafka refuses the whole request; its answer is the error on every topic.
            let topics = names
                .iter()
                .map(|n| error_topic(n, ResponseError::InvalidRequest))
                .collect();
            return DescribeTopicPartitionsResponse::default().with_topics(topics);
        }
        names.retain(|n| n >= t);
    }
    let mut budget = usize::try_from(req.response_partition_limit)
        .unwrap_or(0)
        .clamp(1, MAX_PARTITIONS);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for (i, name) in names.iter().enumerate() {
        let from = if Some(name) == start_topic.as_ref() {
            std::mem::take(&mut start_partition)
        } else {
            0
        };
        if !describable(name) {
            topics.push(error_topic(name, ResponseError::TopicAuthorizationFailed));
            continue;
        }
        let Some(t) = image.topics.get(name) else {
            topics.push(error_topic(name, ResponseError::UnknownTopicOrPartition));
            continue;
        };
        let total = t.partitions.len();
        let first = usize::try_from(from).unwrap_or(0).min(total);
        let end = (first + budget).min(total);
        topics.push(topic_entry(
            &image,
            t,
            first,
            end,
            authorized_ops::topic(ctx, name),
        ));
        budget -= end - first;
        if end < total {
            next_cursor = Some(cursor(name, end as i32));
            break;
        }
        if budget == 0 {
            // Exactly used up: continue with the next existing topic, if any.
            if let Some(next) = names[i + 1..].first() {
                next_cursor = Some(cursor(next, 0));
            }
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}

fn cursor(topic: &str, partition: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_index(partition)
}

fn error_topic(name: &str, e: ResponseError) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(code(e))
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_topic_id(Uuid::nil())
}

fn topic_entry(
    image: &ClusterImage,
    t: &TopicMeta,
    first: usize,
    end: usize,
    authorized_operations: i32,
) -> DescribeTopicPartitionsResponseTopic {
    let alive = |b: &i32| image.brokers.get(b).is_some_and(|m| !m.fenced);
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let partitions = t.partitions[first..end]
        .iter()
        .map(|p| {
            let offline: Vec<i32> = p.replicas.iter().copied().filter(|b| !alive(b)).collect();
            DescribeTopicPartitionsResponsePartition::default()
                .with_error_code(if p.leader < 0 {
                    code(ResponseError::LeaderNotAvailable)
                } else {
                    0
                })
                .with_partition_index(p.index)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_eligible_leader_replicas(Some(Vec::new()))
                .with_last_known_elr(Some(Vec::new()))
                .with_offline_replicas(ids(&offline))
        })
        .collect();
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
        .with_topic_id(topic_ids::of(t))
        .with_is_internal(authz::is_internal_topic(&t.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(authorized_operations)
}
