//! DeleteTopics (key 20). v6 names topics in `topics[].name`; deletion by topic id is
//! refused with UNKNOWN_TOPIC_ID because raftka reports zero topic ids.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::{code, metadata_code};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let v = ctx.api_version;
    let targets: Vec<(Option<TopicName>, String)> = if v >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name, t.topic_id.to_string()))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n), String::new()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let mut r = DeletableTopicResult::default().with_name(name.clone());
        let result = match name {
            Some(n) if !authz::topic(broker, ctx, Operation::Delete, &n.0) => Err((
                code(ResponseError::TopicAuthorizationFailed),
                "Authorization failed: DELETE on the topic is required".to_string(),
            )),
            Some(n) if authz::is_internal_topic(&n.0) => Err((
                code(ResponseError::InvalidRequest),
                format!("{} is an internal topic and cannot be deleted", n.0),
            )),
            Some(n) => broker
                .delete_topic(n.0.as_str())
                .await
                .map_err(|e| (metadata_code(&e), e.to_string())),
            None => Err((
                code(ResponseError::UnknownTopicId),
                format!("topic id {id} is unknown: raftka does not assign topic ids"),
            )),
        };
        if let Err((error, message)) = result {
            r = r.with_error_code(error);
            if v >= 5 {
                r = r.with_error_message(Some(StrBytes::from_string(message)));
            }
        }
        responses.push(r);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
