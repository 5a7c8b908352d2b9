//! DeleteRecords (key 21, kafka-delete-records.sh): moves a partition's log start offset on
//! its leader and deletes the batches wholly below it. Offset -1 means the high watermark;
//! an offset above the high watermark is OFFSET_OUT_OF_RANGE. Followers delete below the new
//! log start on their next fetch. The answer's low watermark is the leader's new log start
//! (Kafka waits until every replica has reached it; see docs/ARCHITECTURE.md).

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use super::errors::{code, leader_code, log_code};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::metadata::TopicMeta;
use crate::security::acl::Operation;

const HIGH_WATERMARK: i64 = -1;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let image = broker.metadata.image();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = image.topics.get(t.name.0.as_str());
        let deletable = authz::topic(ctx, Operation::Delete, &t.name.0);
        let partitions = t
            .partitions
            .iter()
            .map(|p| {
                let base = DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(-1);
                match topic {
                    _ if !deletable => base.with_error_code(authz::topic_denied()),
                    None => base.with_error_code(code(ResponseError::UnknownTopicOrPartition)),
                    Some(topic) => match delete(broker, topic, p.partition_index, p.offset) {
                        Ok(low) => base.with_low_watermark(low),
                        Err(e) => base.with_error_code(e),
                    },
                }
            })
            .collect();
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Deletes below `offset` in one partition this broker leads; returns the new log start.
fn delete(broker: &Broker, topic: &TopicMeta, partition: i32, offset: i64) -> Result<i64, i16> {
    let (meta, log) = broker.leader_log(topic, partition).map_err(leader_code)?;
    if !broker
        .replication
        .is_leading(&topic.name, partition, meta.leader_epoch)
    {
        return Err(code(ResponseError::NotLeaderOrFollower));
    }
    let o = log.offsets();
    let target = match offset {
        HIGH_WATERMARK => o.high_watermark,
        x if x < 0 || x > o.high_watermark => return Err(code(ResponseError::OffsetOutOfRange)),
        x => x,
    };
    log.advance_log_start(target).map_err(|e| log_code(&e))?;
    if target > o.log_start {
        tracing::info!(topic = %topic.name, partition, log_start = target, "records deleted (DeleteRecords)");
        // Give the disk space back now: the disk may be full, and this is how space is freed.
        broker.logs.release_space_soon();
    }
    Ok(log.offsets().log_start)
}
