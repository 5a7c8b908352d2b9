//! Produce (key 0): validate each partition's batches, append them to the leader's log,
//! answer with the base offset. acks=0 requests are processed the same way but the caller
//! sends no response; acks=1 is answered after the leader's append; acks=all after the high
//! watermark passes the appended records (all in-sync replicas have them), honouring
//! `min.insync.replicas` (NOT_ENOUGH_REPLICAS before appending, NOT_ENOUGH_REPLICAS_AFTER_APPEND
//! when the ISR shrank below it while waiting) and the request's timeout (REQUEST_TIMED_OUT).

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::{code, leader_code, log_code, metadata_code};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::log::batch::with_log_append_time;
use crate::log::validate::{produced_batches, ProduceRules, RecordError};
use crate::log::LogError;
use crate::log::PartitionLog;
use crate::metadata::{validate_topic_name, TopicMeta};

pub async fn handle(broker: &Broker, ctx: &RequestContext, req: ProduceRequest) -> ProduceResponse {
    let acks_ok = matches!(req.acks, -1..=1);
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut appended = false;
    // (topic index, partition index, log, log end after the append) for acks=all waits.
    let mut waits: Vec<Wait> = Vec::new();
    let txn_denied = authz::produce_transactional_id_denied(broker, ctx, &req);
    for topic_data in req.topic_data {
        let name = topic_data.name.0.to_string();
        let topic = if let Some(denied) = txn_denied {
            Err(denied)
        } else if acks_ok {
            resolve_topic(broker, ctx, &name).await
        } else {
            Err(0)
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for pd in topic_data.partition_data {
            let base = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1);
            let bytes = pd.records.as_ref().map_or(0, |r| r.len() as u64);
            let result = match (&topic, acks_ok) {
                (_, false) => Err(Refused::code(ResponseError::InvalidRequiredAcks)),
                (Err(e), _) => Err(Refused::new(*e, None)),
                (Ok(t), true) => append(broker, t, pd.index, req.acks, ctx.api_version, pd.records),
            };
            partitions.push(match result {
                Ok(a) => {
                    appended |= a.wrote;
                    if a.wrote {
                        let records = (a.end - a.base_offset).max(0) as u64;
                        broker.metrics.produced(&name, bytes, records);
                    }
                    if req.acks == -1 {
                        waits.push(Wait {
                            topic_idx: responses.len(),
                            partition_idx: partitions.len(),
                            partition: pd.index,
                            log: a.log,
                            end: a.end,
                            min_isr: a.min_isr,
                            leader_epoch: a.leader_epoch,
                        });
                    }
                    base.with_base_offset(a.base_offset)
                        .with_log_start_offset(a.log_start)
                        .with_log_append_time_ms(a.log_append_time)
                }
                Err(r) => base
                    .with_error_code(r.code)
                    .with_error_message(r.message.map(StrBytes::from_string))
                    .with_record_errors(r.record_errors),
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
    if !waits.is_empty() {
        let waiting = waits.len() as i64;
        broker.metrics.produce_waiting(waiting);
        wait_for_replication(broker, &mut responses, waits, req.timeout_ms).await;
        broker.metrics.produce_waiting(-waiting);
    }
    for t in &responses {
        for p in &t.partition_responses {
            if p.error_code != 0 {
                broker.metrics.produce_failed(&t.name.0);
            }
        }
    }
    ProduceResponse::default().with_responses(responses)
}

/// An acks=all partition waiting for replication.
struct Wait {
    topic_idx: usize,
    partition_idx: usize,
    partition: i32,
    log: Arc<PartitionLog>,
    /// The high watermark that commits the appended records.
    end: i64,
    min_isr: usize,
    /// The epoch the records were appended in: only a high watermark reached while this
    /// broker still leads in that epoch commits them.
    leader_epoch: i32,
}

/// How often a waiting acks=all request checks that this broker still leads the partition.
const LEADERSHIP_CHECK: Duration = Duration::from_millis(50);

/// Waits until the high watermark of every acks=all partition passes its appended records
/// while this broker still leads the partition in the epoch of the append. Losing leadership
/// answers NOT_LEADER_OR_FOLLOWER at once (the client retries on the new leader; idempotence
/// dedupes), and a high watermark reached after a leader change never counts: the records at
/// those offsets may be another leader's.
async fn wait_for_replication(
    broker: &Broker,
    responses: &mut [TopicProduceResponse],
    waits: Vec<Wait>,
    timeout_ms: i32,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64);
    for w in waits {
        let topic = responses[w.topic_idx].name.0.to_string();
        let leading = || {
            broker
                .replication
                .is_leading(&topic, w.partition, w.leader_epoch)
        };
        let mut hw = w.log.watch_high_watermark();
        let outcome = loop {
            if !leading() {
                break Err(ResponseError::NotLeaderOrFollower);
            }
            let reached = tokio::select! {
                r = hw.wait_for(|h| *h >= w.end) => r.is_ok(),
                _ = tokio::time::sleep(LEADERSHIP_CHECK) => false,
            };
            if reached {
                break if leading() {
                    Ok(())
                } else {
                    Err(ResponseError::NotLeaderOrFollower)
                };
            }
            if tokio::time::Instant::now() >= deadline {
                break Err(ResponseError::RequestTimedOut);
            }
        };
        let resp = &mut responses[w.topic_idx].partition_responses[w.partition_idx];
        match outcome {
            Err(ResponseError::RequestTimedOut) => {
                resp.error_code = code(ResponseError::RequestTimedOut);
                resp.error_message = Some(StrBytes::from_static_str(
                    "the in-sync replicas did not confirm the write within the request timeout",
                ));
                continue;
            }
            Err(e) => {
                resp.error_code = code(e);
                resp.error_message = Some(StrBytes::from_static_str(
                    "leadership moved before the write was committed; retry on the new leader",
                ));
                continue;
            }
            Ok(()) => {}
        }
        let isr = broker
            .metadata
            .image()
            .topics
            .get(&topic)
            .and_then(|tm| {
                usize::try_from(w.partition)
                    .ok()
                    .and_then(|i| tm.partitions.get(i))
                    .map(|pm| pm.isr.len())
            })
            .unwrap_or(0);
        if isr < w.min_isr {
            resp.error_code = code(ResponseError::NotEnoughReplicasAfterAppend);
        }
    }
}

async fn resolve_topic(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
) -> Result<TopicMeta, i16> {
    authz::produce_topic(broker, ctx, name)?;
    // Only the group coordinator writes the offsets topic, as in Kafka ("cannot append to
    // internal topic").
    if name == crate::offsets_topic::OFFSETS_TOPIC {
        return Err(code(ResponseError::InvalidTopicException));
    }
    if let Some(t) = broker.metadata.image().topics.get(name) {
        return Ok(t.clone());
    }
    validate_topic_name(name).map_err(|e| metadata_code(&e))?;
    if !broker.config.auto_create_topics || !authz::create_topic(broker, ctx, name) {
        return Err(code(ResponseError::UnknownTopicOrPartition));
    }
    broker
        .auto_create(name)
        .await
        .map_err(|e| metadata_code(&e))
}

/// A successful append of one partition.
struct Appended {
    base_offset: i64,
    log_start: i64,
    /// False when every batch was a retry already in the log.
    wrote: bool,
    log: Arc<PartitionLog>,
    /// The log end after the append: acks=all waits for the high watermark to reach it.
    end: i64,
    min_isr: usize,
    leader_epoch: i32,
    /// The broker's append time on a LogAppendTime topic, else -1 (Kafka's answer).
    log_append_time: i64,
}

/// Why a partition's records were refused: the error code, a message for the client, and
/// (KIP-467, Produce v8+) the records of the batch that caused it.
struct Refused {
    code: i16,
    message: Option<String>,
    record_errors: Vec<BatchIndexAndErrorMessage>,
}

impl Refused {
    fn new(code: i16, message: Option<String>) -> Self {
        Self {
            code,
            message,
            record_errors: Vec::new(),
        }
    }

    fn code(e: ResponseError) -> Self {
        Self::new(code(e), None)
    }

    fn log(e: &crate::log::LogError) -> Self {
        Self::new(log_code(e), Some(e.to_string()))
    }
}

type PartitionResult = Result<Appended, Refused>;

fn append(
    broker: &Broker,
    topic: &TopicMeta,
    partition: i32,
    acks: i16,
    version: i16,
    records: Option<bytes::Bytes>,
) -> PartitionResult {
    let (meta, log) = broker
        .leader_log(topic, partition)
        .map_err(|e| Refused::new(leader_code(e), None))?;
    if !broker
        .replication
        .is_leading(&topic.name, partition, meta.leader_epoch)
    {
        return Err(Refused::code(ResponseError::NotLeaderOrFollower));
    }
    let max = broker
        .topic_config_value(topic, "max.message.bytes")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(broker.config.message_max_bytes as usize);
    let min_isr = broker
        .topic_config_value(topic, "min.insync.replicas")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1);
    if acks == -1 && meta.isr.len() < min_isr {
        return Err(Refused::new(
            code(ResponseError::NotEnoughReplicas),
            Some(format!(
                "ISR has {} replicas, min.insync.replicas is {min_isr}",
                meta.isr.len()
            )),
        ));
    }
    let records = records.unwrap_or_default();
    let compacted = broker
        .topic_config_value(topic, "cleanup.policy")
        .is_some_and(|p| p.split(',').any(|x| x.trim() == "compact"));
    let rules = ProduceRules {
        max_batch_bytes: max,
        // Kafka refuses records without a key on compacted topics: compaction is by key.
        require_keys: compacted,
        produce_version: version,
    };
    let mut batches =
        produced_batches(&records, &rules).map_err(|e| refused(&topic.name, partition, &e))?;
    let log_append_time = broker
        .topic_config_value(topic, "message.timestamp.type")
        .is_some_and(|t| t == "LogAppendTime");
    let log_append_time = if log_append_time {
        // Kafka stamps the append time into each batch header; the records stay as sent.
        let now = crate::cleaner::now_ms();
        for b in &mut batches {
            *b = with_log_append_time(b, now);
        }
        now
    } else {
        -1
    };
    let out = log
        .append_as_leader(&batches, meta.leader_epoch, false)
        .map_err(|e| Refused::log(&e))?;
    broker
        .replication
        .after_leader_append(&topic.name, partition)
        .map_err(|e| Refused::log(&e))?;
    if out.duplicate {
        tracing::debug!(topic = %topic.name, partition, base = out.base_offset, "duplicate batch answered from producer state");
    }
    Ok(Appended {
        base_offset: out.base_offset,
        log_start: out.log_start,
        wrote: !out.duplicate,
        // A retried batch is acknowledged once everything up to the current end is committed.
        end: out.log_end,
        log,
        min_isr,
        leader_epoch: meta.leader_epoch,
        log_append_time,
    })
}

/// The refusal of a partition's records. Problems with particular records carry their
/// indexes in `record_errors` (KIP-467, Produce v8+): as in Kafka the whole batch is dropped,
/// and clients fail exactly the records named (librdkafka fails the rest of the batch with
/// `_INVALID_DIFFERENT_RECORD`).
fn refused(topic: &str, partition: i32, e: &LogError) -> Refused {
    let mut r = Refused::log(e);
    let LogError::Records(re) = e else {
        return r;
    };
    let message = match re {
        RecordError::MissingKeys { .. } => format!(
            "Compacted topic cannot accept message without key in topic partition \
             {topic}-{partition}."
        ),
        other => other.to_string(),
    };
    r.record_errors = re
        .record_indexes()
        .into_iter()
        .map(|i| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(i32::try_from(i).unwrap_or(i32::MAX))
                .with_batch_index_error_message(Some(StrBytes::from_string(message.clone())))
        })
        .collect();
    r
}
