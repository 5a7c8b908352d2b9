//! The broker's shared state — settings, metadata, partition logs — and the topic
//! lifecycle operations several Kafka APIs share (create, delete, add partitions).
//!
//! May depend on: `config`, `metadata`, `log`. Not on the network or the codec.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::log::{LogError, LogStore, PartitionLog};
use crate::metadata::{
    topic_config, validate_topic_name, BrokerMeta, MetadataCommand, MetadataError, MetadataStore,
    PartitionMeta, TopicMeta,
};
use crate::replication::manager::{BoxFuture, ReplicaManager, ReplicaTransport, ReplicationConfig};
use crate::replication::{ReplicaFetchRequest, ReplicaFetchResponse};

/// Failures while opening a broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot open the data directory {dir}: {source}")]
    Storage { dir: String, source: LogError },
    #[error("cannot load metadata: {0}")]
    Metadata(#[from] MetadataError),
    #[error("cannot open partition log: {0}")]
    Log(#[from] LogError),
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
    pub metadata: MetadataStore,
    pub logs: Arc<LogStore>,
    /// Leader/follower roles of this broker's partitions and the high watermarks.
    pub replication: Arc<ReplicaManager>,
    /// How followers reach partition leaders.
    transport: Arc<dyn ReplicaTransport>,
    /// Cancelled when the broker stops; background loops end with it.
    pub shutdown: CancellationToken,
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
    /// Opens the broker's storage and the logs of every partition it hosts.
    pub fn open(config: BrokerConfig) -> Result<Arc<Self>, BrokerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| BrokerError::Storage {
            dir: config.data_dir.display().to_string(),
            source: LogError::Storage(sled::Error::Io(e)),
        })?;
        let logs = LogStore::open(
            &config.data_dir,
            config.sled_cache_bytes,
            config.flush_interval_ms,
            config.flush_every_produce,
        )
        .map_err(|source| BrokerError::Storage {
            dir: config.data_dir.display().to_string(),
            source,
        })?;
        let listener = &config.listeners[0];
        let me = BrokerMeta {
            id: config.node_id,
            host: listener.advertised_host.clone(),
            port: listener.advertised_port as i32,
            rack: None,
            fenced: false,
        };
        let metadata = MetadataStore::open(logs.db(), config.node_id, me)?;
        let logs = Arc::new(logs);
        let replication =
            ReplicaManager::new(config.node_id, ReplicationConfig::default(), logs.clone());
        let broker = Self {
            config,
            metadata,
            logs,
            replication,
            transport: Arc::new(NoPeers),
            shutdown: CancellationToken::new(),
        };
        for topic in broker.metadata.image().topics.values() {
            broker.open_logs(topic)?;
        }
        broker.sync_roles()?;
        Ok(Arc::new(broker))
    }

    /// Brings partition roles (leader/follower) in line with the current metadata image.
    pub fn sync_roles(&self) -> Result<(), LogError> {
        self.replication
            .on_metadata(&self.metadata.image(), &self.transport, &self.shutdown)
    }

    fn open_logs(&self, topic: &TopicMeta) -> Result<(), LogError> {
        for p in &topic.partitions {
            if p.replicas.contains(&self.config.node_id) {
                self.logs.open_partition(&topic.name, p.index)?;
            }
        }
        Ok(())
    }

    /// Creates a topic (or only validates the request).
    pub fn create_topic(&self, spec: &CreateTopicSpec) -> Result<TopicMeta, MetadataError> {
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
            image.place_replicas(count, rf, image.topics.len() as i32)?
        } else {
            if spec.num_partitions != -1 || spec.replication_factor != -1 {
                return Err(MetadataError::InvalidReplicaAssignment(
                    "both numPartitions or replicationFactor and replicasAssignments were set; \
                     both cannot be used at the same time"
                        .into(),
                ));
            }
            spec.assignments.clone()
        };
        let cmd = MetadataCommand::CreateTopic {
            name: spec.name.clone(),
            assignments,
            configs: spec.configs.clone(),
        };
        if spec.validate_only {
            let mut scratch = (*image).clone();
            scratch.apply(&cmd)?;
            return Ok(scratch.topics[&spec.name].clone());
        }
        let image = self.metadata.submit(&cmd)?;
        let topic = image.topics[&spec.name].clone();
        self.open_logs(&topic)
            .and_then(|()| self.sync_roles())
            .map_err(|e| MetadataError::Storage(e.to_string()))?;
        tracing::info!(topic = %topic.name, partitions = topic.partitions.len(), "created topic");
        Ok(topic)
    }

    /// Creates `name` with broker defaults if auto-creation is on and the name is valid.
    pub fn auto_create(&self, name: &str) -> Result<TopicMeta, MetadataError> {
        let spec = CreateTopicSpec {
            name: name.to_string(),
            num_partitions: -1,
            replication_factor: -1,
            ..Default::default()
        };
        match self.create_topic(&spec) {
            // Another request created it first.
            Err(MetadataError::TopicExists(_)) => self
                .metadata
                .image()
                .topics
                .get(name)
                .cloned()
                .ok_or_else(|| MetadataError::UnknownTopic(name.to_string())),
            other => other,
        }
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, name: &str) -> Result<(), MetadataError> {
        let image = self.metadata.image();
        let topic = image
            .topics
            .get(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        self.metadata.submit(&MetadataCommand::DeleteTopic {
            name: name.to_string(),
        })?;
        self.sync_roles()
            .map_err(|e| MetadataError::Storage(e.to_string()))?;
        for p in &topic.partitions {
            self.logs
                .delete_partition(name, p.index)
                .map_err(|e| MetadataError::Storage(e.to_string()))?;
        }
        tracing::info!(topic = %name, "deleted topic");
        Ok(())
    }

    /// Grows a topic to `count` partitions.
    pub fn create_partitions(
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
        let image = self.metadata.submit(&cmd)?;
        self.open_logs(&image.topics[name])
            .and_then(|()| self.sync_roles())
            .map_err(|e| MetadataError::Storage(e.to_string()))?;
        tracing::info!(topic = %name, partitions = count, "added partitions");
        Ok(())
    }

    /// The effective value of a topic config: the topic's override or the broker's default.
    pub fn topic_config_value(&self, topic: &TopicMeta, key: &str) -> Option<String> {
        if let Some(v) = topic.configs.get(key) {
            return Some(v.clone());
        }
        let def = topic_config::topic_config(key)?;
        Some(topic_config::broker_default(def, &self.config).0)
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
