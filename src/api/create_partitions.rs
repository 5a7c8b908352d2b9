//! CreatePartitions (key 37): grow a topic; shrinking or keeping the count is INVALID_PARTITIONS.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors::metadata_code;
use super::RequestContext;
use crate::broker::Broker;

pub async fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let assignments = t
            .assignments
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.broker_ids.into_iter().map(|b| b.0).collect())
            .collect();
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if let Err(e) = broker
            .create_partitions(t.name.0.as_str(), t.count, assignments, req.validate_only)
            .await
        {
            r = r
                .with_error_code(metadata_code(&e))
                .with_error_message(Some(StrBytes::from_string(e.to_string())));
        }
        results.push(r);
    }
    CreatePartitionsResponse::default().with_results(results)
}
