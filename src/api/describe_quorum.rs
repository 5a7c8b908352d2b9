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
//! over the leader's Kafka listener of the same name (client id [`FORWARDED`]), as a KRaft broker
//! forwards it to the active controller. A forwarded request reaching a non-leader, or no known
//! leader, answers NOT_LEADER_OR_FOLLOWER. A broker without a quorum answers as a one-voter
//! quorum of itself at epoch 0, its log empty.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use openraft::ServerState;

use super::errors::code;
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::cli::client::{host_port, Connection};
use crate::metadata::ClusterImage;
use crate::security::acl::Operation;

/// The client id of a DescribeQuorum one broker forwards to the quorum leader.
pub const FORWARDED: &str = "raftka-forwarded-describe-quorum";

/// KRaft's metadata topic, which DescribeQuorum describes.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    // Kafka: DESCRIBE on the cluster.
    if !authz::cluster(broker, ctx, Operation::Describe) {
        return DescribeQuorumResponse::default()
            .with_error_code(code(ResponseError::ClusterAuthorizationFailed));
    }
    let Some(q) = broker.metadata.quorum() else {
        return single_broker(broker, ctx);
    };
    let (leader, term, is_leader) = {
        let m = q.metrics();
        let m = m.borrow();
        (
            m.current_leader,
            m.current_term,
            m.state == ServerState::Leader && m.current_leader == Some(q.node_id()),
        )
    };
    if is_leader {
        return from_leader(broker, ctx);
    }
    let refused = || {
        let p = PartitionData::default()
            .with_error_code(code(ResponseError::NotLeaderOrFollower))
            .with_leader_id(BrokerId(
                leader.and_then(|l| i32::try_from(l).ok()).unwrap_or(-1),
            ))
            .with_leader_epoch(i32::try_from(term).unwrap_or(i32::MAX));
        response(vec![p], Vec::new())
    };
    if ctx.client_id.as_deref() == Some(FORWARDED) {
        return refused();
    }
    let Some(leader) = leader.and_then(|l| i32::try_from(l).ok()) else {
        return refused();
    };
    match forward(broker, ctx, leader, &req).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(leader, error = %e, "forwarding DescribeQuorum failed");
            refused()
        }
    }
}

/// Sends the request to the quorum leader's Kafka listener and returns its answer.
async fn forward(
    broker: &Broker,
    ctx: &RequestContext,
    leader: i32,
    req: &DescribeQuorumRequest,
) -> Result<DescribeQuorumResponse, String> {
    let image = broker.metadata.image();
    let b = image
        .brokers
        .get(&leader)
        .ok_or_else(|| format!("leader {leader} is not registered"))?;
    let (host, port) = b
        .endpoint(ctx.listener.as_deref())
        .ok_or_else(|| format!("leader {leader} has no listener {:?}", ctx.listener))?;
    let timeout = Duration::from_secs(5);
    let mut conn = Connection::connect(&host_port(host, port), timeout)
        .await
        .map_err(|e| e.to_string())?
        .with_client_id(FORWARDED);
    conn.send(req, ctx.api_version, Duration::ZERO)
        .await
        .map_err(|e| e.to_string())
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The answer of the quorum leader, from openraft's metrics and the controller's leases.
fn from_leader(broker: &Broker, ctx: &RequestContext) -> DescribeQuorumResponse {
    let Some(q) = broker.metadata.quorum() else {
        return single_broker(broker, ctx);
    };
    let metrics = q.metrics();
    let m = metrics.borrow().clone();
    let me = q.node_id();
    let log_end = m.last_log_index.map_or(0, |i| i as i64 + 1);
    let high_watermark = m.last_applied.map_or(0, |l| l.index as i64 + 1);
    let now_wall = wall_ms();
    let now_mono = crate::cluster::now_ms();
    let leases = broker
        .leases
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
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
            leases
                .as_ref()
                .and_then(|l| l.last_heard_ms(node))
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
    let nodes = if ctx.api_version >= 2 {
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
fn single_broker(broker: &Broker, ctx: &RequestContext) -> DescribeQuorumResponse {
    let id = broker.config.node_id;
    let me = ReplicaState::default()
        .with_replica_id(BrokerId(id))
        .with_log_end_offset(0)
        .with_last_fetch_timestamp(wall_ms())
        .with_last_caught_up_timestamp(wall_ms());
    let partition = PartitionData::default()
        .with_leader_id(BrokerId(id))
        .with_leader_epoch(0)
        .with_high_watermark(0)
        .with_current_voters(vec![me]);
    let nodes = if ctx.api_version >= 2 {
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
