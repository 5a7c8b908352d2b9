//! The network edge: the accept loop, one task per connection, graceful shutdown.
//!
//! May depend on: `protocol` (framing), `api` (dispatch), `broker`. Shutdown is a
//! `CancellationToken`: the listener stops accepting, connections finish the request in
//! hand and close. Connection limits are in `quotas`, shared by all listeners.

pub mod accept;
mod connection;
pub mod quotas;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use quotas::ConnectionQuotas;

/// Runs the Kafka listener named `name` until `shutdown` is cancelled.
pub async fn serve(
    name: Arc<str>,
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
                let name = name.clone();
                tasks.spawn(async move {
                    connection::run(socket, peer, name, broker, shutdown, permit).await;
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
