//! The HTTP admin listener (`http.listener`): what operators and their tools read, next to
//! the Kafka listener.
//!
//! - `GET /metrics`: Prometheus/OpenMetrics text ([`scrape`]).
//! - `GET /health`: 200 while the process serves (liveness).
//! - `GET /ready`: 200 when this broker is a working cluster member, else 503 with the
//!   reasons as JSON ([`ready`]).
//! - `GET /v1/cluster`: brokers, controller, quorum, topics, groups, recent events as JSON
//!   ([`view`]).
//! - `GET /`: the live web console, one static page embedded in the binary that polls
//!   `/v1/cluster` every second.
//!
//! HTTP/1.1 through hyper (already built for tonic's gRPC, so no new compile cost), one task
//! per connection, read-only: nothing here changes the cluster. Connections are accepted by
//! the Kafka listeners' accept loop ([`crate::server::accept`]), so the same connection limits
//! apply, and idle ones close after `connections.max.idle.ms`.
//!
//! May depend on: `broker` and what it holds (metadata, logs, groups, metrics, events), and
//! `server`'s accept loop and connection quotas.

pub mod ready;
pub mod scrape;
pub mod view;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::server::accept::{accept_loop, OnShutdown};
use crate::server::quotas::ConnectionQuotas;

/// The web console (see `console.html`).
const CONSOLE: &str = include_str!("console.html");

/// Serves the admin listener until `shutdown` is cancelled. Its connections count against
/// the same `max.connections` / `max.connections.per.ip` as the Kafka listeners, and one that
/// completes no request for `connections.max.idle.ms` is closed.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    quotas: Arc<ConnectionQuotas>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    accept_loop(
        Arc::from("http"),
        listener,
        quotas,
        shutdown.clone(),
        OnShutdown::Abort,
        move |socket, peer, permit| {
            let broker = broker.clone();
            let shutdown = shutdown.clone();
            async move {
                let _permit = permit;
                serve_connection(socket, peer, broker, idle, shutdown).await;
            }
        },
    )
    .await
}

/// One HTTP/1.1 connection: requests answered in order until the client closes it, it stays
/// idle for `idle`, or the broker stops.
async fn serve_connection(
    socket: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    idle: Duration,
    shutdown: CancellationToken,
) {
    // Moved on by every request; a connection that sends none within `idle` is closed.
    let last_request = Arc::new(Mutex::new(Instant::now()));
    let seen = last_request.clone();
    let service = hyper::service::service_fn(move |req| {
        *seen.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        let broker = broker.clone();
        async move { Ok::<_, Infallible>(route(&broker, &req)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(socket), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let deadline = *last_request.lock().unwrap_or_else(|p| p.into_inner()) + idle;
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                }
                return;
            }
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(deadline), if !closing => {
                let last = *last_request.lock().unwrap_or_else(|p| p.into_inner());
                if last.elapsed() >= idle {
                    tracing::debug!(%peer, idle_ms = idle.as_millis() as u64,
                        "closing HTTP connection: no request within connections.max.idle.ms");
                    // Finishes a response in flight, then closes.
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Answers one request.
fn route(broker: &Broker, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is served here\n".into(),
        );
    }
    match req.uri().path() {
        "/" | "/index.html" => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(CONSOLE.as_bytes()),
        ),
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Bytes::from(scrape::render(broker)),
        ),
        "/health" => json(StatusCode::OK, &serde_json::json!({"status": "live"})),
        "/ready" => {
            let r = ready::check(broker);
            let status = if r.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(status, &r)
        }
        "/v1/cluster" => json(StatusCode::OK, &view::cluster(broker)),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /, /metrics, /health, /ready or /v1/cluster\n".into(),
        ),
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", Bytes::from(body))
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(v) => respond(status, "application/json", Bytes::from(v)),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode JSON: {e}\n"),
        ),
    }
}
