//! CreateTopics (key 19). Missing partition count / replication factor (-1) take the broker
//! defaults; v5+ answers with the resulting counts and configs. A request that would create
//! more than `max.records.per.user.op` metadata records is refused whole (POLICY_VIOLATION).

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{topic_entries, EntryOptions};
use kafka_protocol::ResponseError;

use super::errors::{code, topics_code};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::metadata::{check_record_count, MetadataError};
use crate::topics::{topic_records, CreateTopicSpec, TopicsError};

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    // Kafka's controller refuses a request whose records (topics, partitions, configs) exceed
    // its per-operation limit as a whole, before placing anything and for validate_only too.
    let records: u64 = req
        .topics
        .iter()
        .map(|t| {
            let partitions = if !t.assignments.is_empty() {
                t.assignments.len() as u64
            } else if t.num_partitions == -1 {
                broker.config.num_partitions as u64
            } else {
                t.num_partitions.max(0) as u64
            };
            topic_records(partitions, t.configs.len())
        })
        .sum();
    if let Err(e) = check_record_count(records, broker.config.max_records_per_user_op) {
        tracing::info!(records, error = %e, "CreateTopics refused");
        let e = TopicsError::from(e);
        let results = req
            .topics
            .into_iter()
            .map(|t| refused(ctx, t.name, &e))
            .collect();
        return CreateTopicsResponse::default().with_topics(results);
    }
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        if !authz::create_topic(ctx, &name) {
            results.push(unauthorized(ctx, t.name));
            continue;
        }
        let mut configs = BTreeMap::new();
        let mut bad_config = None;
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => {
                    bad_config = Some(MetadataError::InvalidConfig {
                        key: c.name.to_string(),
                        reason: "null value".into(),
                    })
                }
            }
        }
        let mut assignments: Vec<(i32, Vec<i32>)> = t
            .assignments
            .iter()
            .map(|a| {
                (
                    a.partition_index,
                    a.broker_ids.iter().map(|b| b.0).collect(),
                )
            })
            .collect();
        assignments.sort_by_key(|a| a.0);
        let spec = CreateTopicSpec {
            name: name.clone(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: assignments.into_iter().map(|a| a.1).collect(),
            configs,
            validate_only: req.validate_only,
        };
        let outcome = match bad_config {
            Some(e) => Err(e.into()),
            None => broker.topics.create(&spec).await,
        };
        let mut r = CreatableTopicResult::default().with_name(t.name);
        match outcome {
            Ok(topic) => {
                if ctx.api_version >= 5 {
                    let configs = topic_entries(
                        broker,
                        &topic,
                        None,
                        EntryOptions {
                            version: 1,
                            synonyms: false,
                            documentation: false,
                        },
                    )
                    .into_iter()
                    .map(|e| {
                        CreatableTopicConfigs::default()
                            .with_name(e.name)
                            .with_value(e.value)
                            .with_read_only(e.read_only)
                            .with_config_source(e.config_source)
                            .with_is_sensitive(e.is_sensitive)
                    })
                    .collect();
                    r = r
                        .with_topic_id(super::topic_ids::of(&topic))
                        .with_num_partitions(topic.partitions.len() as i32)
                        .with_replication_factor(topic.replication_factor())
                        .with_configs(Some(configs));
                }
            }
            Err(e) => {
                tracing::debug!(topic = %name, error = %e, "create topic refused");
                r = refused(ctx, r.name, &e);
            }
        }
        results.push(r);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// TOPIC_AUTHORIZATION_FAILED: no CREATE on the cluster or the topic.
fn unauthorized(ctx: &RequestContext, name: TopicName) -> CreatableTopicResult {
    let r = CreatableTopicResult::default()
        .with_name(name)
        .with_error_code(code(ResponseError::TopicAuthorizationFailed));
    if ctx.api_version >= 1 {
        r.with_error_message(Some(StrBytes::from_static_str(
            "Authorization failed: CREATE on the cluster or the topic is required",
        )))
    } else {
        r
    }
}

/// The result of a topic that is not created, with the error message from v1 on.
fn refused(ctx: &RequestContext, name: TopicName, e: &TopicsError) -> CreatableTopicResult {
    let r = CreatableTopicResult::default()
        .with_name(name)
        .with_error_code(topics_code(e));
    if ctx.api_version >= 1 {
        r.with_error_message(Some(StrBytes::from_string(e.to_string())))
    } else {
        r
    }
}
