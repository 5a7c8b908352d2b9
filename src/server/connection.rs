//! One client connection: TLS first on SSL/SASL_SSL listeners, then read frames, let the SASL
//! gate see them on SASL listeners, dispatch the rest in order as the connection's principal,
//! and write responses in order. A frame that cannot be parsed closes this connection only,
//! and so does a connection that completes no request for `connections.max.idle.ms` — idle,
//! or trickling a frame it never finishes (slowloris) — and a TLS ClientHello sent to a
//! listener without TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::auth::{SaslGate, Verdict, MAX_RECEIVE_BEFORE_AUTH};
use super::quotas::Permit;
use super::ListenerSecurity;
use crate::api::{api_name, dispatch_as, Outcome};
use crate::broker::Broker;
use crate::protocol::header::peek_header;
use crate::protocol::FrameReader;
use crate::security::tls::principal_of;
use crate::security::Principal;

/// What a connection knows about where it came from.
pub struct Peer {
    pub addr: SocketAddr,
    pub listener: Arc<str>,
    pub security: Arc<ListenerSecurity>,
}

pub async fn run(
    socket: TcpStream,
    peer: Peer,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
    _permit: Permit,
) {
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    let Some(tls) = peer.security.tls.clone() else {
        return serve(socket, &peer, Principal::anonymous(), broker, shutdown).await;
    };
    let accepted = tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = tokio::time::sleep(idle) => {
            tracing::debug!(peer = %peer.addr, "closing connection: TLS handshake not completed within connections.max.idle.ms");
            return;
        }
        r = tls.acceptor().accept(socket) => r,
    };
    let stream = match accepted {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(peer = %peer.addr, listener = %peer.listener, error = %e, "TLS handshake failed");
            return;
        }
    };
    // A verified client certificate names the principal (SSL listeners; SASL_SSL ones use
    // the SASL identity instead).
    let principal = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| principal_of(c))
        .unwrap_or_default();
    tracing::debug!(peer = %peer.addr, listener = %peer.listener, %principal, "TLS connection established");
    serve(stream, &peer, principal, broker, shutdown).await
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    peer: &Peer,
    tls_principal: Principal,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    let addr = peer.addr;
    let mut reader = FrameReader::new(broker.config.socket_request_max_bytes);
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    let mut gate = peer.security.sasl.clone().map(SaslGate::new);
    let max_frame = broker.config.socket_request_max_bytes;
    if gate.is_some() {
        reader.set_max(max_frame.min(MAX_RECEIVE_BEFORE_AUTH));
    }
    let checks_for_tls = peer.security.tls.is_none();
    let mut first_read = true;
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
                        tracing::debug!(peer = %addr, idle_ms = idle.as_millis() as u64, pending_bytes = reader.buf.len(),
                            "closing connection: no complete request within connections.max.idle.ms");
                        return;
                    }
                    r = socket.read_buf(&mut reader.buf) => r,
                };
                match read {
                    Ok(0) => return,
                    Ok(_) => {
                        // A TLS record header (handshake, TLS 1.x) where a Kafka size should
                        // be: a client configured for SSL on a PLAINTEXT listener. Kafka
                        // would wait for a 369 MB frame; close at once instead.
                        if checks_for_tls && first_read && reader.buf.len() >= 2 {
                            first_read = false;
                            if reader.buf[0] == 0x16 && reader.buf[1] == 0x03 {
                                tracing::info!(peer = %addr, listener = %peer.listener,
                                    "closing connection: TLS handshake on a listener without TLS (check the client's security.protocol)");
                                return;
                            }
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(peer = %addr, error = %e, "read failed");
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(peer = %addr, error = %e, "closing connection");
                return;
            }
        };
        let principal = match gate.as_mut() {
            None => tls_principal.clone(),
            Some(gate) => match gate.on_frame(frame.clone(), &broker) {
                Verdict::Dispatch(p) => p,
                Verdict::Reply(bytes) => {
                    if gate.authenticated() {
                        reader.set_max(max_frame);
                    }
                    if let Err(e) = write(&mut socket, &bytes).await {
                        tracing::debug!(peer = %addr, error = %e, "write failed");
                        return;
                    }
                    deadline = Instant::now() + idle;
                    continue;
                }
                Verdict::ReplyAndClose(bytes, why) => {
                    tracing::info!(peer = %addr, listener = %peer.listener, reason = %why, "SASL authentication failed; closing connection");
                    let _ = write(&mut socket, &bytes).await;
                    return;
                }
                Verdict::Close(why) => {
                    tracing::info!(peer = %addr, listener = %peer.listener, reason = %why, "closing SASL connection");
                    return;
                }
            },
        };
        let api_key = peek_header(&frame).ok().map(|p| p.api_key);
        let started = std::time::Instant::now();
        // Long waits (fetch long polls, group joins) must not hold up shutdown; a request cut
        // short here gets no answer and the client retries elsewhere or later.
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = dispatch_as(&broker, frame, Some(addr), Some(peer.listener.clone()), principal) => r,
        };
        if let Some(key) = api_key {
            broker
                .metrics
                .observe_request(key, || api_name(key), started.elapsed());
        }
        match outcome {
            Ok(Outcome::Reply(bytes)) => {
                if let Err(e) = write(&mut socket, &bytes).await {
                    tracing::debug!(peer = %addr, error = %e, "write failed");
                    return;
                }
            }
            Ok(Outcome::NoReply) => {}
            Err(e) => {
                tracing::warn!(peer = %addr, error = %e, "closing connection");
                return;
            }
        }
        deadline = Instant::now() + idle;
    }
}

/// Writes a response; flushes so TLS records leave at once (a no-op on plain TCP).
async fn write<S: AsyncWrite + Unpin>(socket: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    socket.write_all(bytes).await?;
    socket.flush().await
}
