//! Config changes as the metadata quorum applies them: AlterConfigs (replace every override
//! of a resource) and IncrementalAlterConfigs (SET, DELETE, APPEND, SUBTRACT per key), for
//! topics and for brokers' dynamic settings (one broker, or the cluster-wide default).
//!
//! Everything here is deterministic: the command carries the operations, not a precomputed
//! result, so two concurrent alterations of different keys of one topic both take effect.
//!
//! May depend on: `config` (setting types), `metadata::topic_config` (validation).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::topic_config::{self, topic_config};
use super::MetadataError;
use crate::config::ValueType;

/// One change to one config key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOp {
    Set(String),
    /// Remove the override: the default applies again.
    Delete,
    /// Add items to a list config (only if absent).
    Append(String),
    /// Remove items from a list config.
    Subtract(String),
}

/// What a config change applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    /// One broker's dynamic settings (`Some(id)`), or the cluster-wide default (`None`, the
    /// resource name "" in Kafka's APIs).
    Broker(Option<i32>),
}

impl ConfigResource {
    /// The key of a broker resource in `ClusterImage::broker_configs`.
    pub fn broker_key(id: Option<i32>) -> String {
        id.map(|i| i.to_string()).unwrap_or_default()
    }
}

/// Broker settings that can be changed at runtime through the quorum, and the topic config
/// each one is the default of (Kafka calls these cluster-wide dynamic log configs).
pub const DYNAMIC_BROKER_CONFIGS: &[(&str, &str)] = &[
    ("log.cleanup.policy", "cleanup.policy"),
    ("log.retention.ms", "retention.ms"),
    ("log.retention.bytes", "retention.bytes"),
    ("message.max.bytes", "max.message.bytes"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("log.cleaner.delete.retention.ms", "delete.retention.ms"),
    ("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms"),
    ("log.message.timestamp.type", "message.timestamp.type"),
];

/// Broker settings that are not topic defaults but can be changed at runtime too: positive
/// durations in ms, read where they are used (`broker_dynamic`), so a change applies to new
/// connections (`connections.max.idle.ms`) and the next expiry pass
/// (`producer.id.expiration.ms`).
pub const DYNAMIC_BROKER_SETTINGS: &[&str] =
    &["connections.max.idle.ms", "producer.id.expiration.ms"];

/// Whether `key` is a dynamic broker setting (either kind).
pub fn is_dynamic_broker_config(key: &str) -> bool {
    dynamic_topic_key(key).is_some()
        || DYNAMIC_BROKER_SETTINGS.contains(&key)
        || quota_default(key).is_some()
}

fn dynamic_names() -> String {
    DYNAMIC_BROKER_CONFIGS
        .iter()
        .map(|(b, _)| *b)
        .chain(DYNAMIC_BROKER_SETTINGS.iter().copied())
        .chain(REPLICATION_QUOTA_CONFIGS.iter().map(|(k, _)| *k))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Dynamic broker settings that are not topic-config defaults (Kafka's replication quotas),
/// with their built-in defaults: bytes per second, `Long.MAX_VALUE` = unlimited.
/// `follower.replication.throttled.rate` is enforced (`replication::throttle`); the leader
/// rate is accepted and not enforced.
pub const REPLICATION_QUOTA_CONFIGS: &[(&str, &str)] = &[
    ("follower.replication.throttled.rate", "9223372036854775807"),
    ("leader.replication.throttled.rate", "9223372036854775807"),
];

fn quota_default(key: &str) -> Option<&'static str> {
    REPLICATION_QUOTA_CONFIGS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, d)| *d)
}

/// The topic config a dynamic broker setting is the default of.
pub fn dynamic_topic_key(broker_key: &str) -> Option<&'static str> {
    DYNAMIC_BROKER_CONFIGS
        .iter()
        .find(|(b, _)| *b == broker_key)
        .map(|(_, t)| *t)
}

fn invalid(key: &str, reason: impl Into<String>) -> MetadataError {
    MetadataError::InvalidConfig {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// Checks one value for a key of `resource`'s kind; returns the type of the key.
fn validate(resource: &ConfigResource, key: &str, value: &str) -> Result<ValueType, MetadataError> {
    match resource {
        ConfigResource::Topic(_) => {
            topic_config::validate(key, value)?;
            Ok(topic_config(key).map(|d| d.kind).unwrap_or(ValueType::Str))
        }
        ConfigResource::Broker(_) if DYNAMIC_BROKER_SETTINGS.contains(&key) => {
            match value.trim().parse::<i64>() {
                Ok(v) if v > 0 => Ok(ValueType::Long),
                _ => Err(invalid(key, "must be a positive number of milliseconds")),
            }
        }
        ConfigResource::Broker(_) if quota_default(key).is_some() => {
            match value.trim().parse::<i64>() {
                Ok(v) if v >= 0 => Ok(ValueType::Long),
                _ => Err(invalid(
                    key,
                    "must be a number of bytes per second (0 or more)",
                )),
            }
        }
        ConfigResource::Broker(_) => {
            let Some(topic_key) = dynamic_topic_key(key) else {
                return Err(invalid(
                    key,
                    format!(
                        "not a dynamic broker config; the dynamic ones are {}",
                        dynamic_names()
                    ),
                ));
            };
            topic_config::validate(topic_key, value).map_err(|e| match e {
                MetadataError::InvalidConfig { reason, .. } => invalid(key, reason),
                other => other,
            })?;
            Ok(topic_config(topic_key)
                .map(|d| d.kind)
                .unwrap_or(ValueType::Str))
        }
    }
}

/// The kind of a key, for deciding whether APPEND/SUBTRACT apply; unknown keys are refused.
fn kind_of(resource: &ConfigResource, key: &str) -> Result<ValueType, MetadataError> {
    if matches!(resource, ConfigResource::Broker(_))
        && (DYNAMIC_BROKER_SETTINGS.contains(&key) || quota_default(key).is_some())
    {
        return Ok(ValueType::Long);
    }
    let topic_key = match resource {
        ConfigResource::Topic(_) => Some(key),
        ConfigResource::Broker(_) => dynamic_topic_key(key),
    };
    topic_key
        .and_then(topic_config)
        .map(|d| d.kind)
        .ok_or_else(|| invalid(key, "unknown or unsupported config"))
}

/// The built-in default of a key (what APPEND/SUBTRACT start from without an override, as
/// Kafka's incremental alter does).
fn builtin_default(resource: &ConfigResource, key: &str) -> String {
    if let (ConfigResource::Broker(_), Some(d)) = (resource, quota_default(key)) {
        return d.to_string();
    }
    if matches!(resource, ConfigResource::Broker(_)) && DYNAMIC_BROKER_SETTINGS.contains(&key) {
        return crate::config::setting(key)
            .map(|d| d.default.to_string())
            .unwrap_or_default();
    }
    let topic_key = match resource {
        ConfigResource::Topic(_) => Some(key),
        ConfigResource::Broker(_) => dynamic_topic_key(key),
    };
    topic_key
        .and_then(topic_config)
        .map(|d| d.default.to_string())
        .unwrap_or_default()
}

fn list_items(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Applies `ops` to the overrides `current` of `resource` and returns the new overrides.
/// With `replace` (AlterConfigs) the result holds only what `ops` set.
pub fn apply_ops(
    resource: &ConfigResource,
    current: &BTreeMap<String, String>,
    ops: &[(String, ConfigOp)],
    replace: bool,
) -> Result<BTreeMap<String, String>, MetadataError> {
    let mut seen: Vec<&str> = Vec::new();
    for (k, _) in ops {
        if seen.contains(&k.as_str()) {
            return Err(invalid(k, "the same key is altered twice in one request"));
        }
        seen.push(k);
    }
    let mut out = if replace {
        BTreeMap::new()
    } else {
        current.clone()
    };
    for (key, op) in ops {
        match op {
            ConfigOp::Set(v) => {
                validate(resource, key, v)?;
                out.insert(key.clone(), v.trim().to_string());
            }
            ConfigOp::Delete => {
                kind_of(resource, key)?;
                out.remove(key);
            }
            ConfigOp::Append(v) | ConfigOp::Subtract(v) => {
                if kind_of(resource, key)? != ValueType::List {
                    return Err(invalid(
                        key,
                        "APPEND and SUBTRACT apply only to list configs",
                    ));
                }
                let base = out
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| builtin_default(resource, key));
                let mut items = list_items(&base);
                for item in list_items(v) {
                    if matches!(op, ConfigOp::Append(_)) {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    } else {
                        items.retain(|i| *i != item);
                    }
                }
                let joined = items.join(",");
                validate(resource, key, &joined)?;
                out.insert(key.clone(), joined);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic() -> ConfigResource {
        ConfigResource::Topic("t".into())
    }

    fn set(k: &str, v: &str) -> (String, ConfigOp) {
        (k.into(), ConfigOp::Set(v.into()))
    }

    #[test]
    fn incremental_ops_keep_other_keys_and_replace_drops_them() {
        let cur: BTreeMap<String, String> =
            [("retention.ms".to_string(), "1000".to_string())].into();
        let out = apply_ops(&topic(), &cur, &[set("retention.bytes", "5")], false).unwrap();
        assert_eq!(out.len(), 2);
        let out = apply_ops(&topic(), &cur, &[set("retention.bytes", "5")], true).unwrap();
        assert_eq!(out.len(), 1);
        let out = apply_ops(
            &topic(),
            &cur,
            &[("retention.ms".into(), ConfigOp::Delete)],
            false,
        )
        .unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn append_and_subtract_work_on_lists_from_the_default() {
        let cur = BTreeMap::new();
        let out = apply_ops(
            &topic(),
            &cur,
            &[("cleanup.policy".into(), ConfigOp::Append("compact".into()))],
            false,
        )
        .unwrap();
        assert_eq!(out["cleanup.policy"], "delete,compact");
        let out = apply_ops(
            &topic(),
            &out,
            &[("cleanup.policy".into(), ConfigOp::Subtract("delete".into()))],
            false,
        )
        .unwrap();
        assert_eq!(out["cleanup.policy"], "compact");
        // Subtracting the last item leaves an invalid policy.
        let e = apply_ops(
            &topic(),
            &out,
            &[(
                "cleanup.policy".into(),
                ConfigOp::Subtract("compact".into()),
            )],
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("cleanup.policy"), "{e}");
        let e = apply_ops(
            &topic(),
            &cur,
            &[("retention.ms".into(), ConfigOp::Append("1".into()))],
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("only to list configs"), "{e}");
    }

    #[test]
    fn errors_name_the_key_and_the_reason() {
        let cur = BTreeMap::new();
        let e = apply_ops(&topic(), &cur, &[set("retention.ms", "soon")], false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for config 'retention.ms': expected a 64-bit integer"
        );
        let e = apply_ops(&topic(), &cur, &[set("segment.bytes", "1")], false).unwrap_err();
        assert!(e.to_string().contains("segment.bytes"), "{e}");
        let b = ConfigResource::Broker(None);
        assert!(apply_ops(&b, &cur, &[set("log.retention.ms", "5")], false).is_ok());
        let e = apply_ops(&b, &cur, &[set("num.partitions", "5")], false).unwrap_err();
        assert!(e.to_string().contains("not a dynamic broker config"), "{e}");
        // Broker settings that are not topic defaults: positive durations only.
        let one = ConfigResource::Broker(Some(1));
        let out = apply_ops(&one, &cur, &[set("connections.max.idle.ms", "1500")], false).unwrap();
        assert_eq!(
            out.get("connections.max.idle.ms").map(String::as_str),
            Some("1500")
        );
        for bad in ["0", "-5", "soon"] {
            let e =
                apply_ops(&one, &cur, &[set("producer.id.expiration.ms", bad)], false).unwrap_err();
            assert!(e.to_string().contains("positive"), "{e}");
        }
        // New topic defaults are validated as their topic config.
        assert!(apply_ops(
            &b,
            &cur,
            &[set("log.message.timestamp.type", "LogAppendTime")],
            false
        )
        .is_ok());
        assert!(apply_ops(
            &b,
            &cur,
            &[set("log.message.timestamp.type", "Never")],
            false
        )
        .is_err());
        let e = apply_ops(&b, &cur, &[set("log.retention.bytes", "-5")], false).unwrap_err();
        assert!(e.to_string().contains("log.retention.bytes"), "{e}");
    }
}
