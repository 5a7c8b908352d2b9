//! One client connection: read frames, dispatch them in order, write responses in order.
//! A frame that cannot be parsed closes this connection only, and so does a connection that
//! completes no request for `connections.max.idle.ms` — idle, or trickling a frame it never
//! finishes (slowloris).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::quotas::Permit;
use crate::api::{api_name, dispatch_from, Outcome};
use crate::broker::Broker;
use crate::protocol::header::peek_header;
use crate::protocol::FrameReader;

pub async fn run(
    mut socket: TcpStream,
    peer: SocketAddr,
    listener: Arc<str>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
    _permit: Permit,
) {
    let mut reader = FrameReader::new(broker.config.socket_request_max_bytes);
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    // Moved on by complete requests only: bytes of an unfinished frame are not activity.
    let mut deadline = Instant::now() + idle;
    loop {
        let frame = match reader.parse() {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                reader.reserve_for_read();
                let read = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep_until(deadline) => {
                        tracing::debug!(%peer, idle_ms = idle.as_millis() as u64, pending_bytes = reader.buf.len(),
                            "closing connection: no complete request within connections.max.idle.ms");
                        return;
                    }
                    r = socket.read_buf(&mut reader.buf) => r,
                };
                match read {
                    Ok(0) => return,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "read failed");
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                return;
            }
        };
        let api_key = peek_header(&frame).ok().map(|p| p.api_key);
        let started = std::time::Instant::now();
        // Long waits (fetch long polls, group joins) must not hold up shutdown; a request cut
        // short here gets no answer and the client retries elsewhere or later.
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = dispatch_from(&broker, frame, Some(peer), Some(listener.clone())) => r,
        };
        if let Some(key) = api_key {
            broker
                .metrics
                .observe_request(key, || api_name(key), started.elapsed());
        }
        match outcome {
            Ok(Outcome::Reply(bytes)) => {
                if let Err(e) = socket.write_all(&bytes).await {
                    tracing::debug!(%peer, error = %e, "write failed");
                    return;
                }
            }
            Ok(Outcome::NoReply) => {}
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                return;
            }
        }
        deadline = Instant::now() + idle;
    }
}
