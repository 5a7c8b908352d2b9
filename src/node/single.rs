//! A single broker (no `controller.quorum.voters`): metadata applied locally in sled, every
//! group coordinated here with its offsets in a fsynced sled tree, no peers to fetch from.
//!
//! May depend on: `broker`, `topics`, `config`, `metadata`, `metadata_source`, `log`, `group`,
//! `lease`, `replication`, `writer`, `txn`, `metrics`, `events`, `fetch_session`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::events::Events;
use crate::group::{GroupCoordinator, GroupError, LocalPlacement, Placement, SledOffsetStore};
use crate::lease::{NoController, SelfLease};
use crate::log::LogStore;
use crate::metadata::MetadataStore;
use crate::metadata_source::MetadataSource;
use crate::metrics::Metrics;
use crate::replication::manager::{NoPeers, ReplicaTransport};
use crate::topics::Topics;
use crate::writer::PartitionWriter;

use super::coordinators::{group_config, open_txns};
use super::storage::Storage;
use super::NodeError;

/// Builds a single broker on its opened storage, opens the logs of every partition it hosts
/// and takes up their roles, then starts the transaction coordinator.
pub(super) fn open(config: BrokerConfig, storage: Storage) -> Result<Arc<Broker>, NodeError> {
    let Storage { logs, replication } = storage;
    let metadata = MetadataStore::open(logs.db(), config.node_id, Broker::me(&config, 0))?;
    let cluster_id = metadata.image().cluster_id.clone();
    let groups = open_groups(
        &config,
        &logs,
        Arc::new(LocalPlacement {
            node_id: config.node_id,
        }),
    )?;
    let self_lease = Arc::new(SelfLease::new(config.session_timeout_ms));
    let writer = Arc::new(PartitionWriter::new(logs.clone(), replication.clone()));
    let txns = open_txns(&config, &logs, &writer, &self_lease, false);
    replication.set_role_listener(Arc::new(crate::txn::loader::TxnLoader {
        coordinator: Arc::downgrade(&txns),
    }));
    let fetch_sessions =
        crate::fetch_session::FetchSessionCache::new(config.fetch_session_cache_slots);
    let config = Arc::new(config);
    let metadata = Arc::new(MetadataSource::Local(metadata));
    let transport: Arc<dyn ReplicaTransport> = Arc::new(NoPeers);
    let shutdown = CancellationToken::new();
    let access = Arc::new(crate::access::Access::new(
        config.authorizer.clone(),
        metadata.clone(),
    ));
    let topics = Topics {
        config: config.clone(),
        metadata: metadata.clone(),
        logs: logs.clone(),
        replication: replication.clone(),
        transport,
        shutdown: shutdown.clone(),
        groups: groups.clone(),
    };
    let broker = Broker {
        groups,
        txns,
        config,
        metadata,
        access,
        topics,
        writer,
        logs,
        replication,
        shutdown,
        heard_brokers: Arc::new(NoController),
        liveness: Default::default(),
        cluster_id,
        incarnation: 0,
        self_lease,
        metrics: Arc::new(Metrics::new()),
        events: Arc::new(Events::default()),
        fetch_sessions,
    };
    for topic in broker.metadata.image().topics.values() {
        broker.topics.drop_older_logs(topic)?;
        broker.topics.open_logs(topic)?;
    }
    broker.sync_roles()?;
    let broker = Arc::new(broker);
    let host = Arc::downgrade(&broker);
    let host: std::sync::Weak<dyn crate::txn::host::TxnHost> = host;
    broker.txns.start(host, broker.shutdown.clone());
    Ok(broker)
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
