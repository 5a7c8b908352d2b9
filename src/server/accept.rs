//! The accept loop every TCP listener of the broker shares: accept, count the connection
//! against the broker's [`ConnectionQuotas`] (closing it at once when over a limit, as
//! Kafka does), hand it to a per-connection task, and on shutdown stop accepting and wait for
//! (or abort) the tasks.
//!
//! May depend on: `quotas` only; what a connection speaks is the caller's business.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::quotas::{ConnectionQuotas, Permit};

/// What happens to connection tasks still running when the listener shuts down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnShutdown {
    /// Wait for them: they watch the shutdown token themselves and finish the request in hand.
    Drain,
    /// Abort them (read-only listeners with nothing to finish).
    Abort,
}

/// Accepts connections on `listener` until `shutdown` is cancelled, running `serve` for each
/// one that fits `quotas`. `label` names the listener in log lines. The [`Permit`] passed to
/// `serve` must live as long as the connection: dropping it frees the slot.
pub async fn accept_loop<F, Fut>(
    label: Arc<str>,
    listener: TcpListener,
    quotas: Arc<ConnectionQuotas>,
    shutdown: CancellationToken,
    on_shutdown: OnShutdown,
    serve: F,
) -> std::io::Result<()>
where
    F: Fn(TcpStream, SocketAddr, Permit) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // e.g. too many open files: keep serving the connections we have.
                        tracing::warn!(listener = %label, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let permit = match quotas.acquire(peer.ip()) {
                    Ok(p) => p,
                    Err(e) => {
                        // As Kafka: accepted, then closed at once.
                        tracing::info!(%peer, listener = %label, error = %e, "connection refused");
                        drop(socket);
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                tasks.spawn(serve(socket, peer, permit));
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    if on_shutdown == OnShutdown::Abort {
        tasks.abort_all();
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
