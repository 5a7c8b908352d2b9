//! OffsetFetch (key 9): a group's committed offsets. v0-7 ask for one group, v8+ for several;
//! null topics (v2+) mean every committed offset of the group. Partitions without a commit
//! answer offset -1. With `require_stable` (v7+) a partition with transactional offsets
//! still waiting for their transaction answers UNSTABLE_OFFSET_COMMIT, as in Kafka (clients
//! retry until the transaction ends).

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use kafka_protocol::ResponseError;

use super::errors::{code, group_code, NONE};
use super::{authz, RequestContext};
use crate::group::coordinator::TopicOffsets;
use crate::group::GroupCoordinator;
use crate::group::{CommittedOffset, TopicPartition};
use crate::security::acl::Operation;

/// One partition's answer: (partition, offset, leader epoch, metadata, error).
type Row = (i32, i64, i32, String, i16);

pub async fn handle(
    groups: &GroupCoordinator,
    ctx: &RequestContext,
    req: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let v = ctx.api_version;
    let stable = v >= 7 && req.require_stable;
    if v >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match fetch(groups, ctx, &g.group_id.0, topics, stable) {
                    Ok(rows) => group.with_topics(
                        rows.into_iter()
                            .map(|(name, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(StrBytes::from_string(name)))
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(p, o, e, m, err)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(e)
                                                    .with_metadata(Some(StrBytes::from_string(m)))
                                                    .with_error_code(err)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                    Err(code) => group.with_error_code(code),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let requested: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let (rows, error) = match fetch(groups, ctx, &req.group_id.0, requested.clone(), stable) {
        Ok(rows) => (rows, NONE),
        // v0-1 have no top-level error: every requested partition carries it.
        Err(code) if v < 2 => (
            requested
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().map(|p| no_offset(p, code)).collect()))
                .collect(),
            NONE,
        ),
        Err(code) => (Vec::new(), code),
    };
    let topics = rows
        .into_iter()
        .map(|(name, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, o, e, m, err)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_leader_epoch(if v >= 5 { e } else { -1 })
                                .with_metadata(Some(StrBytes::from_string(m)))
                                .with_error_code(err)
                        })
                        .collect(),
                )
        })
        .collect();
    let resp = OffsetFetchResponse::default().with_topics(topics);
    if v >= 2 {
        resp.with_error_code(error)
    } else {
        resp
    }
}

fn no_offset(partition: i32, error: i16) -> Row {
    (partition, -1, -1, String::new(), error)
}

/// A group's offsets as rows, or the group-level error code. Needs DESCRIBE on the group
/// (else GROUP_AUTHORIZATION_FAILED); topics the principal may not DESCRIBE are left out of
/// an all-topics fetch and answered TOPIC_AUTHORIZATION_FAILED when named, as in Kafka.
fn fetch(
    groups: &GroupCoordinator,
    ctx: &RequestContext,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<Vec<(String, Vec<Row>)>, i16> {
    if !authz::group(ctx, Operation::Describe, group_id) {
        return Err(authz::group_denied());
    }
    let named = topics.is_some();
    let found: Vec<TopicOffsets> = groups
        .fetch_offsets(group_id, topics)
        .map_err(|e| group_code(&e))?;
    let unstable = if require_stable {
        groups
            .pending_txn_offsets(group_id)
            .map_err(|e| group_code(&e))?
    } else {
        Vec::new()
    };
    Ok(found
        .into_iter()
        .filter_map(|(topic, parts)| {
            if authz::topic(ctx, Operation::Describe, &topic) {
                Some((topic, parts, None))
            } else {
                named.then_some((topic, parts, Some(authz::topic_denied())))
            }
        })
        .map(|(topic, parts, denied)| {
            if let Some(error) = denied {
                let rows = parts
                    .into_iter()
                    .map(|(p, _)| no_offset(p, error))
                    .collect();
                return (topic, rows);
            }
            let rows = parts
                .into_iter()
                .map(|(p, o)| match o {
                    _ if unstable.contains(&TopicPartition::new(&topic, p)) => {
                        no_offset(p, code(ResponseError::UnstableOffsetCommit))
                    }
                    Some(CommittedOffset {
                        offset,
                        leader_epoch,
                        metadata,
                        ..
                    }) => (p, offset, leader_epoch, metadata, NONE),
                    None => no_offset(p, NONE),
                })
                .collect();
            (topic, rows)
        })
        .collect())
}
