//! CreatePartitions (key 37): grow a topic; shrinking or keeping the count is INVALID_PARTITIONS.
//! More than `max.records.per.user.op` new partitions in one request: POLICY_VIOLATION for all.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors::{metadata_code, topics_code};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::metadata::check_record_count;
use crate::topics::CreatePartitionsSpec;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    // As in Kafka's controller: the new partitions of the whole request count against the
    // per-operation record limit, checked before any replica is placed.
    let image = broker.metadata.image();
    let records: u64 = req
        .topics
        .iter()
        .map(|t| {
            let current = image
                .topics
                .get(t.name.0.as_str())
                .map_or(0, |topic| topic.partitions.len() as i64);
            (t.count as i64 - current).max(0) as u64
        })
        .sum();
    if let Err(e) = check_record_count(records, broker.config.max_records_per_user_op) {
        tracing::info!(records, error = %e, "CreatePartitions refused");
        let results = req
            .topics
            .into_iter()
            .map(|t| {
                CreatePartitionsTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(metadata_code(&e))
                    .with_error_message(Some(StrBytes::from_string(e.to_string())))
            })
            .collect();
        return CreatePartitionsResponse::default().with_results(results);
    }
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let assignments = t
            .assignments
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.broker_ids.into_iter().map(|b| b.0).collect())
            .collect();
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if let Some((error, message)) = authz::alter_topic_refusal(ctx, &t.name.0) {
            results.push(
                r.with_error_code(error)
                    .with_error_message(Some(StrBytes::from_string(message))),
            );
            continue;
        }
        let spec = CreatePartitionsSpec {
            name: t.name.0.to_string(),
            count: t.count,
            assignments,
            validate_only: req.validate_only,
        };
        if let Err(e) = broker.topics.create_partitions(spec).await {
            r = r
                .with_error_code(topics_code(&e))
                .with_error_message(Some(StrBytes::from_string(e.to_string())));
        }
        results.push(r);
    }
    CreatePartitionsResponse::default().with_results(results)
}
