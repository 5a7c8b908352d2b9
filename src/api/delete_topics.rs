//! DeleteTopics (key 20). v6 names topics in `topics[]` by name or by topic id (KIP-516); an
//! id no topic has is UNKNOWN_TOPIC_ID, and the answer carries each deleted topic's id.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::errors::{code, topics_code};
use super::{authz, topic_ids, RequestContext};
use crate::broker::Broker;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let v = ctx.api_version;
    let targets: Vec<(Option<TopicName>, Uuid)> = if v >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let image = broker.metadata.image();
        // A name wins over an id, as in Kafka (clients send one or the other).
        let resolved = match &name {
            Some(n) => Ok((n.0.to_string(), image.topics.get(n.0.as_str()))),
            None => match topic_ids::find(&image, &id) {
                Some(t) => Ok((t.name.clone(), Some(t))),
                None => Err((
                    code(ResponseError::UnknownTopicId),
                    format!("no topic has id {id}"),
                )),
            },
        };
        let mut r = DeletableTopicResult::default().with_name(name.clone());
        let result = match resolved {
            Ok((topic, _)) if !authz::topic(ctx, Operation::Delete, &topic) => Err((
                code(ResponseError::TopicAuthorizationFailed),
                "Authorization failed: DELETE on the topic is required".to_string(),
            )),
            Ok((topic, _)) if authz::is_internal_topic(&topic) => Err((
                code(ResponseError::InvalidRequest),
                format!("{topic} is an internal topic and cannot be deleted"),
            )),
            Ok((topic, meta)) => {
                if let Some(meta) = meta {
                    r = r
                        .with_name(Some(TopicName(StrBytes::from_string(topic.clone()))))
                        .with_topic_id(topic_ids::of(meta));
                }
                broker
                    .topics
                    .delete(&topic)
                    .await
                    .map_err(|e| (topics_code(&e), e.to_string()))
            }
            Err(e) => Err(e),
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
