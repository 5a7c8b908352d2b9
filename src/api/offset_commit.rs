//! OffsetCommit (key 8): stores a group's consumed positions. Members commit with their
//! generation; admin tools commit with generation -1 and no member id while the group is
//! Empty. Answered once the offsets are durable.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::commit_plan::CommitPlan;
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::group::coordinator::CommitRequest;
use crate::group::{CommittedOffset, MemberRef};
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
    // READ on the group for the whole request, READ on each topic.
    let group_ok = authz::group(ctx, Operation::Read, &req.group_id.0);
    let mut plan = CommitPlan::new(
        &image,
        req.topics.into_iter().map(|t| (t.name, t.partitions)),
        |topic| {
            if !group_ok {
                Some(authz::group_denied())
            } else if !authz::topic(ctx, Operation::Read, topic) {
                Some(authz::topic_denied())
            } else {
                None
            }
        },
        |p| {
            (
                p.partition_index,
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
            )
        },
    );
    let offsets = plan.take_offsets();
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
        plan.apply(broker.groups.commit_offsets(commit).await);
    }
    OffsetCommitResponse::default().with_topics(
        plan.topics
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
