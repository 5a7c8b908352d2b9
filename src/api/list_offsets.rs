//! ListOffsets (key 2): earliest (-2), latest (-1) and by-timestamp lookups; v7+ the record
//! with the largest timestamp (-3, KIP-734); v8+ earliest-local (-4, KIP-405: the log start,
//! every record is local) and v9+ latest-tiered (-5, KIP-1005: offset -1 and timestamp -1,
//! Kafka's answer when the topic has no tiered storage). With `isolation_level` 1
//! (read_committed, v2+) latest is the last stable offset, and a record found by timestamp
//! (or max timestamp) at or above it is not answered (offset -1), as in Kafka. v0 answers in the old "offsets
//! array" form.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::errors::{code, leader_code, log_code};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::security::acl::Operation;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let v = ctx.api_version;
    let image = broker.metadata.image();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = image.topics.get(t.name.0.as_str());
        let describable = authz::topic(ctx, Operation::Describe, &t.name.0);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let result = match topic {
                _ if !describable => Err(code(ResponseError::TopicAuthorizationFailed)),
                None => Err(code(ResponseError::UnknownTopicOrPartition)),
                Some(topic) => lookup(
                    broker,
                    topic,
                    p.partition_index,
                    p.timestamp,
                    p.current_leader_epoch,
                    v,
                    v >= 2 && req.isolation_level == 1,
                ),
            };
            partitions.push(match result {
                Err(e) => base.with_error_code(e),
                Ok((offset, ts, epoch)) if v == 0 => {
                    let _ = (ts, epoch);
                    base.with_old_style_offsets(if offset >= 0 { vec![offset] } else { vec![] })
                }
                Ok((offset, ts, epoch)) => {
                    let r = base.with_offset(offset).with_timestamp(ts);
                    if v >= 4 {
                        r.with_leader_epoch(epoch)
                    } else {
                        r
                    }
                }
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// Returns (offset, timestamp, leader epoch) for one partition.
#[allow(clippy::too_many_arguments)]
fn lookup(
    broker: &Broker,
    topic: &crate::metadata::TopicMeta,
    partition: i32,
    timestamp: i64,
    current_leader_epoch: i32,
    version: i16,
    read_committed: bool,
) -> Result<(i64, i64, i32), i16> {
    let (meta, log) = broker.leader_log(topic, partition).map_err(leader_code)?;
    if version >= 4 && current_leader_epoch >= 0 {
        if current_leader_epoch < meta.leader_epoch {
            return Err(code(ResponseError::FencedLeaderEpoch));
        }
        if current_leader_epoch > meta.leader_epoch {
            return Err(code(ResponseError::UnknownLeaderEpoch));
        }
    }
    let o = log.offsets();
    // Lookups by timestamp answer only what a consumer of this isolation level may read.
    let readable = |found: Option<(i64, i64)>| {
        found.filter(|(offset, _)| !read_committed || *offset < log.last_stable_offset())
    };
    match timestamp {
        LATEST if read_committed => Ok((log.last_stable_offset(), -1, meta.leader_epoch)),
        LATEST => Ok((o.high_watermark, -1, meta.leader_epoch)),
        EARLIEST | EARLIEST_LOCAL => Ok((o.log_start, -1, meta.leader_epoch)),
        MAX_TIMESTAMP => match readable(log.max_timestamp_offset().map_err(|e| log_code(&e))?) {
            Some((offset, ts)) => Ok((offset, ts, meta.leader_epoch)),
            None => Ok((-1, -1, -1)),
        },
        // Nothing is tiered: Kafka answers "no offset" without an error.
        LATEST_TIERED => Ok((-1, -1, -1)),
        ts if ts >= 0 => match readable(log.offset_for_timestamp(ts).map_err(|e| log_code(&e))?) {
            Some((offset, found_ts)) => Ok((offset, found_ts, meta.leader_epoch)),
            // No record that new: Kafka answers offset -1, timestamp -1.
            None => Ok((-1, -1, -1)),
        },
        _ => Err(code(ResponseError::UnsupportedVersion)),
    }
}
