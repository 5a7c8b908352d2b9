//! One client connection: TLS first on SSL/SASL_SSL listeners, then read frames, let the SASL
//! gate see them on SASL listeners, dispatch the rest as the connection's principal — several
//! consecutive Produce requests at once (pipelined, appending in request order), anything else
//! alone — and write responses in request order. A frame that cannot be parsed closes this connection only,
//! and so does a connection that completes no request for `connections.max.idle.ms` — idle,
//! or trickling a frame it never finishes (slowloris) — and a TLS ClientHello sent to a
//! listener without TLS.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesOrdered, StreamExt};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::auth::{SaslGate, Verdict, MAX_RECEIVE_BEFORE_AUTH};
use super::quotas::Permit;
use super::ListenerSecurity;
use crate::api::turn::TurnChain;
use crate::api::{api_name, dispatch_in_turn, DispatchError, Outcome};
use crate::broker::Broker;
use crate::protocol::header::peek_header;
use crate::protocol::FrameReader;
use crate::security::tls::principal_of;
use crate::security::Principal;

/// Produce's API key.
const PRODUCE: i16 = 0;

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
    let idle = Duration::from_millis(crate::broker_dynamic::millis(
        &broker,
        "connections.max.idle.ms",
        broker.config.connections_max_idle_ms,
    ));
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

/// A request of the connection that finished (in request order).
enum Finished {
    Answered {
        api_key: Option<i16>,
        took: Duration,
        outcome: Result<Outcome, DispatchError>,
    },
    /// The SASL gate answered the frame itself.
    Sasl(BytesMut),
    /// The SASL gate answered and closes the connection.
    SaslClose(BytesMut, String),
    /// The SASL gate closes the connection without an answer.
    Close(String),
}

type InFlight = Pin<Box<dyn Future<Output = Finished> + Send>>;

/// Reads frames and answers them in request order. Produce requests are pipelined: while
/// earlier Produce requests wait for their flush or replication, the next ones (up to
/// `max.in.flight.produce.requests.per.connection`, and while their frames total at most `socket.request.max.bytes`) are
/// already read and started; their appends still happen in request order (`api::turn`). Any
/// other request (and any request before SASL authentication) waits until everything before
/// it was answered and runs alone, as Kafka handles every request; no request behind it
/// starts until it is answered.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    peer: &Peer,
    tls_principal: Principal,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    let addr = peer.addr;
    let mut reader = FrameReader::new(broker.config.socket_request_max_bytes);
    let idle = Duration::from_millis(crate::broker_dynamic::millis(
        &broker,
        "connections.max.idle.ms",
        broker.config.connections_max_idle_ms,
    ));
    let mut gate = peer.security.sasl.clone().map(SaslGate::new);
    let max_frame = broker.config.socket_request_max_bytes;
    let max_in_flight = broker.config.max_in_flight_produce.max(1);
    if gate.is_some() {
        reader.set_max(max_frame.min(MAX_RECEIVE_BEFORE_AUTH));
    }
    let checks_for_tls = peer.security.tls.is_none();
    let mut first_read = true;
    // Moved on by complete requests only: bytes of an unfinished frame are not activity.
    let mut deadline = Instant::now() + idle;
    // Requests in progress, answered in this order, with (frame bytes, pipelined) of each.
    let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    let mut admitted: VecDeque<(usize, bool)> = VecDeque::new();
    let mut turns = TurnChain::default();
    // A complete frame not started yet (it must wait for the requests before it).
    let mut pending: Option<Bytes> = None;
    // The client closed its side: answer the complete frames already read, read no more.
    let mut eof = false;
    // The SASL gate decided to close: answer what is in progress, start nothing more.
    let mut closing = false;
    loop {
        if pending.is_none() && !closing {
            match reader.parse() {
                Ok(frame) => pending = frame,
                Err(e) => {
                    tracing::warn!(peer = %addr, error = %e, "closing connection");
                    return;
                }
            }
        }
        if let Some(frame) = pending.take() {
            let api_key = peek_header(&frame).ok().map(|p| p.api_key);
            let pipelined =
                api_key == Some(PRODUCE) && gate.as_ref().is_none_or(|g| g.authenticated());
            let bytes: usize = admitted.iter().map(|(b, _)| b).sum();
            let may_start = admitted.is_empty()
                || (pipelined
                    && admitted.iter().all(|(_, p)| *p)
                    && admitted.len() < max_in_flight
                    && bytes + frame.len() <= max_frame);
            if !may_start {
                pending = Some(frame);
            } else {
                admitted.push_back((frame.len(), pipelined));
                let verdict = match gate.as_mut() {
                    None => Verdict::Dispatch(tls_principal.clone()),
                    Some(gate) => gate.on_frame(frame.clone(), &broker),
                };
                let request: InFlight = match verdict {
                    Verdict::Dispatch(principal) => {
                        let turn = pipelined.then(|| Arc::new(turns.next_turn()));
                        let broker = broker.clone();
                        let listener = peer.listener.clone();
                        Box::pin(async move {
                            let started = std::time::Instant::now();
                            let outcome = dispatch_in_turn(
                                &broker,
                                frame,
                                Some(addr),
                                Some(listener),
                                principal,
                                turn,
                            )
                            .await;
                            Finished::Answered {
                                api_key,
                                took: started.elapsed(),
                                outcome,
                            }
                        })
                    }
                    Verdict::Reply(bytes) => {
                        if gate.as_ref().is_some_and(|g| g.authenticated()) {
                            reader.set_max(max_frame);
                        }
                        Box::pin(std::future::ready(Finished::Sasl(bytes)))
                    }
                    Verdict::ReplyAndClose(bytes, why) => {
                        closing = true;
                        Box::pin(std::future::ready(Finished::SaslClose(bytes, why)))
                    }
                    Verdict::Close(why) => {
                        closing = true;
                        Box::pin(std::future::ready(Finished::Close(why)))
                    }
                };
                in_flight.push_back(request);
                continue;
            }
        }
        if (closing || (eof && pending.is_none())) && in_flight.is_empty() {
            return;
        }
        let reads = pending.is_none() && !closing && !eof;
        if reads {
            reader.reserve_for_read();
        }
        tokio::select! {
            // Long waits (fetch long polls, group joins) must not hold up shutdown; requests
            // cut short here get no answer and the client retries elsewhere or later.
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(deadline), if in_flight.is_empty() => {
                tracing::debug!(peer = %addr, idle_ms = idle.as_millis() as u64, pending_bytes = reader.buf.len(),
                    "closing connection: no complete request within connections.max.idle.ms");
                return;
            }
            Some(finished) = in_flight.next(), if !in_flight.is_empty() => {
                admitted.pop_front();
                if !answer(&mut socket, peer, &broker, finished).await {
                    return;
                }
                deadline = Instant::now() + idle;
            }
            read = socket.read_buf(&mut reader.buf), if reads => match read {
                Ok(0) => eof = true,
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
                }
                Err(e) => {
                    tracing::debug!(peer = %addr, error = %e, "read failed");
                    return;
                }
            },
        }
    }
}

/// Sends what a finished request answers, records its metrics; false when the connection
/// must close.
async fn answer<S: AsyncWrite + Unpin>(
    socket: &mut S,
    peer: &Peer,
    broker: &Broker,
    finished: Finished,
) -> bool {
    let addr = peer.addr;
    let bytes = match finished {
        Finished::Answered {
            api_key,
            took,
            outcome,
        } => {
            if let Some(key) = api_key {
                broker.metrics.observe_request(key, || api_name(key), took);
            }
            match outcome {
                Ok(Outcome::Reply(bytes)) => bytes,
                Ok(Outcome::NoReply) => return true,
                Err(e) => {
                    tracing::warn!(peer = %addr, error = %e, "closing connection");
                    return false;
                }
            }
        }
        Finished::Sasl(bytes) => bytes,
        Finished::SaslClose(bytes, why) => {
            tracing::info!(peer = %addr, listener = %peer.listener, reason = %why, "SASL authentication failed; closing connection");
            let _ = write(socket, &bytes).await;
            return false;
        }
        Finished::Close(why) => {
            tracing::info!(peer = %addr, listener = %peer.listener, reason = %why, "closing SASL connection");
            return false;
        }
    };
    if let Err(e) = write(socket, &bytes).await {
        tracing::debug!(peer = %addr, error = %e, "write failed");
        return false;
    }
    true
}

/// Writes a response; flushes so TLS records leave at once (a no-op on plain TCP).
async fn write<S: AsyncWrite + Unpin>(socket: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    socket.write_all(bytes).await?;
    socket.flush().await
}
