//! The broker's shared state — settings, metadata, partition logs, roles, groups,
//! transactions, metrics — and the narrow services built beside it (`topics`: the topic
//! admin operations). `node` builds it (for a single broker or a cluster member); handlers
//! receive `&Broker` and call the services they need through it (`broker.topics`).
//!
//! May depend on: `config`, `metadata`, `metadata_source`, `quorum` (its leader, through
//! `metadata_source`), `topics`, `log`, `group`, `replication`, `lease`, `metrics`, `events`,
//! `txn`, `writer`, `fetch_session`.
//! Not on `node` or `cluster` (which build and drive it), the codec or the Kafka listener.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::events::Events;
use crate::group::GroupCoordinator;
use crate::lease::SelfLease;
use crate::log::{LogError, LogStore, PartitionLog};
use crate::metadata::{BrokerMeta, Endpoint, PartitionMeta, TopicMeta};
use crate::metadata_source::MetadataSource;
use crate::metrics::Metrics;
use crate::replication::manager::ReplicaManager;
use crate::topics::Topics;
use crate::writer::PartitionWriter;

/// One broker.
pub struct Broker {
    /// The settings, shared with the services (`topics`).
    pub config: Arc<BrokerConfig>,
    /// Where metadata comes from (this broker's store or the quorum), shared with `topics`.
    pub metadata: Arc<MetadataSource>,
    /// The authorizer service every request's context carries (`api::authz` asks it).
    pub access: Arc<crate::access::Access>,
    /// Topic admin: create, delete, add partitions, alter configs, effective topic configs.
    pub topics: Topics,
    pub logs: Arc<LogStore>,
    /// Leader/follower roles of this broker's partitions and the high watermarks.
    pub replication: Arc<ReplicaManager>,
    /// The one leader append/commit path (Produce and the offsets store).
    pub writer: Arc<PartitionWriter>,
    /// Cancelled when the broker stops; background loops end with it.
    pub shutdown: CancellationToken,
    /// When the controller last heard each broker, while this broker is the active controller
    /// (DescribeQuorum, RemoveRaftVoter); the leases are the controller loop's (`cluster`).
    pub heard_brokers: Arc<dyn crate::lease::HeardBrokers>,
    /// The controller's liveness table as last received with a heartbeat answer (suspect
    /// brokers for Metadata answers; carried over should this broker become controller).
    pub liveness: Arc<crate::lease::ClusterLiveness>,
    /// The cluster id reported to clients.
    pub(crate) cluster_id: String,
    /// Identity of this process among the broker's restarts (random, never 0; 0 for a broker
    /// without a quorum). A registration with a new incarnation fences the broker's previous
    /// incarnation: see `MetadataCommand::RegisterBroker`.
    pub incarnation: u64,
    /// Whether the cluster may still count this broker as live (renewed by heartbeats in a
    /// cluster; see `lease`). Group coordination stops while it is expired.
    pub self_lease: Arc<SelfLease>,
    /// Consumer groups this broker coordinates and their committed offsets (a tree in the
    /// logs' sled database).
    pub groups: Arc<GroupCoordinator>,
    /// Counters the request path moves, scraped at `/metrics` (see `metrics`).
    pub metrics: Arc<Metrics>,
    /// The transaction coordinator of the `__transaction_state` partitions this broker leads.
    pub txns: Arc<crate::txn::TxnCoordinator>,
    /// Recent fencing, leader and ISR changes, shown by `/v1/cluster` (see `events`).
    pub events: Arc<Events>,
    /// Client fetch sessions (KIP-227, `fetch_session`).
    pub fetch_sessions: crate::fetch_session::FetchSessionCache,
}

impl Broker {
    /// This broker as clients should see it, registered by the process `incarnation`.
    pub fn me(config: &BrokerConfig, incarnation: u64) -> BrokerMeta {
        let listener = &config.listeners[0];
        BrokerMeta {
            id: config.node_id,
            host: listener.advertised_host.clone(),
            port: listener.advertised_port as i32,
            rack: config.rack.clone(),
            fenced: false,
            incarnation,
            endpoints: config
                .listeners
                .iter()
                .map(|l| Endpoint {
                    listener: l.name.clone(),
                    host: l.advertised_host.clone(),
                    port: i32::from(l.advertised_port),
                })
                .collect(),
        }
    }

    /// The cluster id reported in Metadata and DescribeCluster.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The controller reported to clients: this broker when it is alone, else the quorum
    /// leader this broker knows of, or -1 (Kafka's "no controller") when it knows none — a
    /// broker in a minority must not name itself or a stale leader (see `known_controller`).
    ///
    /// A quorum leader that is not a registered broker (unregistered after a decommission, yet
    /// still a Raft member) cannot be reached by clients: they are told this broker (any broker
    /// forwards admin requests to the quorum leader, as KRaft brokers name a live broker).
    pub fn controller_id(&self) -> i32 {
        match self.metadata.quorum() {
            None => self.config.node_id,
            Some(_) => match self.known_controller() {
                Some(c) if !self.metadata.image().brokers.contains_key(&c) => self.config.node_id,
                known => known.unwrap_or(-1),
            },
        }
    }

    /// The metadata quorum's leader as far as this broker can tell: `None` when no leader is
    /// known, or when this broker believes it leads but no majority has confirmed that within
    /// `broker.session.timeout.ms` (openraft 0.9 has no check-quorum: a leader cut off from
    /// the others keeps believing it leads). Always `None` for a broker without a quorum.
    pub fn known_controller(&self) -> Option<i32> {
        let q = self.metadata.quorum()?;
        let metrics = q.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader?;
        if leader == q.node_id() {
            let acked = m
                .millis_since_quorum_ack
                .is_some_and(|ms| ms < self.config.session_timeout_ms);
            if !acked && !self.self_lease.is_valid() {
                return None;
            }
        }
        i32::try_from(leader).ok()
    }

    /// Brings partition roles (leader/follower) in line with the current metadata image
    /// (the topic service's sync, which holds the follower transport).
    pub fn sync_roles(&self) -> Result<(), LogError> {
        self.topics.sync_roles()
    }

    /// The partition's metadata and its local log, if this broker leads it.
    pub fn leader_log(
        &self,
        topic: &TopicMeta,
        partition: i32,
    ) -> Result<(PartitionMeta, Arc<PartitionLog>), LeaderError> {
        let p = usize::try_from(partition)
            .ok()
            .and_then(|i| topic.partitions.get(i))
            .ok_or(LeaderError::UnknownPartition)?;
        if p.leader != self.config.node_id {
            return Err(LeaderError::NotLeader);
        }
        let log = self
            .logs
            .partition(&topic.name, partition)
            .ok_or(LeaderError::NotLeader)?;
        Ok((p.clone(), log))
    }
}

/// Why a partition cannot be served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderError {
    UnknownPartition,
    NotLeader,
}

/// What the transaction coordinator needs of the broker (see [`crate::txn::host::TxnHost`]).
impl crate::txn::host::TxnHost for Broker {
    fn image(&self) -> Arc<crate::metadata::ClusterImage> {
        self.metadata.image()
    }

    fn offsets_marker_without_topic(&self, partition: i32, marker: crate::log::TxnMarker) -> bool {
        let _ = partition;
        // A single broker keeps transactional offsets in the group coordinator's store
        // (`group::offsets`), which applies or drops them here.
        self.groups
            .end_txn_without_topic(marker.producer_id, marker.commit)
    }
}
