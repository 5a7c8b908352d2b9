//! Produce (key 0): validate each partition's batches against the topic's policy, append them
//! through the [`PartitionWriter`] (the append/commit path shared with the offsets store),
//! answer with the base offset. acks=0 requests are processed the same way but the caller
//! sends no response; acks=1 is answered once the leader's append is durable (a group-commit
//! flush by default); acks=all also waits until the high watermark passes the appended records
//! (all in-sync replicas have them), honouring `min.insync.replicas` (NOT_ENOUGH_REPLICAS before
//! appending, NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below it while waiting), the
//! leadership of the append's epoch (NOT_LEADER_OR_FOLLOWER the moment it ends) and the
//! request's timeout (REQUEST_TIMED_OUT).
//!
//! Transactional batches (KIP-98) need the request's transactional id, which the principal
//! must be allowed to WRITE (else TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka); control
//! batches (transaction markers) from clients are refused with INVALID_RECORD. A producer's
//! first transactional batch in a partition is verified with its transaction coordinator first
//! (KIP-890 part 1, `txn_verify`).

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use std::time::Duration;

use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::{code, leader_code, log_code, metadata_code, topics_code};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::log::batch::with_log_append_time;
use crate::log::txn::VerificationGuard;
use crate::log::validate::{produced_batches, ProduceRules, RecordError};
use crate::log::LogError;
use crate::metadata::{validate_topic_name, TopicMeta};
use crate::writer::{PendingCommit, TopicPolicy, WriteError};

pub async fn handle(broker: &Broker, ctx: &RequestContext, req: ProduceRequest) -> ProduceResponse {
    let acks_ok = matches!(req.acks, -1..=1);
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut appended = false;
    // acks=all partitions waiting for their commit.
    let mut waits: Vec<Wait> = Vec::new();
    // Validated partitions to append (topic index, partition index, bytes, job), and refused
    // ones.
    let mut jobs: Vec<(usize, usize, u64, Job)> = Vec::new();
    let mut refusals: Vec<(usize, usize, Refused)> = Vec::new();
    let txn_denied = authz::produce_transactional_id_denied(ctx, &req);
    let has_txn_id = req.transactional_id.is_some();
    let txn_id = req.transactional_id.clone();
    for topic_data in req.topic_data {
        let name = topic_data.name.0.to_string();
        let topic = if let Some(denied) = txn_denied {
            Err(denied)
        } else if acks_ok {
            resolve_topic(broker, ctx, &name).await.map(|t| {
                // The topic's configs, resolved once for all its partitions.
                let policy = TopicPolicy::resolve(
                    |k| broker.topics.config_value(&t, k),
                    broker.config.message_max_bytes as usize,
                );
                (t, policy)
            })
        } else {
            Err(0)
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for pd in topic_data.partition_data {
            let bytes = pd.records.as_ref().map_or(0, |r| r.len() as u64);
            let result = match (&topic, acks_ok) {
                (_, false) => Err(Refused::code(ResponseError::InvalidRequiredAcks)),
                (Err(e), _) => Err(Refused::new(*e, None)),
                (Ok((t, policy)), true) => prepare(
                    broker,
                    t,
                    policy,
                    pd.index,
                    req.acks,
                    ctx.api_version,
                    pd.records,
                    has_txn_id,
                ),
            };
            match result {
                Ok(job) => jobs.push((responses.len(), partitions.len(), bytes, job)),
                Err(r) => refusals.push((responses.len(), partitions.len(), r)),
            }
            partitions.push(
                PartitionProduceResponse::default()
                    .with_index(pd.index)
                    .with_base_offset(-1),
            );
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partitions),
        );
    }
    // Pipelined requests of one connection append in request order (`api::turn`): wait for
    // the earlier ones here (before the transaction check, which reads what they appended),
    // pass the turn on right after appending, before the flush and replication waits.
    if let Some(turn) = &ctx.append_turn {
        turn.wait().await;
    }
    if let (Some(id), None) = (&txn_id, txn_denied) {
        // KIP-890 part 1 (see `txn_verify`).
        let mut v = super::txn_verify::verify(
            broker,
            &id.0,
            jobs.iter()
                .map(|(_, _, _, j)| (j.topic.as_str(), j.partition, j.batches.as_slice())),
        )
        .await;
        let mut kept = Vec::with_capacity(jobs.len());
        for (i, mut job) in jobs.into_iter().enumerate() {
            match v.refused.remove(&i) {
                Some((code, msg)) => refusals.push((job.0, job.1, Refused::new(code, Some(msg)))),
                None => {
                    // Every append of a transactional request checks its guards, so a
                    // transaction that ended since the verification (or since it was found
                    // open) is caught under the partition's lock.
                    job.3.verified = Some(v.guards.remove(&i).into_iter().collect());
                    kept.push(job);
                }
            }
        }
        jobs = kept;
    }
    for (t, p, r) in refusals {
        responses[t].partition_responses[p] =
            std::mem::take(&mut responses[t].partition_responses[p])
                .with_error_code(r.code)
                .with_error_message(r.message.map(StrBytes::from_string))
                .with_record_errors(r.record_errors);
    }
    let appends = append_all(broker, jobs).await;
    if let Some(turn) = &ctx.append_turn {
        turn.pass();
    }
    for (t, p, bytes, result) in appends {
        match result {
            Ok(a) => {
                appended |= a.wrote;
                if a.wrote {
                    let records = (a.end - a.base_offset).max(0) as u64;
                    broker
                        .metrics
                        .produced(&responses[t].name.0, bytes, records);
                }
                let resp = &mut responses[t].partition_responses[p];
                resp.base_offset = a.base_offset;
                resp.log_start_offset = a.log_start;
                resp.log_append_time_ms = a.log_append_time;
                if req.acks == -1 {
                    waits.push(Wait {
                        topic_idx: t,
                        partition_idx: p,
                        partition: resp.index,
                        commit: a.commit,
                        min_isr: a.min_isr,
                    });
                }
            }
            Err(r) => {
                let resp = &mut responses[t].partition_responses[p];
                resp.error_code = r.code;
                resp.error_message = r.message.map(StrBytes::from_string);
                resp.record_errors = r.record_errors;
            }
        }
    }
    if appended && req.acks == 0 {
        // Nobody waits for the answer; the flush rule still applies to the data.
        let writer = broker.writer.clone();
        tokio::spawn(async move {
            if let Err(e) = writer.make_durable().await {
                tracing::error!(error = %e, "flush after acks=0 produce failed");
            }
        });
    } else if appended {
        if let Err(e) = broker.writer.make_durable().await {
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
    /// The high watermark that commits the appended records, in the epoch of the append.
    commit: PendingCommit,
    min_isr: usize,
}

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
        let outcome = broker.writer.wait_committed(&w.commit, deadline).await;
        let resp = &mut responses[w.topic_idx].partition_responses[w.partition_idx];
        if resp.error_code != 0 {
            continue; // the flush failed
        }
        match outcome {
            Err(WriteError::Timeout { .. }) => {
                resp.error_code = code(ResponseError::RequestTimedOut);
                resp.error_message = Some(StrBytes::from_static_str(
                    "the in-sync replicas did not confirm the write within the request timeout",
                ));
                continue;
            }
            Err(e) => {
                resp.error_code = write_code(&e);
                resp.error_message = Some(StrBytes::from_string(e.to_string()));
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
    authz::produce_topic(ctx, name)?;
    // Only the group coordinator writes the offsets topic, as in Kafka ("cannot append to
    // internal topic").
    if name == crate::offsets_topic::OFFSETS_TOPIC || name == crate::txn::TXN_TOPIC {
        return Err(code(ResponseError::InvalidTopicException));
    }
    if let Some(t) = broker.metadata.image().topics.get(name) {
        return Ok(t.clone());
    }
    validate_topic_name(name).map_err(|e| metadata_code(&e))?;
    if !broker.config.auto_create_topics || !authz::create_topic(ctx, name) {
        return Err(code(ResponseError::UnknownTopicOrPartition));
    }
    broker
        .topics
        .auto_create(name)
        .await
        .map_err(|e| topics_code(&e))
}

/// A successful append of one partition.
struct Appended {
    base_offset: i64,
    log_start: i64,
    /// False when every batch was a retry already in the log.
    wrote: bool,
    /// The log end after the append.
    end: i64,
    /// acks=all waits on it (a retried batch: for everything up to the current end).
    commit: PendingCommit,
    min_isr: usize,
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

/// The Kafka error code of a failed write.
fn write_code(e: &WriteError) -> i16 {
    match e {
        WriteError::NotLeader { .. } | WriteError::LeadershipLost { .. } => {
            code(ResponseError::NotLeaderOrFollower)
        }
        WriteError::Timeout { .. } => code(ResponseError::RequestTimedOut),
        WriteError::Log(e) => log_code(e),
    }
}

/// A partition's validated batches, ready to append.
struct Job {
    topic: String,
    partition: i32,
    leader_epoch: i32,
    batches: Vec<bytes::Bytes>,
    min_isr: usize,
    log_append_time: i64,
    /// Set for a request with a transactional id: the KIP-890 guards its verification took
    /// (`txn_verify`), checked by the append.
    verified: Option<Vec<VerificationGuard>>,
}

/// Appends every job through the writer on a blocking thread (sled writes can stall for a
/// long time; the async workers keep serving other requests and Raft meanwhile).
async fn append_all(
    broker: &Broker,
    jobs: Vec<(usize, usize, u64, Job)>,
) -> Vec<(usize, usize, u64, PartitionResult)> {
    if jobs.is_empty() {
        return Vec::new();
    }
    let places: Vec<(usize, usize, u64)> = jobs.iter().map(|(t, p, b, _)| (*t, *p, *b)).collect();
    let writer = broker.writer.clone();
    let appended = tokio::task::spawn_blocking(move || {
        jobs.into_iter()
            .map(|(t, p, bytes, job)| {
                let r = writer
                    .append_verified(
                        &job.topic,
                        job.partition,
                        job.leader_epoch,
                        &job.batches,
                        job.verified.as_deref(),
                    )
                    .map_err(|e| match e {
                        WriteError::Log(e) => Refused::log(&e),
                        e => Refused::new(write_code(&e), Some(e.to_string())),
                    })
                    .map(|out| {
                        if out.duplicate {
                            tracing::debug!(topic = %job.topic, partition = job.partition, base = out.base_offset, "duplicate batch answered from producer state");
                        }
                        Appended {
                            base_offset: out.base_offset,
                            log_start: out.log_start,
                            wrote: !out.duplicate,
                            end: out.log_end,
                            commit: out.commit,
                            min_isr: job.min_isr,
                            log_append_time: job.log_append_time,
                        }
                    });
                (t, p, bytes, r)
            })
            .collect::<Vec<_>>()
    })
    .await;
    match appended {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "append task failed");
            places
                .into_iter()
                .map(|(t, p, b)| {
                    (
                        t,
                        p,
                        b,
                        Err(Refused::code(ResponseError::KafkaStorageError)),
                    )
                })
                .collect()
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn prepare(
    broker: &Broker,
    topic: &TopicMeta,
    policy: &TopicPolicy,
    partition: i32,
    acks: i16,
    version: i16,
    records: Option<bytes::Bytes>,
    has_txn_id: bool,
) -> Result<Job, Refused> {
    let (meta, _) = broker
        .leader_log(topic, partition)
        .map_err(|e| Refused::new(leader_code(e), None))?;
    if broker
        .replication
        .leader_term(&topic.name, partition, meta.leader_epoch)
        .is_none()
    {
        return Err(Refused::code(ResponseError::NotLeaderOrFollower));
    }
    let min_isr = policy.min_insync_replicas;
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
    let rules = ProduceRules {
        max_batch_bytes: policy.max_batch_bytes,
        // Kafka refuses records without a key on compacted topics: compaction is by key.
        require_keys: policy.compacted,
        produce_version: version,
    };
    let mut batches =
        produced_batches(&records, &rules).map_err(|e| refused(&topic.name, partition, &e))?;
    if !has_txn_id
        && batches
            .iter()
            .any(|b| crate::log::batch::BatchHeader::read(b).is_ok_and(|h| h.is_transactional()))
    {
        return Err(Refused::new(
            code(ResponseError::TransactionalIdAuthorizationFailed),
            Some("transactional records need the request's transactional id".into()),
        ));
    }
    let log_append_time = if policy.log_append_time {
        // Kafka stamps the append time into each batch header; the records stay as sent.
        let now = crate::cleaner::now_ms();
        for b in &mut batches {
            *b = with_log_append_time(b, now);
        }
        now
    } else {
        -1
    };
    Ok(Job {
        topic: topic.name.clone(),
        partition,
        leader_epoch: meta.leader_epoch,
        batches,
        min_isr,
        log_append_time,
        verified: None,
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
