//! Topics created on demand: a topic a Metadata or Produce request names (auto-creation), and
//! the internal topics `__consumer_offsets` and `__transaction_state`, created by the first
//! FindCoordinator that needs them (as in Kafka). A concurrent creation of the same topic is
//! not an error: the topic is returned.
//!
//! May depend on: the parent `topics`, `metadata`, and the internal topics' names
//! (`offsets_topic`, `txn`).

use crate::metadata::{MetadataError, TopicMeta};
use crate::offsets_topic::OFFSETS_TOPIC;
use crate::txn::TXN_TOPIC;

use super::{CreateTopicSpec, Topics, TopicsError};

impl Topics {
    /// Creates `name` with broker defaults, for Metadata and Produce requests naming a topic
    /// that does not exist (the caller checks `auto.create.topics.enable` and the ACLs).
    /// `__consumer_offsets` in a cluster is created as [`Topics::ensure_offsets_topic`] does.
    pub async fn auto_create(&self, name: &str) -> Result<TopicMeta, TopicsError> {
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

    /// Creates `__consumer_offsets` if it does not exist yet (cluster mode): the first
    /// FindCoordinator does this, as in Kafka. `offsets.topic.num.partitions` partitions,
    /// replication factor `offsets.topic.replication.factor` capped at the live brokers.
    pub async fn ensure_offsets_topic(&self) -> Result<TopicMeta, TopicsError> {
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

    /// Creates `__transaction_state` if it does not exist yet: the first FindCoordinator for a
    /// transactional id does this, as in Kafka. `transaction.state.log.num.partitions`
    /// partitions, replication factor `transaction.state.log.replication.factor` capped at the
    /// live brokers, `min.insync.replicas` = `transaction.state.log.min.isr` capped at that
    /// factor, compacted.
    pub async fn ensure_txn_topic(&self) -> Result<TopicMeta, TopicsError> {
        let image = self.metadata.image();
        if let Some(t) = image.topics.get(TXN_TOPIC) {
            return Ok(t.clone());
        }
        let live = image.brokers.values().filter(|b| !b.fenced).count();
        let rf = (self.config.txn_state_log_replication_factor as usize).min(live.max(1));
        let min_isr = (self.config.txn_state_log_min_isr as usize).clamp(1, rf.max(1));
        let spec = CreateTopicSpec {
            name: TXN_TOPIC.to_string(),
            num_partitions: self.config.txn_state_log_num_partitions,
            replication_factor: rf as i16,
            configs: [
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("min.insync.replicas".to_string(), min_isr.to_string()),
            ]
            .into(),
            ..Default::default()
        };
        self.create_or_get(&spec).await
    }

    /// Creates the topic of `spec`, or returns it when another request created it first.
    async fn create_or_get(&self, spec: &CreateTopicSpec) -> Result<TopicMeta, TopicsError> {
        match self.create(spec).await {
            Err(TopicsError::Metadata(MetadataError::TopicExists(_))) => self
                .metadata
                .image()
                .topics
                .get(&spec.name)
                .cloned()
                .ok_or_else(|| MetadataError::UnknownTopic(spec.name.clone()).into()),
            other => other,
        }
    }
}
