//! The storage a broker opens first, in either mode: the partition logs' sled database in
//! `log.dirs` (with its high-watermark checkpointer) and the replica manager over it.
//!
//! May depend on: `config`, `log`, `replication`.

use std::sync::Arc;

use crate::config::BrokerConfig;
use crate::log::{LogError, LogStore};
use crate::replication::manager::{ReplicaManager, ReplicationConfig};

use super::NodeError;

/// The broker's logs and the roles of its partitions (none taken yet).
pub(super) struct Storage {
    pub logs: Arc<LogStore>,
    pub replication: Arc<ReplicaManager>,
}

/// Opens the data directory (created if missing) and the replica manager.
pub(super) fn open(config: &BrokerConfig) -> Result<Storage, NodeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| NodeError::Storage {
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
    .map_err(|source| NodeError::Storage {
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
    Ok(Storage { logs, replication })
}
