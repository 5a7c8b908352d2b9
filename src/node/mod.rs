//! The node assembly layer: builds a broker once, in order, for one broker or a cluster
//! member — storage first (`storage`: the logs' sled database, the replica manager), then
//! the metadata (a local store, or the quorum node, as one shared `MetadataSource`), the
//! coordinators, the narrow services (`topics::Topics`) and the [`Broker`] holding them
//! (`single`, `cluster`); in a cluster it then serves the inter-broker gRPC listener with the
//! finished broker's handler (`handler`) and starts the background loops of
//! [`crate::cluster`].
//!
//! Nothing below depends on this module: `broker` does not know how it is built, and
//! `cluster` receives the broker it drives.
//!
//! May depend on: `broker`, `topics`, `metadata_source`, `cluster`, `config`, `metadata`,
//! `log`, `group`, `quorum`, `rpc`, `replication`, `offsets_topic`, `lease`, `writer`, `txn`,
//! `metrics`, `events`, `api` (`fetch_session`, and `quorum_admin` for forwarded requests).

mod cluster;
mod coordinators;
mod handler;
mod single;
mod storage;

use std::sync::Arc;

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::group::GroupError;
use crate::log::LogError;
use crate::metadata::MetadataError;
use crate::quorum::QuorumError;

/// Failures while opening a broker.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot open the data directory {dir}: {source}")]
    Storage { dir: String, source: LogError },
    #[error("cannot load metadata: {0}")]
    Metadata(#[from] MetadataError),
    #[error("cannot open the metadata store: {0}")]
    MetadataStore(#[from] crate::metadata::StoreError),
    #[error("cannot open partition log: {0}")]
    Log(#[from] LogError),
    #[error("cannot start the metadata quorum: {0}")]
    Quorum(#[from] QuorumError),
    #[error("cannot open the group coordinator: {0}")]
    Groups(#[from] GroupError),
}

/// Opens the broker's storage and the logs of every partition it hosts; in a cluster
/// (`controller.quorum.voters` set) also starts the metadata quorum, serves the inter-broker
/// gRPC listener (Raft and `Cluster` services) and starts the background loops (see
/// [`crate::cluster`]).
pub async fn open(config: BrokerConfig) -> Result<Arc<Broker>, NodeError> {
    let storage = storage::open(&config)?;
    if config.quorum_voters.is_empty() {
        single::open(config, storage)
    } else {
        cluster::open(config, storage).await
    }
}
