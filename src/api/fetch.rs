//! Fetch (key 1): whole batches below the high watermark, with long polling — the request
//! waits up to `max_wait_ms` until `min_bytes` are available, waking when the high watermark
//! of a partition it reads moves (or roles change), not on appends elsewhere.
//!
//! A response holds at most `fetch.max.bytes` of records (and at most the request's
//! `max_bytes` and each partition's `partition_max_bytes`), except that the first batch of the
//! first partition with data is returned even when larger, so a consumer always progresses.
//!
//! v13+ addresses topics by id (KIP-516; UNKNOWN_TOPIC_ID for an id no topic has), v15 moves
//! the replica id into `replica_state` and v16/v17 add fields for brokers and KIP-853 that a
//! consumer's fetch leaves empty.
//!
//! `isolation_level` 1 (read_committed, KIP-98) reads only below the last stable offset,
//! answers the aborted transactions overlapping the returned batches (clients drop their
//! records) and wakes long polls when the last stable offset moves (a marker), not the high
//! watermark; every answer carries the last stable offset, as Kafka's.
//!
//! Fetch sessions (KIP-227, v7+) are kept in [`crate::fetch_session`]: an incremental request
//! reads every partition of its session and answers only those that changed.

use std::time::Duration;

use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::errors::{code, leader_code, log_code};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::fetch_session::Begin;
use crate::log::wake::Readiness;
use crate::security::acl::Operation;

pub async fn handle(broker: &Broker, ctx: &RequestContext, req: FetchRequest) -> FetchResponse {
    if ctx.api_version < 7 {
        return serve(broker, ctx, &req).await;
    }
    let by_id = ctx.api_version >= 13;
    let sessions = &broker.fetch_sessions;
    match sessions.begin(&req, by_id, sessions.now_ms()) {
        Begin::Sessionless => serve(broker, ctx, &req).await.with_session_id(0),
        Begin::Full => {
            let resp = serve(broker, ctx, &req).await;
            let id = sessions.create(&req, &resp, by_id, sessions.now_ms());
            resp.with_session_id(id)
        }
        Begin::Incremental(inc) => {
            let resp = serve(broker, ctx, &inc.request).await;
            sessions.finish_incremental(&inc, resp)
        }
        Begin::Error(e) => FetchResponse::default()
            .with_error_code(code(e))
            .with_session_id(0),
    }
}

/// Reads `req`'s partitions, long-polling until `min_bytes` are there, an error, or the
/// deadline.
async fn serve(broker: &Broker, ctx: &RequestContext, req: &FetchRequest) -> FetchResponse {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let deadline = Instant::now() + wait;
    loop {
        // Register for the wake-ups before reading, so a change in between is not missed.
        let notified = broker.logs.appended().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut ready = Readiness::new();
        let (resp, bytes, had_error) = read(broker, ctx, req, Some(&mut ready));
        if bytes >= req.min_bytes.max(0) as usize || had_error || Instant::now() >= deadline {
            return counted(broker, resp);
        }
        let woken = tokio::select! {
            _ = &mut notified => true,
            _ = ready.changed() => true,
            _ = tokio::time::sleep_until(deadline) => false,
        };
        if !woken {
            // Timed out: answer with whatever is there now.
            return counted(broker, read(broker, ctx, req, None).0);
        }
    }
}

/// Counts the answered bytes and failed partitions per topic (`metrics`).
fn counted(broker: &Broker, resp: FetchResponse) -> FetchResponse {
    for t in &resp.responses {
        let (mut bytes, mut failed) = (0u64, false);
        for p in &t.partitions {
            bytes += p.records.as_ref().map_or(0, |r| r.len() as u64);
            failed |= p.error_code != 0;
        }
        broker.metrics.fetched(&t.topic.0, bytes, failed);
    }
    resp
}

/// One pass over the requested partitions: the response, its record bytes, and whether
/// any partition had an error (errors are answered at once, without waiting).
fn read(
    broker: &Broker,
    ctx: &RequestContext,
    req: &FetchRequest,
    mut ready: Option<&mut Readiness>,
) -> (FetchResponse, usize, bool) {
    let image = broker.metadata.image();
    // `fetch.max.bytes` caps every response, whatever the request asks for (v0-v2 have no
    // response limit of their own); the first batch found is still returned whole.
    let requested = if ctx.api_version >= 3 {
        req.max_bytes.max(0) as usize
    } else {
        usize::MAX
    };
    let response_max = requested.min(broker.config.fetch_max_bytes);
    let mut total = 0usize;
    let mut had_error = false;
    let mut responses = Vec::with_capacity(req.topics.len());
    // v13+ names topics by id (KIP-516): an id no topic has is UNKNOWN_TOPIC_ID.
    let by_id = ctx.api_version >= 13;
    let read_committed = req.isolation_level == 1;
    for ft in &req.topics {
        let topic = if by_id {
            super::topic_ids::find(&image, &ft.topic_id)
        } else {
            image.topics.get(ft.topic.0.as_str())
        };
        // By id, READ is checked on the topic the id names; an unknown id has no name and is
        // answered UNKNOWN_TOPIC_ID, as in Kafka.
        let readable = match topic {
            Some(t) => authz::topic(ctx, Operation::Read, &t.name),
            None if by_id => true,
            None => authz::topic(ctx, Operation::Read, &ft.topic.0),
        };
        let unknown = if by_id {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        let mut partitions = Vec::with_capacity(ft.partitions.len());
        for fp in &ft.partitions {
            let mut pd = PartitionData::default()
                .with_partition_index(fp.partition)
                .with_high_watermark(-1);
            if !readable {
                had_error = true;
                partitions.push(pd.with_error_code(code(ResponseError::TopicAuthorizationFailed)));
                continue;
            }
            let Some(topic) = topic else {
                had_error = true;
                partitions.push(pd.with_error_code(code(unknown)));
                continue;
            };
            let (meta, log) = match broker.leader_log(topic, fp.partition) {
                Ok(x) => x,
                Err(e) => {
                    had_error = true;
                    partitions.push(pd.with_error_code(leader_code(e)));
                    continue;
                }
            };
            if ctx.api_version >= 9 && fp.current_leader_epoch >= 0 {
                let err = if fp.current_leader_epoch < meta.leader_epoch {
                    Some(ResponseError::FencedLeaderEpoch)
                } else if fp.current_leader_epoch > meta.leader_epoch {
                    Some(ResponseError::UnknownLeaderEpoch)
                } else {
                    None
                };
                if let Some(e) = err {
                    had_error = true;
                    partitions.push(pd.with_error_code(code(e)));
                    continue;
                }
            }
            if let Some(r) = ready.as_deref_mut() {
                r.add(if read_committed {
                    log.watch_last_stable_offset()
                } else {
                    log.watch_high_watermark()
                });
            }
            let budget =
                (fp.partition_max_bytes.max(0) as usize).min(response_max.saturating_sub(total));
            let read = if read_committed {
                log.read_committed(fp.fetch_offset, budget, total == 0)
            } else {
                log.read(fp.fetch_offset, budget, total == 0)
            };
            match read {
                Ok(r) => {
                    total += r.records.len();
                    let aborted =
                        read_committed.then(|| match crate::log::batch::end_offset(&r.records) {
                            Some(end) => log
                                .aborted_transactions(fp.fetch_offset, end)
                                .into_iter()
                                .map(|a| {
                                    AbortedTransaction::default()
                                        .with_producer_id(a.producer_id.into())
                                        .with_first_offset(a.first_offset)
                                })
                                .collect(),
                            None => Vec::new(),
                        });
                    pd = pd
                        .with_high_watermark(r.offsets.high_watermark)
                        .with_last_stable_offset(r.last_stable_offset)
                        .with_log_start_offset(r.offsets.log_start)
                        .with_aborted_transactions(aborted)
                        .with_records(Some(r.records));
                }
                Err(e) => {
                    had_error = true;
                    let o = log.offsets();
                    pd = pd
                        .with_error_code(log_code(&e))
                        .with_high_watermark(o.high_watermark)
                        .with_last_stable_offset(log.last_stable_offset())
                        .with_log_start_offset(o.log_start);
                }
            }
            partitions.push(pd);
        }
        // The name is what the metrics count (v13+ does not encode it); the id what v13+ sends.
        let name = topic.map_or_else(
            || ft.topic.clone(),
            |t| TopicName(StrBytes::from_string(t.name.clone())),
        );
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(name)
                .with_topic_id(ft.topic_id)
                .with_partitions(partitions),
        );
    }
    (
        FetchResponse::default().with_responses(responses),
        total,
        had_error,
    )
}
