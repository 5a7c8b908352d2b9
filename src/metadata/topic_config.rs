//! Topic configs raftka accepts, their broker-level synonyms and validation.
//!
//! A config that is not in [`TOPIC_CONFIGS`] is refused with INVALID_CONFIG rather than
//! stored and ignored; values raftka cannot honour (e.g. broker-side recompression) are
//! refused with a reason.

use std::collections::BTreeMap;

use crate::config::{setting, BrokerConfig, Source, ValueType};

use super::MetadataError;

/// One topic config.
#[derive(Debug)]
pub struct TopicConfigDef {
    pub name: &'static str,
    /// The broker setting that supplies the default, if any.
    pub broker_synonym: Option<&'static str>,
    /// The default when there is no broker synonym.
    pub default: &'static str,
    pub kind: ValueType,
    pub doc: &'static str,
}

pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        broker_synonym: Some("log.cleanup.policy"),
        default: "delete",
        kind: ValueType::List,
        doc: "delete (retention by time and size), compact (latest value per key), or both.",
    },
    TopicConfigDef {
        name: "compression.type",
        broker_synonym: None,
        default: "producer",
        kind: ValueType::Str,
        doc: "Only 'producer': batches are stored as the producer compressed them.",
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        broker_synonym: None,
        default: "86400000",
        kind: ValueType::Long,
        doc: "How long tombstones are kept in compacted topics.",
    },
    TopicConfigDef {
        name: "max.message.bytes",
        broker_synonym: Some("message.max.bytes"),
        default: "1048588",
        kind: ValueType::Int,
        doc: "Largest record batch accepted for this topic.",
    },
    TopicConfigDef {
        name: "message.format.version",
        broker_synonym: None,
        default: "3.0-IV1",
        kind: ValueType::Str,
        doc: "Deprecated in Kafka 3.0 and ignored, as there: batches are always stored in the \
              v2 format the producer sent. Accepted so that tools and clients that still set \
              it work.",
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        broker_synonym: None,
        default: "CreateTime",
        kind: ValueType::Str,
        doc: "CreateTime (the producer's timestamps) or LogAppendTime (the broker stamps \
              each batch with the time it was appended).",
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        broker_synonym: Some("min.insync.replicas"),
        default: "1",
        kind: ValueType::Int,
        doc: "Replicas that must have a write before acks=all succeeds.",
    },
    TopicConfigDef {
        name: "retention.bytes",
        broker_synonym: Some("log.retention.bytes"),
        default: "-1",
        kind: ValueType::Long,
        doc: "Size limit per partition; -1 = none.",
    },
    TopicConfigDef {
        name: "retention.ms",
        broker_synonym: Some("log.retention.ms"),
        default: "604800000",
        kind: ValueType::Long,
        doc: "Time limit of records; -1 = none.",
    },
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        broker_synonym: None,
        default: "false",
        kind: ValueType::Bool,
        doc: "Allow a replica outside the ISR to become leader.",
    },
];

pub fn topic_config(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Dynamic broker settings from the metadata image: "" → cluster-wide, "`<id>`" → one broker.
pub type DynamicConfigs = BTreeMap<String, BTreeMap<String, String>>;

/// The broker-level values behind a topic config's default, most specific first (as Kafka
/// lists synonyms): this broker's dynamic value, the cluster-wide dynamic default, the static
/// setting, the built-in default. Values are as set (`log.retention.hours` in hours).
pub fn default_synonyms(
    def: &TopicConfigDef,
    broker: &BrokerConfig,
    dynamic: &DynamicConfigs,
) -> Vec<(String, String, Source)> {
    let mut out = Vec::new();
    let Some(syn) = def.broker_synonym else {
        out.push((
            def.name.to_string(),
            def.default.to_string(),
            Source::Default,
        ));
        return out;
    };
    let mine = broker.node_id.to_string();
    for (key, source) in [
        (mine.as_str(), Source::DynamicBroker),
        ("", Source::DynamicDefault),
    ] {
        if let Some(v) = dynamic.get(key).and_then(|m| m.get(syn)) {
            out.push((syn.to_string(), v.clone(), source));
        }
    }
    if syn == "log.retention.ms" {
        match (
            broker.raw("log.retention.ms"),
            broker.raw("log.retention.hours"),
        ) {
            (Some((v, Source::Static)), _) => {
                out.push((syn.to_string(), v.to_string(), Source::Static))
            }
            (_, Some((v, Source::Static))) => {
                out.push(("log.retention.hours".into(), v.to_string(), Source::Static))
            }
            _ => {}
        }
        let hours = setting("log.retention.hours").map_or("168", |d| d.default);
        out.push((
            "log.retention.hours".into(),
            hours.to_string(),
            Source::Default,
        ));
        return out;
    }
    match broker.raw(syn) {
        Some((v, Source::Static)) => {
            out.push((syn.to_string(), v.to_string(), Source::Static));
            let d = setting(syn).map_or(def.default, |d| d.default);
            out.push((syn.to_string(), d.to_string(), Source::Default));
        }
        Some((v, _)) => out.push((syn.to_string(), v.to_string(), Source::Default)),
        None => out.push((syn.to_string(), def.default.to_string(), Source::Default)),
    }
    out
}

/// The default of a topic config on this broker and where that default comes from.
pub fn broker_default(
    def: &TopicConfigDef,
    broker: &BrokerConfig,
    dynamic: &DynamicConfigs,
) -> (String, Source) {
    let syns = default_synonyms(def, broker, dynamic);
    let (name, value, source) = syns
        .into_iter()
        .next()
        .unwrap_or_else(|| (def.name.into(), def.default.into(), Source::Default));
    if name == "log.retention.hours" {
        // The hours setting (static or default) is what broker.retention_ms was computed from.
        return (broker.retention_ms.to_string(), source);
    }
    (value, source)
}

/// Checks one topic config key and value.
pub fn validate(key: &str, value: &str) -> Result<(), MetadataError> {
    let bad = |reason: &str| {
        Err(MetadataError::InvalidConfig {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    let Some(def) = topic_config(key) else {
        return bad("unknown or unsupported topic config");
    };
    let v = value.trim();
    match def.kind {
        ValueType::Bool if v != "true" && v != "false" => return bad("expected true or false"),
        ValueType::Int if v.parse::<i32>().is_err() => return bad("expected a 32-bit integer"),
        ValueType::Long if v.parse::<i64>().is_err() => return bad("expected a 64-bit integer"),
        _ => {}
    }
    match key {
        "cleanup.policy"
            if v.is_empty()
                || !v
                    .split(',')
                    .all(|p| matches!(p.trim(), "delete" | "compact")) =>
        {
            return bad("expected delete, compact or compact,delete")
        }
        "compression.type" if v != "producer" => {
            return bad("only 'producer' is supported: raftka never recompresses batches")
        }
        "message.timestamp.type" if v != "CreateTime" && v != "LogAppendTime" => {
            return bad("expected CreateTime or LogAppendTime")
        }
        "message.format.version" if !is_message_format_version(v) => {
            return bad("expected a Kafka version such as 2.8 or 3.0-IV1")
        }
        "max.message.bytes" | "delete.retention.ms" if v.starts_with('-') => {
            return bad("must be 0 or more")
        }
        "min.insync.replicas" if v.parse::<i32>().map(|n| n < 1).unwrap_or(true) => {
            return bad("must be at least 1")
        }
        "retention.ms" | "retention.bytes" if v.parse::<i64>().map(|n| n < -1).unwrap_or(true) => {
            return bad("must be -1 or more")
        }
        _ => {}
    }
    Ok(())
}

/// A value Kafka's `message.format.version` accepts: `0.8.0` … `3.x`, optionally with an
/// `-IVn` suffix (Kafka's MetadataVersion / ApiVersion strings).
fn is_message_format_version(v: &str) -> bool {
    let version = match v.split_once("-IV") {
        Some((version, iv)) => {
            if iv.is_empty() || !iv.bytes().all(|c| c.is_ascii_digit()) {
                return false;
            }
            version
        }
        None => v,
    };
    let parts: Vec<&str> = version.split('.').collect();
    (2..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_key_and_reason() {
        assert!(validate("retention.ms", "1000").is_ok());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        let e = validate("retention.ms", "soon").unwrap_err();
        assert!(e.to_string().contains("retention.ms"), "{e}");
        assert!(validate("segment.bytes", "1").is_err());
        assert!(validate("compression.type", "gzip").is_err());
        assert!(validate("min.insync.replicas", "0").is_err());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate("message.timestamp.type", "AppendTime").is_err());
        for ok in ["0.10.0", "0.10.2-IV0", "2.8", "3.0-IV1", "0.8.2.2"] {
            assert!(validate("message.format.version", ok).is_ok(), "{ok}");
        }
        for bad in ["", "3", "three", "3.0-IV", "3.0-", "3..0"] {
            assert!(validate("message.format.version", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_follow_broker_settings() {
        let b = BrokerConfig::from_pairs(vec![(
            "t".into(),
            "message.max.bytes".into(),
            "2000".into(),
        )])
        .unwrap();
        let d = topic_config("max.message.bytes").unwrap();
        let none = DynamicConfigs::new();
        assert_eq!(
            broker_default(d, &b, &none),
            ("2000".into(), Source::Static)
        );
        let d = topic_config("retention.ms").unwrap();
        assert_eq!(
            broker_default(d, &b, &none),
            ("604800000".into(), Source::Default)
        );
        // Dynamic values win: this broker's over the cluster-wide default.
        let mut dynamic = DynamicConfigs::new();
        dynamic.insert(
            String::new(),
            [("log.retention.ms".to_string(), "5".to_string())].into(),
        );
        assert_eq!(
            broker_default(d, &b, &dynamic),
            ("5".into(), Source::DynamicDefault)
        );
        dynamic.insert(
            "1".into(),
            [("log.retention.ms".to_string(), "7".to_string())].into(),
        );
        assert_eq!(
            broker_default(d, &b, &dynamic),
            ("7".into(), Source::DynamicBroker)
        );
        assert_eq!(default_synonyms(d, &b, &dynamic).len(), 3);
    }
}
