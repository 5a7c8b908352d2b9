//! `/v1/cluster`: the cluster as this broker sees it, as JSON — brokers (up or fenced), the
//! controller, the metadata quorum's members (with their replication lag on the leader),
//! topics with each partition's leader, replicas and ISR, the consumer groups this broker
//! coordinates with their state, members and lag, and the recent events.
//!
//! Group state lives with each group's coordinator, so a broker lists only the groups it
//! coordinates; lag is measured against this broker's copy of each partition (its high
//! watermark), and left out for partitions it holds no replica of.

use serde_json::{json, Value};

use crate::broker::Broker;
use crate::group::GroupState;
use crate::offsets_topic::OFFSETS_TOPIC;

/// One committed offset and the lag behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    /// This broker's high watermark of the partition.
    pub end: i64,
    /// `end - committed`, never below 0.
    pub lag: i64,
}

/// The lag of every committed offset of `group` that this broker can measure (it must
/// coordinate the group and hold a replica of the partition).
pub fn group_lag(broker: &Broker, group: &str) -> Vec<PartitionLag> {
    let Ok(topics) = broker.groups.fetch_offsets(group, None) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (topic, partitions) in topics {
        for (partition, committed) in partitions {
            let (Some(c), Some(log)) = (committed, broker.logs.partition(&topic, partition)) else {
                continue;
            };
            let end = log.offsets().high_watermark;
            out.push(PartitionLag {
                topic: topic.clone(),
                partition,
                committed: c.offset,
                end,
                lag: (end - c.offset).max(0),
            });
        }
    }
    out
}

/// The JSON document of `/v1/cluster`.
pub fn cluster(broker: &Broker) -> Value {
    let image = broker.metadata.image();
    let controller = broker
        .known_controller()
        .or(match broker.metadata.quorum() {
            None => Some(broker.config.node_id),
            Some(_) => None,
        });
    let brokers: Vec<Value> = image
        .brokers
        .values()
        .map(|b| {
            json!({
                "id": b.id,
                "host": b.host,
                "port": b.port,
                "rack": b.rack,
                "state": if b.fenced { "fenced" } else { "up" },
                "controller": controller == Some(b.id),
            })
        })
        .collect();
    let quorum = broker.metadata.quorum().map(|q| {
        let metrics = q.metrics();
        let m = metrics.borrow();
        let last = m.last_log_index.unwrap_or(0);
        let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
        let members: Vec<Value> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| {
                let lag = m.replication.as_ref().map(|r| {
                    let matched = r.get(id).and_then(|l| l.as_ref()).map_or(0, |l| l.index);
                    last.saturating_sub(matched)
                });
                json!({
                    "id": id,
                    "raft_addr": node.raft_addr,
                    "voter": voters.contains(id),
                    "lag": lag,
                })
            })
            .collect();
        json!({
            "leader": m.current_leader,
            "term": m.current_term,
            "last_log_index": m.last_log_index,
            "applied_index": m.last_applied.map(|l| l.index),
            "members": members,
        })
    });
    let topics: Vec<Value> = image
        .topics
        .values()
        .map(|t| {
            let partitions: Vec<Value> = t
                .partitions
                .iter()
                .map(|p| {
                    let offline =
                        p.leader < 0 || image.brokers.get(&p.leader).is_none_or(|b| b.fenced);
                    json!({
                        "partition": p.index,
                        "leader": p.leader,
                        "leader_epoch": p.leader_epoch,
                        "replicas": p.replicas,
                        "isr": p.isr,
                        "under_replicated": p.isr.len() < p.replicas.len(),
                        "offline": offline,
                        "high_watermark": broker
                            .logs
                            .partition(&t.name, p.index)
                            .map(|l| l.offsets().high_watermark),
                    })
                })
                .collect();
            json!({
                "name": t.name,
                "internal": t.name == OFFSETS_TOPIC || t.name == crate::txn::TXN_TOPIC,
                "partitions": partitions,
            })
        })
        .collect();
    let groups: Vec<Value> = broker
        .groups
        .list(&[])
        .into_iter()
        .filter(|g| g.state != GroupState::Dead)
        .map(|g| {
            let members: Vec<Value> = broker
                .groups
                .describe(&g.group_id)
                .map(|d| d.members)
                .unwrap_or_default()
                .into_iter()
                .map(|m| {
                    json!({
                        "member_id": m.member_id,
                        "instance_id": m.group_instance_id,
                        "client_id": m.client_id,
                        "client_host": m.client_host,
                    })
                })
                .collect();
            let lag = group_lag(broker, &g.group_id);
            let total: i64 = lag.iter().map(|l| l.lag).sum();
            json!({
                "group": g.group_id,
                "state": g.state.as_str(),
                "protocol_type": g.protocol_type,
                "coordinator": broker.config.node_id,
                "members": members,
                "total_lag": total,
                "lag": lag.iter().map(|l| json!({
                    "topic": l.topic,
                    "partition": l.partition,
                    "committed": l.committed,
                    "end": l.end,
                    "lag": l.lag,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "node_id": broker.config.node_id,
        "cluster_id": broker.cluster_id(),
        "controller": controller,
        "ready": super::ready::check(broker),
        "quorum": quorum,
        "brokers": brokers,
        "voters": broker.config.quorum_voters.iter().map(|v| v.id).collect::<Vec<_>>(),
        "topics": topics,
        "groups": groups,
        "events": broker.events.recent(),
    })
}
