//! CreateTopics (key 19). Missing partition count / replication factor (-1) take the broker
//! defaults; v5+ answers with the resulting counts and configs.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{topic_entries, EntryOptions};
use super::errors::metadata_code;
use super::RequestContext;
use crate::broker::{Broker, CreateTopicSpec};
use crate::metadata::MetadataError;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
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
            Some(e) => Err(e),
            None => broker.create_topic(&spec).await,
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
                        .with_num_partitions(topic.partitions.len() as i32)
                        .with_replication_factor(topic.replication_factor())
                        .with_configs(Some(configs));
                }
            }
            Err(e) => {
                tracing::debug!(topic = %name, error = %e, "create topic refused");
                r = r.with_error_code(metadata_code(&e));
                if ctx.api_version >= 1 {
                    r = r.with_error_message(Some(StrBytes::from_string(e.to_string())));
                }
            }
        }
        results.push(r);
    }
    CreateTopicsResponse::default().with_topics(results)
}
