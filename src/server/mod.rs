//! The network edge: the accept loop, one task per connection, graceful shutdown.
//!
//! May depend on: `protocol` (framing), `api` (dispatch), `broker`, `security` (TLS, SASL).
//! Shutdown is a `CancellationToken`: the listener stops accepting, connections finish the
//! request in hand and close. Connection limits are in `quotas`, shared by all listeners; the
//! SASL exchange of SASL listeners is in `auth`.

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
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // e.g. too many open files: keep serving the connections we have.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let permit = match quotas.acquire(peer.ip()) {
                    Ok(p) => p,
                    Err(e) => {
                        // As Kafka: accepted, then closed at once.
                        tracing::info!(%peer, listener = %name, error = %e, "connection refused");
                        drop(socket);
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let broker = broker.clone();
                let shutdown = shutdown.clone();
                let peer = connection::Peer {
                    addr: peer,
                    listener: name.clone(),
                    security: security.clone(),
                };
                tasks.spawn(async move {
                    connection::run(socket, peer, broker, shutdown, permit).await;
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
