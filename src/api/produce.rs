//! Produce (key 0): validate each partition's batches, append them to the leader's log,
//! answer with the base offset. acks=0 requests are processed the same way but the caller
//! sends no response. On a single replica the high watermark moves with the append, so
//! acks=1 and acks=all are answered at the same point.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::{code, leader_code, log_code, metadata_code};
use super::RequestContext;
use crate::broker::Broker;
use crate::log::batch::split_batches;
use crate::metadata::{validate_topic_name, TopicMeta};

pub async fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    req: ProduceRequest,
) -> ProduceResponse {
    let acks_ok = matches!(req.acks, -1..=1);
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut appended = false;
    for topic_data in req.topic_data {
        let name = topic_data.name.0.to_string();
        let topic = if acks_ok {
            resolve_topic(broker, &name)
        } else {
            Err(0)
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for pd in topic_data.partition_data {
            let base = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1);
            let result = match (&topic, acks_ok) {
                (_, false) => Err((code(ResponseError::InvalidRequiredAcks), None)),
                (Err(e), _) => Err((*e, None)),
                (Ok(t), true) => append(broker, t, pd.index, req.acks, pd.records),
            };
            partitions.push(match result {
                Ok((base_offset, log_start, wrote)) => {
                    appended |= wrote;
                    base.with_base_offset(base_offset)
                        .with_log_start_offset(log_start)
                }
                Err((error, message)) => base
                    .with_error_code(error)
                    .with_error_message(message.map(StrBytes::from_string)),
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partitions),
        );
    }
    if appended {
        if let Err(e) = broker.logs.after_append().await {
            // The data is in sled but could not be made durable as configured: fail the
            // partitions that were appended so clients retry (idempotence dedupes them).
            tracing::error!(error = %e, "flush after produce failed");
            for t in &mut responses {
                for p in &mut t.partition_responses {
                    if p.error_code == 0 {
                        p.error_code = code(ResponseError::KafkaStorageError);
                    }
                }
            }
        }
    }
    ProduceResponse::default().with_responses(responses)
}

fn resolve_topic(broker: &Broker, name: &str) -> Result<TopicMeta, i16> {
    if let Some(t) = broker.metadata.image().topics.get(name) {
        return Ok(t.clone());
    }
    validate_topic_name(name).map_err(|e| metadata_code(&e))?;
    if !broker.config.auto_create_topics {
        return Err(code(ResponseError::UnknownTopicOrPartition));
    }
    broker.auto_create(name).map_err(|e| metadata_code(&e))
}

type PartitionResult = Result<(i64, i64, bool), (i16, Option<String>)>;

fn append(
    broker: &Broker,
    topic: &TopicMeta,
    partition: i32,
    acks: i16,
    records: Option<bytes::Bytes>,
) -> PartitionResult {
    let (meta, log) = broker
        .leader_log(topic, partition)
        .map_err(|e| (leader_code(e), None))?;
    let max = broker
        .topic_config_value(topic, "max.message.bytes")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(broker.config.message_max_bytes as usize);
    if acks == -1 {
        let min_isr = broker
            .topic_config_value(topic, "min.insync.replicas")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1);
        if meta.isr.len() < min_isr {
            return Err((
                code(ResponseError::NotEnoughReplicas),
                Some(format!(
                    "ISR has {} replicas, min.insync.replicas is {min_isr}",
                    meta.isr.len()
                )),
            ));
        }
    }
    let records = records.unwrap_or_default();
    let batches = split_batches(&records, max).map_err(|e| {
        let e = crate::log::LogError::from(e);
        (log_code(&e), Some(e.to_string()))
    })?;
    let out = log
        .append(&batches, meta.leader_epoch)
        .map_err(|e| (log_code(&e), Some(e.to_string())))?;
    if out.duplicate {
        tracing::debug!(topic = %topic.name, partition, base = out.base_offset, "duplicate batch answered from producer state");
    }
    Ok((out.base_offset, out.log_start, !out.duplicate))
}
