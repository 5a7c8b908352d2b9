//! DescribeProducers (key 61, KIP-664): the producers with state in each requested partition
//! this broker leads — id, epoch, last sequence, last timestamp, the coordinator epoch of
//! their last transaction marker and the first offset of their open transaction (-1: none).
//! What `kafka-transactions.sh describe-producers` and `find-hanging` read.
//!
//! Authorization as in Kafka: READ on the topic (TOPIC_AUTHORIZATION_FAILED); a partition
//! not led here answers NOT_LEADER_OR_FOLLOWER, an unknown one UNKNOWN_TOPIC_OR_PARTITION.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};
use kafka_protocol::ResponseError;

use super::errors::{code, leader_code};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let image = broker.metadata.image();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let readable = authz::topic(ctx, Operation::Read, &t.name.0);
            let meta = image.topics.get(t.name.0.as_str());
            let partitions = t
                .partition_indexes
                .into_iter()
                .map(|p| {
                    let base = PartitionResponse::default().with_partition_index(p);
                    if !readable {
                        return base.with_error_code(authz::topic_denied());
                    }
                    let Some(meta) = meta else {
                        return base.with_error_code(code(ResponseError::UnknownTopicOrPartition));
                    };
                    match broker.leader_log(meta, p) {
                        Err(e) => base.with_error_code(leader_code(e)),
                        Ok((_, log)) => base.with_active_producers(
                            log.producers()
                                .into_iter()
                                .map(|(id, e)| {
                                    ProducerState::default()
                                        .with_producer_id(id.into())
                                        .with_producer_epoch(i32::from(e.epoch))
                                        .with_last_sequence(e.last_sequence())
                                        .with_last_timestamp(e.last_timestamp)
                                        .with_coordinator_epoch(e.coordinator_epoch)
                                        .with_current_txn_start_offset(
                                            e.txn_first_offset.unwrap_or(-1),
                                        )
                                })
                                .collect(),
                        ),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
