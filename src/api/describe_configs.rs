//! DescribeConfigs (key 32) for topics (resource type 2) and this broker (type 4), with
//! config sources, synonyms and types as Kafka reports them.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::code;
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::config::{Source, ValueType, SETTINGS};
use crate::metadata::topic_config::{default_synonyms, DynamicConfigs, TOPIC_CONFIGS};
use crate::metadata::TopicMeta;
use crate::security::acl::Operation;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Kafka's ConfigSource values.
const TOPIC_CONFIG: i8 = 1;
const DYNAMIC_BROKER_CONFIG: i8 = 2;
const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

fn source_code(s: Source) -> i8 {
    match s {
        Source::DynamicBroker => DYNAMIC_BROKER_CONFIG,
        Source::DynamicDefault => DYNAMIC_DEFAULT_BROKER_CONFIG,
        Source::Static => STATIC_BROKER_CONFIG,
        Source::Default => DEFAULT_CONFIG,
    }
}

/// Kafka's ConfigType values.
fn type_code(t: ValueType) -> i8 {
    match t {
        ValueType::Bool => 1,
        ValueType::Str => 2,
        ValueType::Password => 9,
        ValueType::Int => 3,
        ValueType::Long => 5,
        ValueType::Double => 6,
        ValueType::List => 7,
    }
}

/// What to include in each entry.
#[derive(Debug, Clone, Copy)]
pub struct EntryOptions {
    pub version: i16,
    pub synonyms: bool,
    pub documentation: bool,
}

struct Entry<'a> {
    name: &'a str,
    value: String,
    source: i8,
    read_only: bool,
    kind: ValueType,
    doc: &'a str,
    synonyms: Vec<(String, String, i8)>,
}

fn render(e: Entry<'_>, o: EntryOptions) -> DescribeConfigsResourceResult {
    // Secrets (passwords, JAAS text) are never sent, as Kafka hides PASSWORD settings.
    let sensitive = e.kind == ValueType::Password;
    let shown = |v: String| (!sensitive).then(|| StrBytes::from_string(v));
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(e.name.to_string()))
        .with_value(shown(e.value))
        .with_is_sensitive(sensitive)
        .with_read_only(e.read_only)
        .with_documentation(None);
    if o.version == 0 {
        r = r.with_is_default(e.source == DEFAULT_CONFIG);
    } else {
        r = r.with_config_source(e.source);
        if o.synonyms {
            r = r.with_synonyms(
                e.synonyms
                    .into_iter()
                    .map(|(n, v, s)| {
                        DescribeConfigsSynonym::default()
                            .with_name(StrBytes::from_string(n))
                            .with_value(shown(v))
                            .with_source(s)
                    })
                    .collect(),
            );
        }
    }
    if o.version >= 3 {
        r = r.with_config_type(type_code(e.kind));
        if o.documentation {
            r = r.with_documentation(Some(StrBytes::from_string(e.doc.to_string())));
        }
    }
    r
}

/// The config entries of a topic, optionally only the named keys.
pub fn topic_entries(
    broker: &Broker,
    topic: &TopicMeta,
    keys: Option<&[String]>,
    o: EntryOptions,
) -> Vec<DescribeConfigsResourceResult> {
    let dynamic = broker.metadata.image().broker_configs.clone();
    TOPIC_CONFIGS
        .iter()
        .filter(|d| keys.is_none_or(|k| k.iter().any(|k| k == d.name)))
        .map(|d| {
            let (default, default_source) =
                crate::metadata::topic_config::broker_default(d, &broker.config, &dynamic);
            // Most specific first, as Kafka lists them: the topic override, then the broker
            // settings (dynamic, static, built-in) that supply the default.
            let mut synonyms: Vec<(String, String, i8)> = Vec::new();
            let (value, source) = match topic.configs.get(d.name) {
                Some(v) => {
                    synonyms.push((d.name.to_string(), v.clone(), TOPIC_CONFIG));
                    (v.clone(), TOPIC_CONFIG)
                }
                None => (default, source_code(default_source)),
            };
            synonyms.extend(
                default_synonyms(d, &broker.config, &dynamic)
                    .into_iter()
                    .map(|(n, v, s)| (n, v, source_code(s))),
            );
            render(
                Entry {
                    name: d.name,
                    value,
                    source,
                    read_only: false,
                    kind: d.kind,
                    doc: d.doc,
                    synonyms,
                },
                o,
            )
        })
        .collect()
}

fn is_dynamic(name: &str) -> bool {
    crate::metadata::config_ops::is_dynamic_broker_config(name)
}

/// This broker's settings: dynamic values (this broker's, then the cluster-wide default)
/// over static ones. Only the dynamic settings are writable.
fn broker_entries(
    broker: &Broker,
    dynamic: &DynamicConfigs,
    keys: Option<&[String]>,
    o: EntryOptions,
) -> Vec<DescribeConfigsResourceResult> {
    let mine = broker.config.node_id.to_string();
    SETTINGS
        .iter()
        .filter(|d| keys.is_none_or(|k| k.iter().any(|k| k == d.name)))
        .map(|d| {
            let mut synonyms = Vec::new();
            for (key, source) in [
                (mine.as_str(), DYNAMIC_BROKER_CONFIG),
                ("", DYNAMIC_DEFAULT_BROKER_CONFIG),
            ] {
                if let Some(v) = dynamic.get(key).and_then(|m| m.get(d.name)) {
                    synonyms.push((d.name.to_string(), v.clone(), source));
                }
            }
            let (stat, stat_source) = broker
                .config
                .raw(d.name)
                .map(|(v, s)| (v.to_string(), source_code(s)))
                .unwrap_or_default();
            synonyms.push((d.name.to_string(), stat, stat_source));
            let (value, source) = synonyms
                .first()
                .map(|(_, v, s)| (v.clone(), *s))
                .unwrap_or_default();
            render(
                Entry {
                    name: d.name,
                    synonyms,
                    value,
                    source,
                    read_only: !is_dynamic(d.name),
                    kind: d.kind,
                    doc: d.doc,
                },
                o,
            )
        })
        .collect()
}

/// The cluster-wide dynamic defaults (the broker resource named ""), as Kafka lists them.
fn cluster_default_entries(
    dynamic: &DynamicConfigs,
    keys: Option<&[String]>,
    o: EntryOptions,
) -> Vec<DescribeConfigsResourceResult> {
    SETTINGS
        .iter()
        .filter(|d| keys.is_none_or(|k| k.iter().any(|k| k == d.name)))
        .filter_map(|d| {
            let v = dynamic.get("").and_then(|m| m.get(d.name))?;
            Some(render(
                Entry {
                    name: d.name,
                    synonyms: vec![(d.name.to_string(), v.clone(), DYNAMIC_DEFAULT_BROKER_CONFIG)],
                    value: v.clone(),
                    source: DYNAMIC_DEFAULT_BROKER_CONFIG,
                    read_only: false,
                    kind: d.kind,
                    doc: d.doc,
                },
                o,
            ))
        })
        .collect()
}

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let o = EntryOptions {
        version: ctx.api_version,
        synonyms: ctx.api_version >= 1 && req.include_synonyms,
        documentation: ctx.api_version >= 3 && req.include_documentation,
    };
    let image = broker.metadata.image();
    let mut results = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let keys: Option<Vec<String>> = res
            .configuration_keys
            .as_ref()
            .map(|k| k.iter().map(|s| s.to_string()).collect());
        let name = res.resource_name.to_string();
        let base = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name);
        let refusal =
            authz::config_refusal(ctx, res.resource_type, &name, Operation::DescribeConfigs);
        let result = match res.resource_type {
            TOPIC => match image.topics.get(&name) {
                Some(t) => Ok(topic_entries(broker, t, keys.as_deref(), o)),
                None => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                )),
            },
            BROKER if name.is_empty() => Ok(cluster_default_entries(
                &image.broker_configs,
                keys.as_deref(),
                o,
            )),
            BROKER if name == broker.config.node_id.to_string() => Ok(broker_entries(
                broker,
                &image.broker_configs,
                keys.as_deref(),
                o,
            )),
            BROKER => Err((
                ResponseError::InvalidRequest,
                format!(
                    "this is broker {}, not broker '{name}'",
                    broker.config.node_id
                ),
            )),
            other => Err((
                ResponseError::InvalidRequest,
                format!("resource type {other} is not supported (only topics and brokers)"),
            )),
        };
        // An unauthorized principal learns nothing, not even whether the topic exists.
        let result = match refusal {
            Some(r) => Err(r),
            None => result,
        };
        results.push(match result {
            Ok(configs) => base.with_configs(configs),
            Err((e, msg)) => base
                .with_error_code(code(e))
                .with_error_message(Some(StrBytes::from_string(msg))),
        });
    }
    DescribeConfigsResponse::default().with_results(results)
}
