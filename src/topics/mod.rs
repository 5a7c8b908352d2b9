//! The topic admin service: creating (explicitly, automatically, and the internal
//! `__consumer_offsets` and `__transaction_state` topics on first use), deleting and growing
//! topics, changing topic and broker config overrides, reading a topic's effective configs,
//! and opening (or dropping stale) partition logs for the topics this broker hosts.
//!
//! [`Topics`] owns exactly what these operations touch, shared (`Arc`) with the `Broker` that
//! `node` builds beside it: the settings, the metadata source, the log store, the replica
//! manager (roles follow every change), the group coordinator (a deleted topic's committed
//! offsets go with it). It works the same for a single broker and a cluster member: the
//! metadata source decides where a command is applied. Handlers call it as `broker.topics`,
//! or receive `&Topics` where it is all they need; [`TopicsError`] says what failed, and
//! `api::errors::topics_code` turns it into the Kafka error code.
//!
//! Parts: this file (the service, its errors, create/delete/add partitions/alter configs and
//! effective configs), `internal` (auto-creation and the internal topics), `logs` (this
//! broker's partition logs of a topic, and its roles).
//!
//! May depend on: `config`, `metadata`, `metadata_source`, `log`, `replication`, `group`, and
//! the internal topics' names (`offsets_topic`, `txn`). Not on `broker`, `api`, the network or
//! the codec.

mod internal;
mod logs;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::group::{GroupCoordinator, GroupError};
use crate::log::{LogError, LogStore};
use crate::metadata::config_ops::{ConfigOp, ConfigResource};
use crate::metadata::{
    check_record_count, topic_config, validate_topic_name, MetadataCommand, MetadataError,
    TopicMeta,
};
use crate::metadata_source::MetadataSource;
use crate::replication::manager::{ReplicaManager, ReplicaTransport};

/// Why a topic operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    /// Refused by the metadata checks (name, counts, placement, configs, limits) or by the
    /// quorum (nothing was changed), or the quorum could not be reached in time (the change
    /// may still be applied: retry, and look at the topic before creating it again).
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The change is committed to the metadata, but this broker could not open, delete or
    /// take up the roles of the partition logs it hosts; the next metadata update retries.
    #[error(
        "the topic change is committed, but this broker's partition logs could not follow it \
         (check the disk under log.dirs): {0}"
    )]
    Log(#[from] LogError),
    /// The topic is deleted, but the offsets committed for it could not be removed.
    #[error(
        "the topic is deleted, but the group offsets committed for it could not be removed: {0}"
    )]
    Groups(#[from] GroupError),
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

/// A request to grow a topic (CreatePartitions).
#[derive(Debug, Clone, Default)]
pub struct CreatePartitionsSpec {
    pub name: String,
    /// The partition count wanted, larger than the current one.
    pub count: i32,
    /// Replica lists of the new partitions; empty = placed by the broker.
    pub assignments: Vec<Vec<i32>>,
    pub validate_only: bool,
}

/// The topic admin service (see the module documentation).
pub struct Topics {
    /// Defaults (partitions, replication factor, internal topics' settings), the record
    /// limit per operation, this broker's id, and the static topic config defaults.
    pub(crate) config: Arc<BrokerConfig>,
    /// Where commands go and images come from.
    pub(crate) metadata: Arc<MetadataSource>,
    /// The partition logs opened, deleted and replaced here.
    pub(crate) logs: Arc<LogStore>,
    /// Roles (leader/follower) follow every topic change at once.
    pub(crate) replication: Arc<ReplicaManager>,
    /// How followers of new partitions reach their leaders.
    pub(crate) transport: Arc<dyn ReplicaTransport>,
    /// The broker's shutdown: follower loops started here end with it.
    pub(crate) shutdown: CancellationToken,
    /// A deleted topic's committed offsets are removed from it.
    pub(crate) groups: Arc<GroupCoordinator>,
}

impl Topics {
    /// Creates a topic (or only validates the request).
    pub async fn create(&self, spec: &CreateTopicSpec) -> Result<TopicMeta, TopicsError> {
        validate_topic_name(&spec.name)?;
        let image = self.metadata.image();
        if image.topics.contains_key(&spec.name) {
            return Err(MetadataError::TopicExists(spec.name.clone()).into());
        }
        // Kafka refuses names that differ only in '.' versus '_' (they collide in metric names).
        let folded = spec.name.replace('.', "_");
        if let Some(other) = image.topics.keys().find(|t| t.replace('.', "_") == folded) {
            return Err(MetadataError::InvalidTopicName {
                name: spec.name.clone(),
                reason: format!("collides with existing topic '{other}'"),
            }
            .into());
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
                    )
                    .into())
                }
                n => n,
            };
            let rf = match spec.replication_factor {
                -1 => self.config.default_replication_factor,
                n if n < 1 => {
                    return Err(MetadataError::InvalidReplicationFactor(
                        "replication factor must be larger than 0".into(),
                    )
                    .into())
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
                )
                .into());
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
        self.open_logs(&topic)?;
        self.sync_roles()?;
        tracing::info!(topic = %topic.name, partitions = topic.partitions.len(), "created topic");
        Ok(topic)
    }

    /// Deletes a topic, its data and the offsets groups committed for it.
    pub async fn delete(&self, name: &str) -> Result<(), TopicsError> {
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
        self.sync_roles()?;
        for p in &topic.partitions {
            self.logs.delete_partition(name, p.index)?;
        }
        self.groups.topic_deleted(name)?;
        // Give the disk space back now: the disk may be full, and this is how space is freed.
        self.logs.release_space_soon();
        tracing::info!(topic = %name, "deleted topic");
        Ok(())
    }

    /// Grows a topic to `spec.count` partitions (or only validates the request).
    pub async fn create_partitions(&self, spec: CreatePartitionsSpec) -> Result<(), TopicsError> {
        let CreatePartitionsSpec {
            name,
            count,
            assignments,
            validate_only,
        } = spec;
        let image = self.metadata.image();
        let topic = image
            .topics
            .get(&name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.clone()))?;
        let current = topic.partitions.len() as i32;
        if count < current {
            return Err(MetadataError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than the requested {count}."
            ))
            .into());
        }
        if count == current {
            return Err(MetadataError::InvalidPartitions(format!(
                "Topic already has {current} partitions."
            ))
            .into());
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
                ))
                .into());
            }
            assignments
        };
        let cmd = MetadataCommand::CreatePartitions {
            name: name.clone(),
            assignments,
        };
        if validate_only {
            return Ok((*image).clone().apply(&cmd)?);
        }
        let image = self.metadata.submit(&cmd).await?;
        let topic = image
            .topics
            .get(&name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.clone()))?;
        self.open_logs(topic)?;
        self.sync_roles()?;
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
    ) -> Result<(), TopicsError> {
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
    pub fn config_value(&self, topic: &TopicMeta, key: &str) -> Option<String> {
        if let Some(v) = topic.configs.get(key) {
            return Some(v.clone());
        }
        let def = topic_config::topic_config(key)?;
        let image = self.metadata.image();
        Some(topic_config::broker_default(def, &self.config, &image.broker_configs).0)
    }
}

/// The metadata records creating a topic takes, as Kafka's controller counts them against
/// its per-operation limit: the topic, each partition, each config.
pub fn topic_records(partitions: u64, configs: usize) -> u64 {
    1 + partitions + configs as u64
}
