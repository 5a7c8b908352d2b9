//! OffsetCommit (key 8): stores a group's consumed positions. Members commit with their
//! generation; admin tools commit with generation -1 and no member id while the group is
//! Empty. Answered once the offsets are durable.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::errors::{code, group_code, NONE};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::group::coordinator::CommitRequest;
use crate::group::{CommittedOffset, MemberRef, TopicPartition};
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let v = ctx.api_version;
    let image = broker.metadata.image();
    // Per topic: (name, [(partition, error code)]); codes of committed partitions are
    // filled in after the commit, through `slots`.
    let mut topics: Vec<(_, Vec<(i32, i16)>)> = Vec::with_capacity(req.topics.len());
    let mut offsets = Vec::new();
    let mut slots = Vec::new();
    // READ on the group for the whole request, READ on each topic.
    let group_ok = authz::group(broker, ctx, Operation::Read, &req.group_id.0);
    for (ti, t) in req.topics.into_iter().enumerate() {
        let meta = image.topics.get(t.name.0.as_str());
        let denied = if !group_ok {
            Some(authz::group_denied())
        } else if !authz::topic(broker, ctx, Operation::Read, &t.name.0) {
            Some(authz::topic_denied())
        } else {
            None
        };
        let mut parts = Vec::with_capacity(t.partitions.len());
        for (pi, p) in t.partitions.into_iter().enumerate() {
            if let Some(error) = denied {
                parts.push((p.partition_index, error));
                continue;
            }
            let exists = meta.is_some_and(|m| {
                usize::try_from(p.partition_index).is_ok_and(|i| i < m.partitions.len())
            });
            if !exists {
                parts.push((
                    p.partition_index,
                    code(ResponseError::UnknownTopicOrPartition),
                ));
                continue;
            }
            parts.push((p.partition_index, NONE));
            slots.push((ti, pi));
            offsets.push((
                TopicPartition::new(t.name.0.as_str(), p.partition_index),
                CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: if v >= 6 { p.committed_leader_epoch } else { -1 },
                    metadata: p
                        .committed_metadata
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    // Only v1 carries a commit time; -1 means "now".
                    commit_timestamp: if v == 1 { p.commit_timestamp } else { -1 },
                },
            ));
        }
        topics.push((t.name, parts));
    }
    if !offsets.is_empty() {
        let commit = CommitRequest {
            group_id: req.group_id.0.to_string(),
            member: MemberRef {
                member_id: req.member_id.to_string(),
                group_instance_id: req.group_instance_id.map(|s| s.to_string()),
            },
            generation_id: req.generation_id_or_member_epoch,
            offsets,
        };
        let results = broker.groups.commit_offsets(commit).await;
        for ((ti, pi), (_, r)) in slots.into_iter().zip(results) {
            if let Err(e) = r {
                topics[ti].1[pi].1 = group_code(&e);
            }
        }
    }
    OffsetCommitResponse::default().with_topics(
        topics
            .into_iter()
            .map(|(name, parts)| {
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, e)| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(e)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
