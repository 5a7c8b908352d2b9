//! TxnOffsetCommit (key 28, KIP-98/447): a transactional producer commits a group's offsets
//! inside its transaction (`send_offsets_to_transaction`). The offsets are written to the
//! group's `__consumer_offsets` partition as a transactional batch of the producer and stay
//! pending — invisible to OffsetFetch — until the transaction's commit marker lands there;
//! an abort drops them (`offsets_topic::txn`). v3 adds the member id, generation and group
//! instance id, checked as Kafka does (`group::state::txn`).
//!
//! Authorization as in Kafka: WRITE on the transactional id
//! (TRANSACTIONAL_ID_AUTHORIZATION_FAILED), READ on the group (GROUP_AUTHORIZATION_FAILED),
//! READ on each topic (TOPIC_AUTHORIZATION_FAILED).

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::commit_plan::CommitPlan;
use super::errors::code;
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::group::coordinator::txn::TxnCommitRequest;
use crate::group::{CommittedOffset, MemberRef};
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let v = ctx.api_version;
    let image = broker.metadata.image();
    let denied_all = if !authz::transactional_id(ctx, Operation::Write, &req.transactional_id.0) {
        Some(code(ResponseError::TransactionalIdAuthorizationFailed))
    } else if !authz::group(ctx, Operation::Read, &req.group_id.0) {
        Some(authz::group_denied())
    } else {
        None
    };
    let mut plan = CommitPlan::new(
        &image,
        req.topics.into_iter().map(|t| (t.name, t.partitions)),
        |topic| {
            denied_all
                .or_else(|| (!authz::topic(ctx, Operation::Read, topic)).then(authz::topic_denied))
        },
        |p| {
            (
                p.partition_index,
                CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: if v >= 2 { p.committed_leader_epoch } else { -1 },
                    metadata: p
                        .committed_metadata
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    commit_timestamp: -1,
                },
            )
        },
    );
    let offsets = plan.take_offsets();
    if !offsets.is_empty() {
        let commit = TxnCommitRequest {
            group_id: req.group_id.0.to_string(),
            producer_id: req.producer_id.0,
            producer_epoch: req.producer_epoch,
            member: MemberRef {
                member_id: if v >= 3 {
                    req.member_id.to_string()
                } else {
                    String::new()
                },
                group_instance_id: if v >= 3 {
                    req.group_instance_id.map(|s| s.to_string())
                } else {
                    None
                },
            },
            generation_id: if v >= 3 { req.generation_id } else { -1 },
            offsets,
        };
        plan.apply(broker.groups.commit_txn_offsets(commit).await);
    }
    TxnOffsetCommitResponse::default().with_topics(
        plan.topics
            .into_iter()
            .map(|(name, parts)| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, e)| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(e)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
