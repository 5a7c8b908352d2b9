//! A cluster member (`controller.quorum.voters` set), built in order: the inter-broker port
//! is bound first (so it is taken, and peers' connections wait in its backlog), the metadata
//! quorum node is opened on it without serving, the broker is built, and only then is the
//! gRPC listener served — the Raft service and the `Cluster` service with the finished
//! broker's handler (`handler`) — and the background loops of `cluster` are started.
//!
//! May depend on: `broker`, `topics`, `metadata_source`, `cluster`, `config`, `quorum`, `rpc`
//! (auth, TLS, the `Cluster` service and peers), `offsets_topic`, `group`, `lease`,
//! `replication`, `writer`, `txn`, `metrics`, `events`, `fetch_session`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::cluster::ControllerLeases;
use crate::config::BrokerConfig;
use crate::events::Events;
use crate::group::GroupCoordinator;
use crate::lease::{ClusterLiveness, SelfLease};
use crate::metadata_source::MetadataSource;
use crate::metrics::Metrics;
use crate::offsets_topic::{OffsetsLoader, OffsetsTopicPlacement, ReplicatedOffsetStore};
use crate::quorum::{MetadataQuorum, QuorumConfig, QuorumError};
use crate::replication::manager::{BoxFuture, ReplicaTransport};
use crate::replication::{PeerError, ReplicaFetchRequest, ReplicaFetchResponse};
use crate::rpc::cluster::{ClusterPeers, ClusterService};
use crate::topics::Topics;
use crate::writer::PartitionWriter;

use super::coordinators::{group_config, open_txns};
use super::handler::Handler;
use super::storage::Storage;
use super::NodeError;

/// Opens a cluster member on its opened storage (see the module docs for the order).
pub(super) async fn open(config: BrokerConfig, storage: Storage) -> Result<Arc<Broker>, NodeError> {
    let mut quorum_config = QuorumConfig::from_broker(&config);
    if config.inter_broker_tls {
        // Mutual TLS between brokers with the ssl.* files (rpc::tls); the secret, when set,
        // is checked as well.
        let node = quorum_config.node_id;
        let tls = crate::rpc::tls::InterBrokerTls::new(node, &config.ssl)
            .map_err(|e| QuorumError::Tls(e.to_string()))?;
        quorum_config.auth = Arc::new(
            crate::rpc::auth::RpcAuth::new(
                node,
                config.inter_broker_secret.as_ref().map(|s| s.0.clone()),
            )
            .with_tls(Arc::new(tls)),
        );
    }
    let auth = quorum_config.auth.clone();
    let bind = config.raft_listener;
    tracing::info!(
        raft_listener = %bind,
        mutual_tls = auth.tls().is_some(),
        secret = auth.has_secret(),
        narrowed_from_wildcard = config.raft_listener_narrowed,
        "inter-broker gRPC port"
    );
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| QuorumError::Bind { addr: bind, source })?;
    let (quorum, server) = MetadataQuorum::open(
        quorum_config,
        storage.logs.db(),
        crate::quorum::local_addr(&listener)?,
    )
    .await?;
    let addrs: BTreeMap<i32, String> = config
        .quorum_voters
        .iter()
        .map(|v| (v.id, v.addr()))
        .collect();
    let peers = ClusterPeers::new(addrs, auth.clone());
    let liveness = Arc::new(ClusterLiveness::default());
    let transport = Arc::new(WatchedTransport {
        peers: peers.clone(),
        liveness: liveness.clone(),
    });
    let leases = Arc::new(ControllerLeases::default());
    let broker = Arc::new(assemble(Parts {
        config,
        quorum,
        storage,
        transport,
        liveness,
        leases: leases.clone(),
    })?);
    broker.txns.set_transport(peers.clone());
    let host = Arc::downgrade(&broker);
    let host: std::sync::Weak<dyn crate::txn::host::TxnHost> = host;
    broker.txns.start(host, broker.shutdown.clone());
    let handler = Arc::new(Handler {
        broker: broker.clone(),
        leases: leases.clone(),
    });
    server.serve(listener, Some(ClusterService::new(handler, auth)));
    crate::cluster::spawn(broker.clone(), leases, peers);
    Ok(broker)
}

/// What a cluster member's broker is built from besides its settings.
struct Parts {
    config: BrokerConfig,
    quorum: MetadataQuorum,
    storage: Storage,
    transport: Arc<dyn ReplicaTransport>,
    liveness: Arc<ClusterLiveness>,
    leases: Arc<ControllerLeases>,
}

/// Builds the broker of a cluster member: groups placed by the offsets topic's leaders with
/// their offsets replicated in `__consumer_offsets`, transactions over `__transaction_state`.
fn assemble(parts: Parts) -> Result<Broker, NodeError> {
    let Parts {
        config,
        quorum,
        storage: Storage { logs, replication },
        transport,
        liveness,
        leases,
    } = parts;
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
        config.node_id,
    ));
    let groups = Arc::new(GroupCoordinator::open(
        config.node_id,
        group_config(&config),
        placement,
        store.clone(),
    )?);
    writer.set_marker_listener(store.clone());
    let txns = open_txns(&config, &logs, &writer, &self_lease, true);
    replication.set_role_listener(Arc::new(crate::txn::loader::Fanout(vec![
        Arc::new(OffsetsLoader {
            store: Arc::downgrade(&store),
            groups: Arc::downgrade(&groups),
        }),
        Arc::new(crate::txn::loader::TxnLoader {
            coordinator: Arc::downgrade(&txns),
        }),
    ])));
    let fetch_sessions =
        crate::fetch_session::FetchSessionCache::new(config.fetch_session_cache_slots);
    let config = Arc::new(config);
    let metadata = Arc::new(MetadataSource::Quorum(quorum));
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
    Ok(Broker {
        fetch_sessions,
        groups,
        txns,
        cluster_id: cluster_id_from(&voters.join(",")),
        config,
        metadata,
        access,
        topics,
        writer,
        logs,
        replication,
        shutdown,
        heard_brokers: leases,
        liveness,
        incarnation: rand::random::<u64>() | 1,
        self_lease,
        metrics: Arc::new(Metrics::new()),
        events: Arc::new(Events::default()),
    })
}

/// The follower fetch transport, watched: when a fetch from a partition leader fails, the
/// leader's inter-broker port is probed, and a refusal marks it suspect on this broker (its
/// partitions are answered without a leader until the controller fences it or it answers a
/// fetch again). A leader killed under its followers is so known within milliseconds, before
/// the controller notices its missing heartbeats.
struct WatchedTransport {
    peers: Arc<ClusterPeers>,
    liveness: Arc<ClusterLiveness>,
}

impl ReplicaTransport for WatchedTransport {
    fn fetch(
        &self,
        leader: i32,
        req: ReplicaFetchRequest,
    ) -> BoxFuture<'_, Result<ReplicaFetchResponse, PeerError>> {
        Box::pin(async move {
            let result = self.peers.fetch(leader, req).await;
            match &result {
                Ok(_) => self.liveness.reachable(leader),
                Err(_) => {
                    if let Some(addr) = self.peers.addr(leader) {
                        if crate::cluster::refuses(&addr, Duration::from_millis(200)).await {
                            self.liveness.refused(leader);
                        }
                    }
                }
            }
            result
        })
    }
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
