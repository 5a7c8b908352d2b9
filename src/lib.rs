//! raftka: a Kafka-compatible event streaming broker.
//!
//! The crate, from the wire inwards:
//! - [`server`]: accept loop and per-connection tasks, graceful shutdown.
//! - [`protocol`]: frames, request headers, response encoding, the record-batch builder (no
//!   tokio, no storage).
//! - [`api`]: one module per Kafka API and the table behind ApiVersions and the router.
//! - [`broker`]: the broker's shared state and the services built beside it.
//! - [`topics`]: the topic admin service — create, delete, add partitions, alter configs,
//!   effective topic configs — for either mode.
//! - [`metadata_source`]: where metadata comes from, the local store or the quorum.
//! - [`metadata`]: the cluster image (brokers, topics, partitions, configs) and its store.
//! - [`quorum`]: the metadata quorum node (openraft): bootstrap, submit, local reads.
//! - [`quorum_voters`]: the quorum's dynamic voters (AddRaftVoter, RemoveRaftVoter) as openraft
//!   membership changes.
//! - [`raft`]: the quorum's Raft log and state machine in sled, and its openraft types.
//! - [`rpc`]: gRPC between brokers (tonic): the Raft service and the per-peer clients.
//! - [`log`]: partition logs in sled, idempotent-producer state, retention and compaction,
//!   group-commit flushes and per-partition long-poll readiness.
//! - [`writer`]: the one leader append/commit path (Produce and the offsets store).
//! - [`fetch_session`]: the cache of client fetch sessions (KIP-227) and their rules.
//! - [`cleaner`]: the periodic task applying each topic's cleanup.policy.
//! - [`producer_expiry`]: the periodic task forgetting idle idempotent producers.
//! - [`broker_dynamic`]: this broker's dynamic settings that are not topic defaults, read where
//!   used.
//! - [`group`]: the consumer-group coordinator and committed offsets.
//! - [`config`]: Kafka-named settings from file, environment and flags.
//! - [`alloc`]: the global allocator guard against hostile array lengths in requests.
//! - [`logging`]: the broker's log output (levels, text/json, quiet library internals).
//! - [`cli`]: the `raftka cluster|topic|group` admin commands, a Kafka client that depends
//!   on nothing else in the crate but the leaves `protocol::batch_builder` and `clock`.
//! - [`clock`]: the wall clock (record timestamps) and the monotonic ones (liveness, leases).
//! - [`http`]: the HTTP admin listener — `/metrics`, `/health`, `/ready`, `/v1/cluster`, the
//!   web console; [`metrics`]: the counters the request path moves; [`events`]: the ring of
//!   recent fencing, leader and ISR changes.
//! - [`access`]: the authorizer as a service (settings and the image's ACLs), carried by
//!   every request's context.
//! - [`security`]: who is asking — the principal a connection authenticated as, TLS, SASL
//!   (PLAIN, SCRAM) and SCRAM credentials.
//!
//! - [`node`]: builds the broker once, in order, for a single broker or a cluster member
//!   (storage, metadata, coordinators, then the inter-broker gRPC listener and the loops).
//! - [`cluster`]: a cluster member's background loops — follows the metadata, registers,
//!   heartbeats, and as controller runs the fencing/election loop with the leases it owns;
//!   [`lease`]: a broker's own session;
//!   [`replication`]: follower fetching, the high watermark and the ISR; [`offsets_topic`]:
//!   committed offsets replicated in `__consumer_offsets`; [`txn`]: the transaction
//!   coordinator over `__transaction_state`.
//!
//! Dependencies point inwards: `server → api → broker → {metadata, log, group} → config`,
//! `broker → topics → {metadata_source, metadata, log, replication, group}`,
//! `cleaner → broker`, `producer_expiry → broker`, `http → broker`;
//! `broker → {quorum → {rpc → raft} → metadata, replication → log, offsets_topic, txn}`;
//! `node → {broker, cluster → broker}` builds and drives it (nothing imports `node` but `run`).

pub mod access;
pub mod alloc;
pub mod api;
pub mod broker;
pub mod broker_dynamic;
pub mod cleaner;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod events;
pub mod fetch_session;
pub mod group;
pub mod http;
pub mod lease;
pub mod log;
pub mod logging;
pub mod metadata;
pub mod metadata_source;
pub mod metrics;
pub mod node;
pub mod offsets_topic;
pub mod producer_expiry;
pub mod protocol;
pub mod quorum;
pub mod quorum_voters;
pub mod raft;
pub mod replication;
pub mod rpc;
pub mod security;
pub mod server;
pub mod topics;
pub mod txn;
pub mod writer;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use broker::Broker;
pub use config::BrokerConfig;

/// Opens the broker, binds its listeners and serves until `shutdown` is cancelled; then
/// flushes storage.
pub async fn run(config: BrokerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    security::exposure::warn_open_doors(&config);
    let broker = node::open(config).await?;
    let mut servers = tokio::task::JoinSet::new();
    // Session and rebalance timeouts of consumer groups; when the broker stops it releases
    // waiting JoinGroup/SyncGroup requests (NOT_COORDINATOR).
    let sweeper = tokio::spawn(broker.groups.clone().run_sweeper(broker.shutdown.clone()));
    // Retention and compaction, every log.retention.check.interval.ms.
    tokio::spawn(cleaner::run(broker.clone()));
    // Idle idempotent producers, every producer.id.expiration.check.interval.ms.
    tokio::spawn(producer_expiry::run(broker.clone()));
    let quotas = server::quotas::ConnectionQuotas::new(&broker.config);
    // One TLS source (reloaded when its files change) and one SASL user list for all the
    // listeners that need them; unusable files stop the broker here.
    let listeners = &broker.config.listeners;
    // SSL listeners ask for client certificates as ssl.client.auth says; SASL_SSL ones do
    // not (KIP-684: the SASL identity is the principal there).
    // A listener with listener.name.<name>.ssl.* overrides gets its own source.
    let tls_source =
        |protocol: config::SecurityProtocol, base: &config::SslConfig| -> anyhow::Result<_> {
            if !listeners.iter().any(|l| l.protocol == protocol) {
                return Ok(None);
            }
            let mut settings = base.clone();
            if protocol.sasl() {
                settings.client_auth = None;
            }
            Ok(Some(Arc::new(security::tls::TlsSource::new(&settings)?)))
        };
    let plain = |p| {
        listeners.iter().any(|l| {
            l.protocol == p
                && !broker
                    .config
                    .listener_ssl
                    .contains_key(&l.name.to_ascii_uppercase())
        })
    };
    let ssl = match plain(config::SecurityProtocol::Ssl) {
        true => tls_source(config::SecurityProtocol::Ssl, &broker.config.ssl)?,
        false => None,
    };
    let sasl_ssl = match plain(config::SecurityProtocol::SaslSsl) {
        true => tls_source(config::SecurityProtocol::SaslSsl, &broker.config.ssl)?,
        false => None,
    };
    let sasl = match listeners.iter().any(|l| l.protocol.sasl()) {
        true => Some(Arc::new(security::sasl::SaslSettings::from_config(
            &broker.config.sasl,
        )?)),
        false => None,
    };
    for l in listeners {
        let security = Arc::new(server::ListenerSecurity {
            protocol: l.protocol,
            tls: match (
                l.protocol,
                broker.config.listener_ssl.get(&l.name.to_ascii_uppercase()),
            ) {
                (p, Some(own)) if p.tls() => tls_source(p, own)?,
                (config::SecurityProtocol::Ssl, _) => ssl.clone(),
                (config::SecurityProtocol::SaslSsl, _) => sasl_ssl.clone(),
                _ => None,
            },
            sasl: sasl.clone().filter(|_| l.protocol.sasl()),
        });
        let listener = TcpListener::bind(l.bind)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind listener {} on {}: {e}", l.name, l.bind))?;
        tracing::info!(
            node_id = broker.config.node_id,
            listener = %l.name,
            addr = %listener.local_addr()?,
            advertised = %format!("{}:{}", l.advertised_host, l.advertised_port),
            protocol = ?l.protocol,
            "raftka broker listening"
        );
        servers.spawn(server::serve(
            Arc::from(l.name.as_str()),
            security,
            listener,
            broker.clone(),
            quotas.clone(),
            broker.shutdown.clone(),
        ));
    }
    let admin = TcpListener::bind(broker.config.http_listener)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot bind http.listener on {}: {e}",
                broker.config.http_listener
            )
        })?;
    tracing::info!(addr = %admin.local_addr()?, "HTTP admin listener (metrics, health, console)");
    servers.spawn(http::serve(
        admin,
        broker.clone(),
        quotas.clone(),
        broker.shutdown.clone(),
    ));
    let stop = broker.shutdown.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stop.cancel();
    });
    while let Some(r) = servers.join_next().await {
        r??;
    }
    sweeper.await?;
    broker.logs.flush()?;
    tracing::info!("raftka broker stopped; data flushed");
    Ok(())
}
