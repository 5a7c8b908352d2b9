//! The broker's shared state — settings, metadata, partition logs — and the topic
//! lifecycle operations several Kafka APIs share (create, delete, add partitions).
//!
//! May depend on: `config`, `metadata`, `log`, `group`, `quorum`, `replication`,
//! `offsets_topic`, `lease`, `metrics`, `events`, and `cluster` (which opens the quorum and
//! imports `Broker` in turn: a known import circle, to be removed by a node assembly layer).
//! Not on the codec or the Kafka listener.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::events::Events;
use crate::group::state::GroupLimits;
use crate::group::{
    GroupConfig, GroupCoordinator, GroupError, LocalPlacement, Placement, SledOffsetStore,
};
use crate::lease::SelfLease;
use crate::log::{LogError, LogStore, PartitionLog};
use crate::metadata::config_ops::{ConfigOp, ConfigResource};
use crate::metadata::{
    check_record_count, topic_config, validate_topic_name, BrokerMeta, ClusterImage, Endpoint,
    MetadataCommand, MetadataError, MetadataStore, PartitionMeta, TopicMeta,
};
use crate::metrics::Metrics;
use crate::offsets_topic::{
    OffsetsLoader, OffsetsTopicPlacement, ReplicatedOffsetStore, OFFSETS_TOPIC,
};
use crate::quorum::{MetadataQuorum, QuorumError};
use crate::replication::manager::{BoxFuture, ReplicaManager, ReplicaTransport, ReplicationConfig};
use crate::replication::{ReplicaFetchRequest, ReplicaFetchResponse};
use crate::writer::PartitionWriter;

/// Failures while opening a broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot open the data directory {dir}: {source}")]
    Storage { dir: String, source: LogError },
    #[error("cannot load metadata: {0}")]
    Metadata(#[from] MetadataError),
    #[error("cannot open partition log: {0}")]
    Log(#[from] LogError),
    #[error("cannot start the metadata quorum: {0}")]
    Quorum(#[from] QuorumError),
    #[error("cannot open the group coordinator: {0}")]
    Groups(#[from] GroupError),
}

/// Where metadata comes from: this broker alone, or the Raft quorum.
pub enum MetadataSource {
    /// A single broker without `controller.quorum.voters`: commands apply locally.
    Local(MetadataStore),
    /// A cluster member: commands go through Raft; reads are of this broker's applied image
    /// (it may lag the leader by about a heartbeat, like a Kafka broker's metadata cache).
    Quorum(MetadataQuorum),
}

impl MetadataSource {
    /// The current image (a local read).
    pub fn image(&self) -> Arc<ClusterImage> {
        match self {
            MetadataSource::Local(s) => s.image(),
            MetadataSource::Quorum(q) => q.image(),
        }
    }

    /// Applies a command (through Raft in a cluster) and returns the image that has it.
    pub async fn submit(&self, cmd: &MetadataCommand) -> Result<Arc<ClusterImage>, MetadataError> {
        match self {
            MetadataSource::Local(s) => s.submit(cmd),
            MetadataSource::Quorum(q) => match q.submit(cmd.clone()).await {
                Ok(_) => Ok(q.image()),
                Err(QuorumError::Rejected(e)) => Err(e),
                Err(e) => Err(MetadataError::QuorumUnavailable(e.to_string())),
            },
        }
    }

    /// The quorum, in a cluster.
    pub fn quorum(&self) -> Option<&MetadataQuorum> {
        match self {
            MetadataSource::Local(_) => None,
            MetadataSource::Quorum(q) => Some(q),
        }
    }
}

/// A request to create a topic, as CreateTopics, Metadata and Produce phrase it.
#[derive(Debug, Clone, Default)]
pub struct CreateTopicSpec {
    pub name: String,
    /// -1 = the broker's `num.partitions`.
    pub num_partitions: i32,
    /// -1 = the broker's `default.replication.factor`.
    pub replication_factor: i16,
    /// Explicit replica lists; when given, counts must be -1.
    pub assignments: Vec<Vec<i32>>,
    pub configs: BTreeMap<String, String>,
    pub validate_only: bool,
}

/// One broker.
pub struct Broker {
    pub config: BrokerConfig,
    pub metadata: MetadataSource,
    pub logs: Arc<LogStore>,
    /// Leader/follower roles of this broker's partitions and the high watermarks.
    pub replication: Arc<ReplicaManager>,
    /// The one leader append/commit path (Produce and the offsets store).
    pub writer: Arc<PartitionWriter>,
    /// How followers reach partition leaders.
    transport: Arc<dyn ReplicaTransport>,
    /// Cancelled when the broker stops; background loops end with it.
    pub shutdown: CancellationToken,
    /// The controller's broker leases, while this broker is the controller.
    pub(crate) leases: std::sync::Mutex<Option<crate::metadata::controller::Leases>>,
    /// The controller's liveness table as last received with a heartbeat answer (suspect
    /// brokers for Metadata answers; carried over should this broker become controller).
    pub liveness: Arc<crate::lease::ClusterLiveness>,
    /// The cluster id reported to clients.
    cluster_id: String,
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
    /// Recent fencing, leader and ISR changes, shown by `/v1/cluster` (see `events`).
    pub events: Arc<Events>,
}

/// The transport of a broker without peers: there is never a leader to fetch from.
struct NoPeers;

impl ReplicaTransport for NoPeers {
    fn fetch(
        &self,
        leader: i32,
        _req: ReplicaFetchRequest,
    ) -> BoxFuture<'_, Result<ReplicaFetchResponse, String>> {
        Box::pin(async move {
            Err(format!(
                "broker {leader} is not reachable: no peers configured"
            ))
        })
    }
}

impl Broker {
    /// Opens the broker's storage and the logs of every partition it hosts; in a cluster
    /// (`controller.quorum.voters` set) also starts the metadata quorum, the `Cluster` gRPC
    /// service and the background loops (see `cluster`).
    pub async fn open(config: BrokerConfig) -> Result<Arc<Self>, BrokerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| BrokerError::Storage {
            dir: config.data_dir.display().to_string(),
            source: LogError::Storage(sled::Error::Io(e)),
        })?;
        let sled_settings = crate::log::sled_config::SledSettings {
            cache_bytes: config.sled_cache_bytes,
            segment_bytes: config.sled_segment_bytes,
            flush_every_ms: config.flush_interval_ms,
        };
        let logs = LogStore::open(
            &config.data_dir,
            &sled_settings,
            config.flush_interval_messages,
        )
        .map_err(|source| BrokerError::Storage {
            dir: config.data_dir.display().to_string(),
            source,
        })?
        .with_space_reserve(&config.data_dir, config.log_dir_min_free_bytes)
        .with_flush_before_ack(config.flush_before_ack);
        let logs = Arc::new(logs);
        logs.spawn_checkpointer(std::time::Duration::from_millis(
            config.hw_checkpoint_interval_ms,
        ));
        let replication = ReplicaManager::new(
            config.node_id,
            ReplicationConfig {
                lag_time_max_ms: config.replica_lag_time_max_ms,
                fetch_max_bytes: config.replica_fetch_max_bytes,
                fetch_response_max_bytes: config.replica_fetch_response_max_bytes,
                leader_response_max_bytes: config.fetch_max_bytes,
                ..ReplicationConfig::default()
            },
            logs.clone(),
        );
        if config.quorum_voters.is_empty() {
            let metadata = MetadataStore::open(logs.db(), config.node_id, Self::me(&config, 0))?;
            let cluster_id = metadata.image().cluster_id.clone();
            let groups = open_groups(
                &config,
                &logs,
                Arc::new(LocalPlacement {
                    node_id: config.node_id,
                }),
            )?;
            let self_lease = Arc::new(SelfLease::new(config.session_timeout_ms));
            let broker = Self {
                groups,
                config,
                metadata: MetadataSource::Local(metadata),
                writer: Arc::new(PartitionWriter::new(logs.clone(), replication.clone())),
                logs,
                replication,
                transport: Arc::new(NoPeers),
                shutdown: CancellationToken::new(),
                leases: std::sync::Mutex::new(None),
                liveness: Default::default(),
                cluster_id,
                incarnation: 0,
                self_lease,
                metrics: Arc::new(Metrics::new()),
                events: Arc::new(Events::default()),
            };
            for topic in broker.metadata.image().topics.values() {
                broker.open_logs(topic)?;
            }
            broker.sync_roles()?;
            return Ok(Arc::new(broker));
        }
        crate::cluster::open(config, logs, replication).await
    }

    /// Assembles a cluster member (used by `cluster::open`).
    pub(crate) fn assemble(
        config: BrokerConfig,
        quorum: MetadataQuorum,
        logs: Arc<LogStore>,
        replication: Arc<ReplicaManager>,
        transport: Arc<dyn ReplicaTransport>,
        liveness: Arc<crate::lease::ClusterLiveness>,
    ) -> Result<Self, BrokerError> {
        let voters: Vec<String> = config
            .quorum_voters
            .iter()
            .map(|v| format!("{}@{}", v.id, v.addr()))
            .collect();
        let placement = Arc::new(OffsetsTopicPlacement {
            images: quorum.subscribe(),
        });
        let self_lease = Arc::new(SelfLease::new(config.session_timeout_ms));
        let writer = Arc::new(PartitionWriter::new(logs.clone(), replication.clone()));
        let store = Arc::new(ReplicatedOffsetStore::new(
            logs.clone(),
            writer.clone(),
            quorum.subscribe(),
            std::time::Duration::from_millis(config.offsets_commit_timeout_ms),
            self_lease.clone(),
        ));
        let groups = Arc::new(GroupCoordinator::open(
            config.node_id,
            group_config(&config),
            placement,
            store.clone(),
        )?);
        replication.set_role_listener(Arc::new(OffsetsLoader {
            store: Arc::downgrade(&store),
            groups: Arc::downgrade(&groups),
        }));
        Ok(Self {
            groups,
            cluster_id: cluster_id_from(&voters.join(",")),
            config,
            metadata: MetadataSource::Quorum(quorum),
            writer,
            logs,
            replication,
            transport,
            shutdown: CancellationToken::new(),
            leases: std::sync::Mutex::new(None),
            liveness,
            incarnation: rand::random::<u64>() | 1,
            self_lease,
            metrics: Arc::new(Metrics::new()),
            events: Arc::new(Events::default()),
        })
    }

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
    pub fn controller_id(&self) -> i32 {
        match self.metadata.quorum() {
            None => self.config.node_id,
            Some(_) => self.known_controller().unwrap_or(-1),
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

    /// Brings partition roles (leader/follower) in line with the current metadata image.
    pub fn sync_roles(&self) -> Result<(), LogError> {
        self.replication
            .on_metadata(&self.metadata.image(), &self.transport, &self.shutdown)
    }

    pub(crate) fn open_logs(&self, topic: &TopicMeta) -> Result<(), LogError> {
        for p in &topic.partitions {
            if p.replicas.contains(&self.config.node_id) {
                self.logs.open_partition(&topic.name, p.index)?;
            }
        }
        Ok(())
    }

    /// Creates a topic (or only validates the request).
    pub async fn create_topic(&self, spec: &CreateTopicSpec) -> Result<TopicMeta, MetadataError> {
        validate_topic_name(&spec.name)?;
        let image = self.metadata.image();
        if image.topics.contains_key(&spec.name) {
            return Err(MetadataError::TopicExists(spec.name.clone()));
        }
        // Kafka refuses names that differ only in '.' versus '_' (they collide in metric names).
        let folded = spec.name.replace('.', "_");
        if let Some(other) = image.topics.keys().find(|t| t.replace('.', "_") == folded) {
            return Err(MetadataError::InvalidTopicName {
                name: spec.name.clone(),
                reason: format!("collides with existing topic '{other}'"),
            });
        }
        for (k, v) in &spec.configs {
            topic_config::validate(k, v)?;
        }
        let assignments = if spec.assignments.is_empty() {
            let count = match spec.num_partitions {
                -1 => self.config.num_partitions,
                n if n < 1 => {
                    return Err(MetadataError::InvalidPartitions(
                        "number of partitions must be larger than 0".into(),
                    ))
                }
                n => n,
            };
            let rf = match spec.replication_factor {
                -1 => self.config.default_replication_factor,
                n if n < 1 => {
                    return Err(MetadataError::InvalidReplicationFactor(
                        "replication factor must be larger than 0".into(),
                    ))
                }
                n => n,
            };
            check_record_count(
                topic_records(count as u64, spec.configs.len()),
                self.config.max_records_per_user_op,
            )?;
            image.place_replicas(count, rf, image.topics.len() as i32)?
        } else {
            if spec.num_partitions != -1 || spec.replication_factor != -1 {
                return Err(MetadataError::InvalidReplicaAssignment(
                    "both numPartitions or replicationFactor and replicasAssignments were set; \
                     both cannot be used at the same time"
                        .into(),
                ));
            }
            check_record_count(
                topic_records(spec.assignments.len() as u64, spec.configs.len()),
                self.config.max_records_per_user_op,
            )?;
            spec.assignments.clone()
        };
        let cmd = MetadataCommand::CreateTopic {
            name: spec.name.clone(),
            assignments,
            configs: spec.configs.clone(),
            id: crate::metadata::topic_id::random(),
        };
        if spec.validate_only {
            let mut scratch = (*image).clone();
            scratch.apply(&cmd)?;
            return Ok(scratch.topics[&spec.name].clone());
        }
        let image = self.metadata.submit(&cmd).await?;
        let topic = image
            .topics
            .get(&spec.name)
            .cloned()
            .ok_or_else(|| MetadataError::UnknownTopic(spec.name.clone()))?;
        self.open_logs(&topic)
            .and_then(|()| self.sync_roles())
            .map_err(|e| MetadataError::Storage(e.to_string()))?;
        tracing::info!(topic = %topic.name, partitions = topic.partitions.len(), "created topic");
        Ok(topic)
    }

    /// Creates `__consumer_offsets` if it does not exist yet (cluster mode): the first
    /// FindCoordinator does this, as in Kafka. `offsets.topic.num.partitions` partitions,
    /// replication factor `offsets.topic.replication.factor` capped at the live brokers.
    pub async fn ensure_offsets_topic(&self) -> Result<TopicMeta, MetadataError> {
        let image = self.metadata.image();
        if let Some(t) = image.topics.get(OFFSETS_TOPIC) {
            return Ok(t.clone());
        }
        let live = image.brokers.values().filter(|b| !b.fenced).count();
        let rf = (self.config.offsets_topic_replication_factor as usize).min(live.max(1));
        let spec = CreateTopicSpec {
            name: OFFSETS_TOPIC.to_string(),
            num_partitions: self.config.offsets_topic_num_partitions,
            replication_factor: rf as i16,
            configs: [("cleanup.policy".to_string(), "compact".to_string())].into(),
            ..Default::default()
        };
        self.create_or_get(&spec).await
    }

    /// Creates the topic of `spec`, or returns it when another request created it first.
    async fn create_or_get(&self, spec: &CreateTopicSpec) -> Result<TopicMeta, MetadataError> {
        match self.create_topic(spec).await {
            Err(MetadataError::TopicExists(_)) => self
                .metadata
                .image()
                .topics
                .get(&spec.name)
                .cloned()
                .ok_or_else(|| MetadataError::UnknownTopic(spec.name.clone())),
            other => other,
        }
    }

    /// Creates `name` with broker defaults if auto-creation is on and the name is valid.
    pub async fn auto_create(&self, name: &str) -> Result<TopicMeta, MetadataError> {
        if name == OFFSETS_TOPIC && self.metadata.quorum().is_some() {
            return self.ensure_offsets_topic().await;
        }
        let spec = CreateTopicSpec {
            name: name.to_string(),
            num_partitions: -1,
            replication_factor: -1,
            ..Default::default()
        };
        self.create_or_get(&spec).await
    }

    /// Deletes a topic, its data and the offsets groups committed for it.
    pub async fn delete_topic(&self, name: &str) -> Result<(), MetadataError> {
        let image = self.metadata.image();
        let topic = image
            .topics
            .get(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        self.metadata
            .submit(&MetadataCommand::DeleteTopic {
                name: name.to_string(),
            })
            .await?;
        self.sync_roles()
            .map_err(|e| MetadataError::Storage(e.to_string()))?;
        for p in &topic.partitions {
            self.logs
                .delete_partition(name, p.index)
                .map_err(|e| MetadataError::Storage(e.to_string()))?;
        }
        self.groups
            .topic_deleted(name)
            .map_err(|e| MetadataError::Storage(e.to_string()))?;
        // Give the disk space back now: the disk may be full, and this is how space is freed.
        self.logs.release_space_soon();
        tracing::info!(topic = %name, "deleted topic");
        Ok(())
    }

    /// Grows a topic to `count` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Vec<Vec<i32>>,
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        let image = self.metadata.image();
        let topic = image
            .topics
            .get(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        let current = topic.partitions.len() as i32;
        if count < current {
            return Err(MetadataError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than the requested {count}."
            )));
        }
        if count == current {
            return Err(MetadataError::InvalidPartitions(format!(
                "Topic already has {current} partitions."
            )));
        }
        let new = count - current;
        check_record_count(new as u64, self.config.max_records_per_user_op)?;
        let assignments = if assignments.is_empty() {
            image.place_replicas(new, topic.replication_factor(), current)?
        } else {
            if assignments.len() as i32 != new {
                return Err(MetadataError::InvalidReplicaAssignment(format!(
                    "{} replica assignments given for {new} new partitions",
                    assignments.len()
                )));
            }
            assignments
        };
        let cmd = MetadataCommand::CreatePartitions {
            name: name.to_string(),
            assignments,
        };
        if validate_only {
            return (*image).clone().apply(&cmd);
        }
        let image = self.metadata.submit(&cmd).await?;
        let topic = image
            .topics
            .get(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        self.open_logs(topic)
            .and_then(|()| self.sync_roles())
            .map_err(|e| MetadataError::Storage(e.to_string()))?;
        tracing::info!(topic = %name, partitions = count, "added partitions");
        Ok(())
    }

    /// Changes the config overrides of a topic or the dynamic settings of brokers through the
    /// metadata quorum (`replace`: AlterConfigs semantics), or only checks the change.
    pub async fn alter_configs(
        &self,
        resource: ConfigResource,
        ops: Vec<(String, ConfigOp)>,
        replace: bool,
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        let cmd = MetadataCommand::AlterConfigs {
            resource,
            ops,
            replace,
        };
        // Check against the local image first, so a refused change is not committed to the
        // metadata log only to be refused there.
        (*self.metadata.image()).clone().apply(&cmd)?;
        if validate_only {
            return Ok(());
        }
        self.metadata.submit(&cmd).await?;
        if let MetadataCommand::AlterConfigs { resource, ops, .. } = &cmd {
            tracing::info!(?resource, keys = ?ops.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), "altered configs");
        }
        Ok(())
    }

    /// The effective value of a topic config: the topic's override or the broker's default.
    pub fn topic_config_value(&self, topic: &TopicMeta, key: &str) -> Option<String> {
        if let Some(v) = topic.configs.get(key) {
            return Some(v.clone());
        }
        let def = topic_config::topic_config(key)?;
        let image = self.metadata.image();
        Some(topic_config::broker_default(def, &self.config, &image.broker_configs).0)
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

/// The metadata records creating a topic takes, as Kafka's controller counts them against
/// its per-operation limit: the topic, each partition, each config.
pub fn topic_records(partitions: u64, configs: usize) -> u64 {
    1 + partitions + configs as u64
}

fn group_config(c: &BrokerConfig) -> GroupConfig {
    GroupConfig {
        limits: GroupLimits {
            min_session_timeout_ms: c.group_min_session_timeout_ms,
            max_session_timeout_ms: c.group_max_session_timeout_ms,
            initial_rebalance_delay: std::time::Duration::from_millis(
                c.group_initial_rebalance_delay_ms.max(0) as u64,
            ),
            max_size: c.group_max_size.max(1) as usize,
        },
        offset_metadata_max_bytes: c.offset_metadata_max_bytes.max(0) as usize,
    }
}

/// The single broker's coordinator: every group local, offsets in a fsynced sled tree.
fn open_groups(
    c: &BrokerConfig,
    logs: &LogStore,
    placement: Arc<dyn Placement>,
) -> Result<Arc<GroupCoordinator>, GroupError> {
    let offsets = Arc::new(SledOffsetStore::open(logs.db())?);
    Ok(Arc::new(GroupCoordinator::open(
        c.node_id,
        group_config(c),
        placement,
        offsets,
    )?))
}

/// Why a partition cannot be served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderError {
    UnknownPartition,
    NotLeader,
}

/// A stable 22-character cluster id derived from the voter list (FNV-1a, URL-safe base64
/// alphabet): every member computes the same id without a bootstrap command.
fn cluster_id_from(voters: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for round in 0..2u8 {
        for b in voters.bytes().chain([round]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut x = h;
        for _ in 0..11 {
            out.push(ALPHABET[(x % 64) as usize] as char);
            x /= 64;
        }
    }
    out
}
