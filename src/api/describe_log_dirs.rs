//! DescribeLogDirs (key 35, kafka-log-dirs.sh): this broker's one log directory (`log.dirs`,
//! the sled database) and the replicas it holds, each with its size — the stored batches from
//! the log start on, summed from their headers (sled's own overhead and not yet reclaimed
//! space are not counted) — and its offset lag (Kafka's: the high watermark minus the log end,
//! at least 0). v4 adds the file system's total and usable bytes. Every answer is about this
//! broker only, as in Kafka: tools ask each broker.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    // Kafka: DESCRIBE on the cluster (v3+ say so; older versions get no log dirs).
    if !authz::cluster(ctx, Operation::Describe) {
        let r = DescribeLogDirsResponse::default();
        return if ctx.api_version >= 3 {
            r.with_error_code(super::errors::code(
                kafka_protocol::ResponseError::ClusterAuthorizationFailed,
            ))
        } else {
            r
        };
    }
    // None: every replica here; otherwise the named partitions that are here.
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|topics| {
        let mut m: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for t in topics {
            m.entry(t.topic.0.to_string())
                .or_default()
                .extend(t.partitions);
        }
        m
    });
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    let mut keys = broker.logs.open_partitions();
    keys.sort();
    for (topic, partition) in keys {
        if let Some(w) = &wanted {
            if !w.get(&topic).is_some_and(|ps| ps.contains(&partition)) {
                continue;
            }
        }
        let Some(log) = broker.logs.partition(&topic, partition) else {
            continue;
        };
        let size = match log.batch_spans() {
            Ok(spans) => spans.iter().map(|s| s.size).sum::<u64>(),
            Err(e) => {
                tracing::warn!(topic = %topic, partition, error = %e, "cannot size partition; left out of DescribeLogDirs");
                continue;
            }
        };
        let o = log.offsets();
        by_topic.entry(topic).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(partition)
                .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                .with_offset_lag((o.high_watermark - o.log_end).max(0))
                .with_is_future_key(false),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, partitions)| {
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    let dir = std::path::absolute(&broker.config.data_dir)
        .unwrap_or_else(|_| broker.config.data_dir.clone());
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1);
    if ctx.api_version >= 4 {
        if let Ok((total, usable)) = crate::log::space::file_system_bytes(&dir) {
            result = result
                .with_total_bytes(i64::try_from(total).unwrap_or(i64::MAX))
                .with_usable_bytes(i64::try_from(usable).unwrap_or(i64::MAX));
        }
    }
    DescribeLogDirsResponse::default().with_results(vec![result])
}
