//! Topic configs raftka accepts, their broker-level synonyms and validation.
//!
//! [`TOPIC_CONFIGS`] lists every topic config of Kafka's LogConfig with Kafka's validation,
//! so clients such as Kafka Streams and Connect can create their internal topics. Each entry
//! says whether raftka honours it or accepts it without effect (`no_op`, with the reason that
//! is safe: mostly that sled has no segment files). Values raftka cannot honour (broker-side
//! recompression, per-topic fsync intervals, tiered storage) are refused with a reason; names
//! Kafka does not know are refused with INVALID_CONFIG.

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
    /// `Some(why)` for configs raftka accepts (validated as Kafka does) but that change
    /// nothing here, and why that is safe; `None` for configs that are honoured.
    pub no_op: Option<&'static str>,
}

/// Why the segment configs change nothing: sled stores batches, not segment files.
const NO_SEGMENTS: &str = "sled stores each partition as keyed batches, not segment files: \
     there is nothing to roll, index, preallocate or delete later, and retention already works \
     per batch (finer than per segment)";
/// Why the compaction-scheduling configs change nothing.
const COMPACTS_EVERY_PASS: &str = "the cleaner compacts every compacted partition's whole \
     committed log at every pass (log.retention.check.interval.ms), so records are never left \
     uncompacted longer than a pass: stricter than any ratio or maximum lag asks";

/// Every topic config of Kafka 3.9's LogConfig, with its Kafka type and default.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        broker_synonym: Some("log.cleanup.policy"),
        default: "delete",
        kind: ValueType::List,
        doc: "delete (retention by time and size), compact (latest value per key), or both.",
        no_op: None,
    },
    TopicConfigDef {
        name: "compression.gzip.level",
        broker_synonym: None,
        default: "-1",
        kind: ValueType::Int,
        doc: "Level used when the broker recompresses with gzip (1-9, -1 = default).",
        no_op: Some("raftka never recompresses (compression.type is always producer)"),
    },
    TopicConfigDef {
        name: "compression.lz4.level",
        broker_synonym: None,
        default: "9",
        kind: ValueType::Int,
        doc: "Level used when the broker recompresses with lz4 (1-17).",
        no_op: Some("raftka never recompresses (compression.type is always producer)"),
    },
    TopicConfigDef {
        name: "compression.type",
        broker_synonym: None,
        default: "producer",
        kind: ValueType::Str,
        doc: "Only 'producer': batches are stored as the producer compressed them.",
        no_op: None,
    },
    TopicConfigDef {
        name: "compression.zstd.level",
        broker_synonym: None,
        default: "3",
        kind: ValueType::Int,
        doc: "Level used when the broker recompresses with zstd (-131072 to 22).",
        no_op: Some("raftka never recompresses (compression.type is always producer)"),
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        broker_synonym: Some("log.cleaner.delete.retention.ms"),
        default: "86400000",
        kind: ValueType::Long,
        doc: "How long tombstones are kept in compacted topics.",
        no_op: None,
    },
    TopicConfigDef {
        name: "file.delete.delay.ms",
        broker_synonym: Some("log.segment.delete.delay.ms"),
        default: "60000",
        kind: ValueType::Long,
        doc: "Delay before a deleted segment file is removed from the file system.",
        no_op: Some(NO_SEGMENTS),
    },
    TopicConfigDef {
        name: "flush.messages",
        broker_synonym: None,
        default: "9223372036854775807",
        kind: ValueType::Long,
        doc: "Per-topic fsync interval in messages. Only the default is accepted: raftka \
              flushes per database (log.flush.interval.messages on the brokers).",
        no_op: None,
    },
    TopicConfigDef {
        name: "flush.ms",
        broker_synonym: None,
        default: "9223372036854775807",
        kind: ValueType::Long,
        doc: "Per-topic fsync interval in milliseconds. Only the default is accepted: raftka \
              flushes per database (log.flush.interval.ms on the brokers).",
        no_op: None,
    },
    TopicConfigDef {
        name: "follower.replication.throttled.replicas",
        broker_synonym: None,
        default: "",
        kind: ValueType::List,
        doc: "Replicas whose follower fetches are throttled: '*' or partition:broker pairs.",
        no_op: Some("raftka has no replication throttle; throttling only ever slows replication"),
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        broker_synonym: Some("log.index.interval.bytes"),
        default: "4096",
        kind: ValueType::Int,
        doc: "Bytes between offset index entries.",
        no_op: Some("batches are looked up by offset in sled's ordered tree; there is no sparse offset index"),
    },
    TopicConfigDef {
        name: "leader.replication.throttled.replicas",
        broker_synonym: None,
        default: "",
        kind: ValueType::List,
        doc: "Replicas whose leader-side reads are throttled: '*' or partition:broker pairs.",
        no_op: Some("raftka has no replication throttle; throttling only ever slows replication"),
    },
    TopicConfigDef {
        name: "local.retention.bytes",
        broker_synonym: Some("log.local.retention.bytes"),
        default: "-2",
        kind: ValueType::Long,
        doc: "Tiered storage: local size limit (-2 = retention.bytes).",
        no_op: Some("there is no tiered storage: all data is local and retention.bytes applies"),
    },
    TopicConfigDef {
        name: "local.retention.ms",
        broker_synonym: Some("log.local.retention.ms"),
        default: "-2",
        kind: ValueType::Long,
        doc: "Tiered storage: local time limit (-2 = retention.ms).",
        no_op: Some("there is no tiered storage: all data is local and retention.ms applies"),
    },
    TopicConfigDef {
        name: "max.compaction.lag.ms",
        broker_synonym: Some("log.cleaner.max.compaction.lag.ms"),
        default: "9223372036854775807",
        kind: ValueType::Long,
        doc: "Longest a record may stay uncompacted.",
        no_op: Some(COMPACTS_EVERY_PASS),
    },
    TopicConfigDef {
        name: "max.message.bytes",
        broker_synonym: Some("message.max.bytes"),
        default: "1048588",
        kind: ValueType::Int,
        doc: "Largest record batch accepted for this topic.",
        no_op: None,
    },
    TopicConfigDef {
        name: "message.downconversion.enable",
        broker_synonym: Some("log.message.downconversion.enable"),
        default: "true",
        kind: ValueType::Bool,
        doc: "Whether old fetch versions get down-converted batches (removed in Kafka 4.0).",
        no_op: Some("raftka never down-converts: fetch versions that cannot carry v2 batches are refused whatever the value"),
    },
    TopicConfigDef {
        name: "message.format.version",
        broker_synonym: None,
        default: "3.0-IV1",
        kind: ValueType::Str,
        doc: "Deprecated in Kafka 3.0 and ignored, as there: batches are always stored in the \
              v2 format the producer sent. Accepted so that tools and clients that still set \
              it work.",
        no_op: Some("ignored by Kafka 3.x as well: batches are stored in the v2 format"),
    },
    TopicConfigDef {
        name: "message.timestamp.after.max.ms",
        broker_synonym: Some("log.message.timestamp.after.max.ms"),
        default: "9223372036854775807",
        kind: ValueType::Long,
        doc: "Largest allowed amount a CreateTime timestamp may be ahead of the broker's clock.",
        no_op: Some("not enforced yet: every timestamp is accepted, as with Kafka's default"),
    },
    TopicConfigDef {
        name: "message.timestamp.before.max.ms",
        broker_synonym: Some("log.message.timestamp.before.max.ms"),
        default: "9223372036854775807",
        kind: ValueType::Long,
        doc: "Largest allowed amount a CreateTime timestamp may be behind the broker's clock.",
        no_op: Some("not enforced yet: every timestamp is accepted, as with Kafka's default"),
    },
    TopicConfigDef {
        name: "message.timestamp.difference.max.ms",
        broker_synonym: Some("log.message.timestamp.difference.max.ms"),
        default: "9223372036854775807",
        kind: ValueType::Long,
        doc: "Deprecated (Kafka 3.6) predecessor of message.timestamp.before/after.max.ms.",
        no_op: Some("not enforced yet: every timestamp is accepted, as with Kafka's default"),
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        broker_synonym: Some("log.message.timestamp.type"),
        default: "CreateTime",
        kind: ValueType::Str,
        doc: "CreateTime (the producer's timestamps) or LogAppendTime (the broker stamps \
              each batch with the time it was appended).",
        no_op: None,
    },
    TopicConfigDef {
        name: "min.cleanable.dirty.ratio",
        broker_synonym: Some("log.cleaner.min.cleanable.ratio"),
        default: "0.5",
        kind: ValueType::Double,
        doc: "Share of uncompacted log that makes a partition eligible for compaction.",
        no_op: Some(COMPACTS_EVERY_PASS),
    },
    TopicConfigDef {
        name: "min.compaction.lag.ms",
        broker_synonym: Some("log.cleaner.min.compaction.lag.ms"),
        default: "0",
        kind: ValueType::Long,
        doc: "Shortest time a record stays uncompacted: compaction stops at the first batch \
              whose newest timestamp is younger than this.",
        no_op: None,
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        broker_synonym: Some("min.insync.replicas"),
        default: "1",
        kind: ValueType::Int,
        doc: "Replicas that must have a write before acks=all succeeds.",
        no_op: None,
    },
    TopicConfigDef {
        name: "preallocate",
        broker_synonym: Some("log.preallocate"),
        default: "false",
        kind: ValueType::Bool,
        doc: "Preallocate segment files.",
        no_op: Some(NO_SEGMENTS),
    },
    TopicConfigDef {
        name: "remote.log.copy.disable",
        broker_synonym: None,
        default: "false",
        kind: ValueType::Bool,
        doc: "Tiered storage: stop copying segments to remote storage.",
        no_op: Some("there is no tiered storage"),
    },
    TopicConfigDef {
        name: "remote.log.delete.on.disable",
        broker_synonym: None,
        default: "false",
        kind: ValueType::Bool,
        doc: "Tiered storage: delete remote data when tiering is disabled.",
        no_op: Some("there is no tiered storage"),
    },
    TopicConfigDef {
        name: "remote.storage.enable",
        broker_synonym: None,
        default: "false",
        kind: ValueType::Bool,
        doc: "Tiered storage; only false is accepted (raftka has none).",
        no_op: None,
    },
    TopicConfigDef {
        name: "retention.bytes",
        broker_synonym: Some("log.retention.bytes"),
        default: "-1",
        kind: ValueType::Long,
        doc: "Size limit per partition; -1 = none.",
        no_op: None,
    },
    TopicConfigDef {
        name: "retention.ms",
        broker_synonym: Some("log.retention.ms"),
        default: "604800000",
        kind: ValueType::Long,
        doc: "Time limit of records; -1 = none.",
        no_op: None,
    },
    TopicConfigDef {
        name: "segment.bytes",
        broker_synonym: Some("log.segment.bytes"),
        default: "1073741824",
        kind: ValueType::Int,
        doc: "Size of a segment file.",
        no_op: Some(NO_SEGMENTS),
    },
    TopicConfigDef {
        name: "segment.index.bytes",
        broker_synonym: Some("log.index.size.max.bytes"),
        default: "10485760",
        kind: ValueType::Int,
        doc: "Size of a segment's offset index file.",
        no_op: Some(NO_SEGMENTS),
    },
    TopicConfigDef {
        name: "segment.jitter.ms",
        broker_synonym: Some("log.roll.jitter.ms"),
        default: "0",
        kind: ValueType::Long,
        doc: "Random jitter subtracted from segment.ms.",
        no_op: Some(NO_SEGMENTS),
    },
    TopicConfigDef {
        name: "segment.ms",
        broker_synonym: Some("log.roll.ms"),
        default: "604800000",
        kind: ValueType::Long,
        doc: "Age after which a segment is rolled.",
        no_op: Some(NO_SEGMENTS),
    },
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        broker_synonym: None,
        default: "false",
        kind: ValueType::Bool,
        doc: "Allow a replica outside the ISR to become leader.",
        no_op: None,
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

/// Checks one topic config key and value with Kafka's validators (LogConfig); values raftka
/// cannot honour are refused with a reason.
pub fn validate(key: &str, value: &str) -> Result<(), MetadataError> {
    let bad = |reason: &str| {
        Err(MetadataError::InvalidConfig {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    let Some(def) = topic_config(key) else {
        return bad("unknown topic config");
    };
    let v = value.trim();
    match def.kind {
        ValueType::Bool if v != "true" && v != "false" => return bad("expected true or false"),
        ValueType::Int if v.parse::<i32>().is_err() => return bad("expected a 32-bit integer"),
        ValueType::Long if v.parse::<i64>().is_err() => return bad("expected a 64-bit integer"),
        ValueType::Double if !v.parse::<f64>().is_ok_and(f64::is_finite) => {
            return bad("expected a number")
        }
        _ => {}
    }
    // Kafka's `atLeast(n)` validators.
    let at_least = |n: i64| -> Result<(), MetadataError> {
        if v.parse::<i64>().is_ok_and(|x| x >= n) {
            Ok(())
        } else {
            bad(&format!("must be at least {n}"))
        }
    };
    let between = |lo: i64, hi: i64| -> Result<(), MetadataError> {
        if v.parse::<i64>().is_ok_and(|x| (lo..=hi).contains(&x)) {
            Ok(())
        } else {
            bad(&format!("must be between {lo} and {hi}"))
        }
    };
    match key {
        "cleanup.policy"
            if v.is_empty()
                || !v
                    .split(',')
                    .all(|p| matches!(p.trim(), "delete" | "compact")) =>
        {
            bad("expected delete, compact or compact,delete")
        }
        "compression.type" if v != "producer" => {
            bad("only 'producer' is supported: raftka never recompresses batches")
        }
        "compression.gzip.level" if v != "-1" => between(1, 9),
        "compression.lz4.level" => between(1, 17),
        "compression.zstd.level" => between(-131_072, 22),
        "message.timestamp.type" if v != "CreateTime" && v != "LogAppendTime" => {
            bad("expected CreateTime or LogAppendTime")
        }
        "message.format.version" if !is_message_format_version(v) => {
            bad("expected a Kafka version such as 2.8 or 3.0-IV1")
        }
        "min.cleanable.dirty.ratio" => match v.parse::<f64>() {
            Ok(x) if (0.0..=1.0).contains(&x) => Ok(()),
            _ => bad("must be between 0 and 1"),
        },
        "max.message.bytes"
        | "delete.retention.ms"
        | "file.delete.delay.ms"
        | "index.interval.bytes"
        | "min.compaction.lag.ms"
        | "segment.jitter.ms"
        | "message.timestamp.after.max.ms"
        | "message.timestamp.before.max.ms"
        | "message.timestamp.difference.max.ms" => at_least(0),
        "min.insync.replicas" | "max.compaction.lag.ms" | "segment.ms" => at_least(1),
        "segment.index.bytes" => at_least(4),
        // Kafka's LegacyRecord.RECORD_OVERHEAD_V0.
        "segment.bytes" => at_least(14),
        "retention.ms" | "retention.bytes" => at_least(-1),
        "local.retention.ms" | "local.retention.bytes" => at_least(-2),
        "flush.messages" | "flush.ms" => {
            if v == def.default {
                Ok(())
            } else {
                bad(&format!(
                    "per-topic flushing is not supported (sled flushes the whole database): \
                     set log.{} on the brokers instead",
                    if key == "flush.ms" {
                        "flush.interval.ms"
                    } else {
                        "flush.interval.messages"
                    }
                ))
            }
        }
        "remote.storage.enable" if v == "true" => bad("tiered storage is not supported by raftka"),
        "leader.replication.throttled.replicas" | "follower.replication.throttled.replicas"
            if !is_throttled_replica_list(v) =>
        {
            bad("expected '*' or a list of partition:broker pairs, such as 0:1,1:2")
        }
        _ => Ok(()),
    }
}

/// Kafka's ThrottledReplicaListValidator: empty, `*`, or `partition:broker` pairs.
fn is_throttled_replica_list(v: &str) -> bool {
    if v.is_empty() || v == "*" {
        return true;
    }
    v.split(',').all(|pair| {
        pair.trim().split_once(':').is_some_and(|(p, b)| {
            p.trim().parse::<i32>().is_ok() && b.trim().parse::<i32>().is_ok()
        })
    })
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
        assert!(validate("segment.bytes", "52428800").is_ok());
        assert!(validate("no.such.config", "1").is_err());
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
    fn every_kafka_topic_config_is_known_and_its_default_valid() {
        // Kafka Streams' and Connect's internal topics set these.
        for (k, v) in [
            ("segment.bytes", "52428800"),
            ("segment.ms", "600000"),
            ("min.compaction.lag.ms", "0"),
            ("max.compaction.lag.ms", "86400000"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("index.interval.bytes", "4096"),
            ("preallocate", "true"),
            ("file.delete.delay.ms", "60000"),
            ("message.downconversion.enable", "false"),
            ("local.retention.ms", "-2"),
            ("local.retention.bytes", "1000"),
            ("leader.replication.throttled.replicas", "0:1, 1:2"),
            ("follower.replication.throttled.replicas", "*"),
        ] {
            assert!(validate(k, v).is_ok(), "{k}={v}");
        }
        for d in TOPIC_CONFIGS {
            assert!(validate(d.name, d.default).is_ok(), "default of {}", d.name);
        }
        // Kafka's validators.
        for (k, v) in [
            ("segment.bytes", "13"),
            ("segment.ms", "0"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.cleanable.dirty.ratio", "NaN"),
            ("max.compaction.lag.ms", "0"),
            ("preallocate", "yes"),
            ("local.retention.ms", "-3"),
            ("compression.lz4.level", "18"),
            ("compression.gzip.level", "0"),
            ("leader.replication.throttled.replicas", "0-1"),
            // Honest refusals: things raftka cannot do.
            ("remote.storage.enable", "true"),
            ("flush.messages", "1"),
        ] {
            assert!(validate(k, v).is_err(), "{k}={v} must be refused");
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
