//! raftka: a Kafka-compatible event streaming broker.
//!
//! The crate, from the wire inwards:
//! - [`server`]: accept loop and per-connection tasks, graceful shutdown.
//! - [`protocol`]: frames, request headers, response encoding (no tokio, no storage).
//! - [`api`]: one module per Kafka API and the table behind ApiVersions and the router.
//! - [`broker`]: the broker's shared state and topic lifecycle operations.
//! - [`metadata`]: the cluster image (brokers, topics, partitions, configs) and its store.
//! - [`quorum`]: the metadata quorum node (openraft): bootstrap, submit, local reads.
//! - [`raft`]: the quorum's Raft log and state machine in sled, and its openraft types.
//! - [`rpc`]: gRPC between brokers (tonic): the Raft service and the per-peer clients.
//! - [`log`]: partition logs in sled, idempotent-producer state, retention and compaction,
//!   group-commit flushes and per-partition long-poll readiness.
//! - [`writer`]: the one leader append/commit path (Produce and the offsets store).
//! - [`cleaner`]: the periodic task applying each topic's cleanup.policy.
//! - [`producer_expiry`]: the periodic task forgetting idle idempotent producers.
//! - [`group`]: the consumer-group coordinator and committed offsets.
//! - [`config`]: Kafka-named settings from file, environment and flags.
//! - [`alloc`]: the global allocator guard against hostile array lengths in requests.
//! - [`logging`]: the broker's log output (levels, text/json, quiet library internals).
//! - [`cli`]: the `raftka cluster|topic|group` admin commands, a Kafka client that depends
//!   on nothing else in the crate.
//! - [`http`]: the HTTP admin listener — `/metrics`, `/health`, `/ready`, `/v1/cluster`, the
//!   web console; [`metrics`]: the counters the request path moves; [`events`]: the ring of
//!   recent fencing, leader and ISR changes.
//! - [`security`]: who is asking — the principal a connection authenticated as, TLS, SASL
//!   (PLAIN, SCRAM) and SCRAM credentials.
//!
//! - [`cluster`]: a broker as a cluster member — opens the quorum, registers, heartbeats, and
//!   as controller runs the placement/election loop; [`lease`]: a broker's own session;
//!   [`replication`]: follower fetching, the high watermark and the ISR; [`offsets_topic`]:
//!   committed offsets replicated in `__consumer_offsets`.
//!
//! Dependencies point inwards: `server → api → broker → {metadata, log, group} → config`,
//! `cleaner → broker`, `producer_expiry → broker`, `http → broker`;
//! `broker → {quorum → {rpc → raft} → metadata, replication → log, offsets_topic}`;
//! `broker ⇄ cluster` is the one circle left (see `broker`).

pub mod alloc;
pub mod api;
pub mod broker;
pub mod cleaner;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod events;
pub mod group;
pub mod http;
pub mod lease;
pub mod log;
pub mod logging;
pub mod metadata;
pub mod metrics;
pub mod offsets_topic;
pub mod producer_expiry;
pub mod protocol;
pub mod quorum;
pub mod raft;
pub mod replication;
pub mod rpc;
pub mod security;
pub mod server;
pub mod writer;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use broker::Broker;
pub use config::BrokerConfig;

/// Opens the broker, binds its listeners and serves until `shutdown` is cancelled; then
/// flushes storage.
pub async fn run(config: BrokerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let broker = Broker::open(config).await?;
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
    let tls_source = |protocol: config::SecurityProtocol| -> anyhow::Result<_> {
        if !listeners.iter().any(|l| l.protocol == protocol) {
            return Ok(None);
        }
        let mut settings = broker.config.ssl.clone();
        if protocol.sasl() {
            settings.client_auth = None;
        }
        Ok(Some(Arc::new(security::tls::TlsSource::new(&settings)?)))
    };
    let ssl = tls_source(config::SecurityProtocol::Ssl)?;
    let sasl_ssl = tls_source(config::SecurityProtocol::SaslSsl)?;
    let sasl = match listeners.iter().any(|l| l.protocol.sasl()) {
        true => Some(Arc::new(security::sasl::SaslSettings::from_config(
            &broker.config.sasl,
        )?)),
        false => None,
    };
    for l in listeners {
        let security = Arc::new(server::ListenerSecurity {
            protocol: l.protocol,
            tls: match l.protocol {
                config::SecurityProtocol::Ssl => ssl.clone(),
                config::SecurityProtocol::SaslSsl => sasl_ssl.clone(),
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
