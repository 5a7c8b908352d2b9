//! The network edge: the accept loop, one task per connection, graceful shutdown.
//!
//! May depend on: `protocol` (framing), `api` (dispatch), `broker`, `security` (TLS, SASL).
//! Shutdown is a `CancellationToken`: the listener stops accepting, connections finish the
//! request in hand and close. The accept loop is `accept` (the HTTP admin listener uses it
//! too); connection limits are in `quotas`, shared by all listeners; the
//! SASL exchange of SASL listeners is in `auth`.

pub mod accept;
pub mod auth;
mod connection;
pub mod quotas;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::config::SecurityProtocol;
use crate::security::sasl::SaslSettings;
use crate::security::tls::TlsSource;
use accept::{accept_loop, OnShutdown};
use quotas::ConnectionQuotas;

/// How a listener secures its connections (from `listener.security.protocol.map`).
pub struct ListenerSecurity {
    pub protocol: SecurityProtocol,
    /// Set on SSL and SASL_SSL listeners.
    pub tls: Option<Arc<TlsSource>>,
    /// Set on SASL_PLAINTEXT and SASL_SSL listeners.
    pub sasl: Option<Arc<SaslSettings>>,
}

/// Runs the Kafka listener named `name` until `shutdown` is cancelled.
pub async fn serve(
    name: Arc<str>,
    security: Arc<ListenerSecurity>,
    listener: TcpListener,
    broker: Arc<Broker>,
    quotas: Arc<ConnectionQuotas>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    accept_loop(
        name.clone(),
        listener,
        quotas,
        shutdown.clone(),
        OnShutdown::Drain,
        move |socket, addr, permit| {
            let broker = broker.clone();
            let shutdown = shutdown.clone();
            let peer = connection::Peer {
                addr,
                listener: name.clone(),
                security: security.clone(),
            };
            connection::run(socket, peer, broker, shutdown, permit)
        },
    )
    .await
}
