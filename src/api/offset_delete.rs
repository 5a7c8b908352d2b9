//! OffsetDelete (key 47): removes committed offsets of topics a group no longer consumes.
//! Offsets of topics its members still subscribe to are kept (GROUP_SUBSCRIBED_TO_TOPIC).

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;

use super::errors::{code, group_code, NONE};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::group::TopicPartition;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    if !authz::group(ctx, Operation::Delete, &req.group_id.0) {
        return OffsetDeleteResponse::default().with_error_code(authz::group_denied());
    }
    let image = broker.metadata.image();
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut deletable = Vec::new();
    let mut slots = Vec::new();
    for (ti, t) in req.topics.into_iter().enumerate() {
        let meta = image.topics.get(t.name.0.as_str());
        let readable = authz::topic(ctx, Operation::Read, &t.name.0);
        let mut parts = Vec::with_capacity(t.partitions.len());
        for (pi, p) in t.partitions.into_iter().enumerate() {
            let i = p.partition_index;
            if !readable {
                parts.push((i, authz::topic_denied()));
                continue;
            }
            let exists =
                meta.is_some_and(|m| usize::try_from(i).is_ok_and(|i| i < m.partitions.len()));
            if exists {
                slots.push((ti, pi));
                deletable.push(TopicPartition::new(t.name.0.as_str(), i));
                parts.push((i, NONE));
            } else {
                parts.push((i, code(ResponseError::UnknownTopicOrPartition)));
            }
        }
        topics.push((t.name, parts));
    }
    match broker
        .groups
        .delete_offsets(&req.group_id.0, deletable)
        .await
    {
        Ok(results) => {
            for ((ti, pi), (_, r)) in slots.into_iter().zip(results) {
                if let Err(e) = r {
                    topics[ti].1[pi].1 = group_code(&e);
                }
            }
        }
        Err(e) => return OffsetDeleteResponse::default().with_error_code(group_code(&e)),
    }
    OffsetDeleteResponse::default().with_topics(
        topics
            .into_iter()
            .map(|(name, parts)| {
                OffsetDeleteResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, e)| {
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(e)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
