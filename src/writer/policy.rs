//! A topic's write policy, resolved once per request from its configs (the topic's overrides,
//! else the broker's defaults) into typed fields.
//!
//! May depend on: nothing else in the crate (the caller supplies the config lookup).

/// What a topic's configs say about writing to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicPolicy {
    /// `max.message.bytes`: the largest batch accepted.
    pub max_batch_bytes: usize,
    /// `min.insync.replicas`: acks=all needs at least this many in-sync replicas.
    pub min_insync_replicas: usize,
    /// `cleanup.policy` includes `compact`: records need keys.
    pub compacted: bool,
    /// `message.timestamp.type` is `LogAppendTime`: the broker stamps its append time.
    pub log_append_time: bool,
}

impl TopicPolicy {
    /// Resolves the policy through `config` (a topic config's effective value, `None` when
    /// unknown); `message_max_bytes` stands in for an unreadable `max.message.bytes`.
    pub fn resolve(config: impl Fn(&str) -> Option<String>, message_max_bytes: usize) -> Self {
        Self {
            max_batch_bytes: config("max.message.bytes")
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(message_max_bytes),
            min_insync_replicas: config("min.insync.replicas")
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(1),
            compacted: config("cleanup.policy")
                .is_some_and(|p| p.split(',').any(|x| x.trim() == "compact")),
            log_append_time: config("message.timestamp.type").is_some_and(|t| t == "LogAppendTime"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_overrides_and_falls_back_to_defaults() {
        let p = TopicPolicy::resolve(
            |k| match k {
                "max.message.bytes" => Some("2048".into()),
                "min.insync.replicas" => Some("2".into()),
                "cleanup.policy" => Some("delete, compact".into()),
                "message.timestamp.type" => Some("LogAppendTime".into()),
                _ => None,
            },
            100,
        );
        assert_eq!(
            p,
            TopicPolicy {
                max_batch_bytes: 2048,
                min_insync_replicas: 2,
                compacted: true,
                log_append_time: true,
            }
        );
        let d = TopicPolicy::resolve(|_| None, 100);
        assert_eq!((d.max_batch_bytes, d.min_insync_replicas), (100, 1));
        assert!(!d.compacted && !d.log_append_time);
    }
}
