//! DescribeQuorum (key 55, `kafka-metadata-quorum.sh describe --status/--replication`): the
//! metadata quorum as openraft sees it, in KRaft's terms — partition 0 of
//! `__cluster_metadata`, leader and epoch (the Raft term), high watermark (the leader's last
//! applied index + 1), and per voter and observer (learner) its log end offset (the index the
//! leader knows it has replicated + 1). openraft keeps no per-follower times, so the last fetch
//! time is the last broker heartbeat the controller (the quorum leader) received from that
//! node, and the last caught-up time is that same time for a node whose log is at the leader's
//! end (else -1, unknown). v2 adds each node's Kafka listeners and replica directory ids (zero:
//! raftka has none).
//!
//! Only the quorum leader can answer; any other broker forwards the request once to the leader
//! over the authenticated inter-broker gRPC service (`api::quorum_admin`; it works whatever
//! the security of the client listeners), as a KRaft broker forwards it to the active
//! controller. A forwarded request reaching a non-leader, or no known leader, answers
//! NOT_LEADER_OR_FOLLOWER. A broker without a quorum answers as a one-voter
//! quorum of itself at epoch 0, its log empty.

use std::time::Duration;

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::code;
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::metadata::ClusterImage;
use crate::security::acl::Operation;

/// KRaft's metadata topic, which DescribeQuorum describes.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    // Kafka: DESCRIBE on the cluster.
    if !authz::cluster(ctx, Operation::Describe) {
        return DescribeQuorumResponse::default()
            .with_error_code(code(ResponseError::ClusterAuthorizationFailed));
    }
    let Some(q) = broker.metadata.quorum() else {
        return single_broker(broker, ctx.api_version);
    };
    if is_leader(broker) {
        return from_leader(broker, ctx.api_version);
    }
    let forwarded = super::quorum_admin::forward(
        broker,
        ApiKey::DescribeQuorum,
        ctx.api_version,
        &req,
        Duration::from_secs(5),
    )
    .await;
    match forwarded {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(leader = ?q.current_leader(), error = %e, "forwarding DescribeQuorum failed");
            refused(broker)
        }
    }
}

fn is_leader(broker: &Broker) -> bool {
    super::quorum_admin::is_quorum_leader(broker)
}

/// NOT_LEADER_OR_FOLLOWER with the leader and epoch this broker knows.
fn refused(broker: &Broker) -> DescribeQuorumResponse {
    let (leader, term) = broker.metadata.quorum().map_or((None, 0), |q| {
        let m = q.metrics();
        let m = m.borrow();
        (m.current_leader, m.current_term)
    });
    let p = PartitionData::default()
        .with_error_code(code(ResponseError::NotLeaderOrFollower))
        .with_leader_id(BrokerId(
            leader.and_then(|l| i32::try_from(l).ok()).unwrap_or(-1),
        ))
        .with_leader_epoch(i32::try_from(term).unwrap_or(i32::MAX));
    response(vec![p], Vec::new())
}

/// The answer to a DescribeQuorum forwarded by another broker: the leader's view, or
/// NOT_LEADER_OR_FOLLOWER when this broker no longer leads (never forwarded again).
pub fn leader_answer(broker: &Broker, api_version: i16) -> DescribeQuorumResponse {
    if is_leader(broker) {
        from_leader(broker, api_version)
    } else {
        refused(broker)
    }
}

/// The answer of the quorum leader, from openraft's metrics and the controller's leases.
fn from_leader(broker: &Broker, api_version: i16) -> DescribeQuorumResponse {
    let Some(q) = broker.metadata.quorum() else {
        return single_broker(broker, api_version);
    };
    let metrics = q.metrics();
    let m = metrics.borrow().clone();
    let me = q.node_id();
    let log_end = m.last_log_index.map_or(0, |i| i as i64 + 1);
    let high_watermark = m.last_applied.map_or(0, |l| l.index as i64 + 1);
    let now_wall = crate::clock::unix_ms();
    let now_mono = crate::clock::monotonic_ms();
    let heard = broker.heard_brokers.last_heard();
    let state = |id: u64| -> ReplicaState {
        let node = i32::try_from(id).unwrap_or(-1);
        let end = if id == me {
            log_end
        } else {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map_or(-1, |l| l.index as i64 + 1)
        };
        let fetched = if id == me {
            Some(now_wall)
        } else {
            heard
                .as_ref()
                .and_then(|h| h.get(&node).copied())
                .map(|at| now_wall - now_mono.saturating_sub(at) as i64)
        };
        let caught_up = if end >= log_end { fetched } else { None };
        ReplicaState::default()
            .with_replica_id(BrokerId(node))
            .with_log_end_offset(end)
            .with_last_fetch_timestamp(fetched.unwrap_or(-1))
            .with_last_caught_up_timestamp(caught_up.unwrap_or(-1))
    };
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let observers: Vec<u64> = membership.learner_ids().collect();
    let partition = PartitionData::default()
        .with_leader_id(BrokerId(i32::try_from(me).unwrap_or(-1)))
        .with_leader_epoch(i32::try_from(m.current_term).unwrap_or(i32::MAX))
        .with_high_watermark(high_watermark)
        .with_current_voters(voters.iter().map(|v| state(*v)).collect())
        .with_observers(observers.iter().map(|o| state(*o)).collect());
    let image = broker.metadata.image();
    let nodes = if api_version >= 2 {
        voters
            .iter()
            .chain(&observers)
            .filter_map(|id| i32::try_from(*id).ok())
            .map(|id| node(&image, id))
            .collect()
    } else {
        Vec::new()
    };
    response(vec![partition], nodes)
}

/// A broker without a quorum: a quorum of one, itself, with nothing in its log.
fn single_broker(broker: &Broker, api_version: i16) -> DescribeQuorumResponse {
    let id = broker.config.node_id;
    let me = ReplicaState::default()
        .with_replica_id(BrokerId(id))
        .with_log_end_offset(0)
        .with_last_fetch_timestamp(crate::clock::unix_ms())
        .with_last_caught_up_timestamp(crate::clock::unix_ms());
    let partition = PartitionData::default()
        .with_leader_id(BrokerId(id))
        .with_leader_epoch(0)
        .with_high_watermark(0)
        .with_current_voters(vec![me]);
    let nodes = if api_version >= 2 {
        vec![node(&broker.metadata.image(), id)]
    } else {
        Vec::new()
    };
    response(vec![partition], nodes)
}

/// A node's Kafka listeners as the image has them registered.
fn node(image: &ClusterImage, id: i32) -> Node {
    let listeners = image
        .brokers
        .get(&id)
        .map(|b| {
            let named: Vec<(String, String, i32)> = if b.endpoints.is_empty() {
                vec![("PLAINTEXT".to_string(), b.host.clone(), b.port)]
            } else {
                b.endpoints
                    .iter()
                    .map(|e| (e.listener.clone(), e.host.clone(), e.port))
                    .collect()
            };
            named
                .into_iter()
                .map(|(name, host, port)| {
                    Listener::default()
                        .with_name(StrBytes::from_string(name))
                        .with_host(StrBytes::from_string(host))
                        .with_port(u16::try_from(port).unwrap_or(0))
                })
                .collect()
        })
        .unwrap_or_default();
    Node::default()
        .with_node_id(BrokerId(id))
        .with_listeners(listeners)
}

fn response(partitions: Vec<PartitionData>, nodes: Vec<Node>) -> DescribeQuorumResponse {
    DescribeQuorumResponse::default()
        .with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(partitions)])
        .with_nodes(nodes)
}
