//! This broker's side of a topic: opening the logs of the partitions it hosts, deleting those
//! left by an older topic of the same name, and taking up roles after a topic change.
//!
//! May depend on: the parent `topics`, `log`, `metadata`, `replication`.

use crate::log::LogError;
use crate::metadata::TopicMeta;

use super::Topics;

impl Topics {
    /// Opens this broker's logs of `topic`'s partitions (those it is a replica of), recorded
    /// with the topic's id. A log of an older topic of the same name is left alone, until
    /// [`Topics::drop_older_logs`] may delete it.
    pub fn open_logs(&self, topic: &TopicMeta) -> Result<(), LogError> {
        for p in &topic.partitions {
            if p.replicas.contains(&self.config.node_id) {
                match self
                    .logs
                    .open_partition_with_id(&topic.name, p.index, topic.topic_id())
                {
                    Ok(_) | Err(LogError::InconsistentTopicId { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Deletes this broker's logs of `topic`'s partitions that were recorded for another topic
    /// id: the data of a topic of the same name deleted (and re-created) while this broker was
    /// down or behind. Call only with an image at least as new as every log on this broker;
    /// the id each log is checked against is the newest image's (see
    /// [`crate::replication::manager::ReplicaManager::delete_older_topic_log`]).
    pub fn drop_older_logs(&self, topic: &TopicMeta) -> Result<(), LogError> {
        for p in &topic.partitions {
            if !p.replicas.contains(&self.config.node_id) {
                continue;
            }
            if let Some((old, id)) =
                self.replication
                    .delete_older_topic_log(&topic.name, p.index, || self.metadata.image())?
            {
                tracing::info!(
                    topic = %topic.name,
                    partition = p.index,
                    old_topic_id = %uuid::Uuid::from_u128(old),
                    topic_id = %uuid::Uuid::from_u128(id),
                    "deleted the log of a deleted topic of the same name (its topic id differs)"
                );
                self.logs.release_space_soon();
            }
        }
        Ok(())
    }

    /// Brings partition roles in line with the current image after a topic change.
    pub fn sync_roles(&self) -> Result<(), LogError> {
        self.replication.on_latest_metadata(
            || self.metadata.image(),
            &self.transport,
            &self.shutdown,
        )
    }
}
