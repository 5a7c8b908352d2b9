//! Mutual TLS on the inter-broker gRPC port (`security.inter.broker.protocol=SSL`).
//!
//! Each broker presents its certificate (the `ssl.keystore.location`, or
//! `ssl.key.location` + `ssl.certificate.location`, of its Kafka listeners) and verifies the
//! peer's against the cluster CA (`ssl.truststore.location`), in both directions. A broker's
//! identity is bound to its certificate: a certificate names broker `N` when its
//! subjectAltName DNS names include `broker-N` (and no other `broker-<id>`). A server accepts
//! a connection only from a certificate that names a broker, and the services then let that
//! connection speak only as that broker (see [`super::auth`]); a client dialling broker `N`
//! accepts only a server certificate that names broker `N`.
//!
//! TLS is done here with tokio-rustls (ring, as the Kafka listeners) rather than with tonic's
//! own TLS settings, for two reasons: the files are re-read when they change (checked at most
//! once a second, at a new connection; established connections keep their keys, as in
//! Kafka), and the identity found in the handshake travels to the services as the
//! connection's [`PeerBroker`] (tonic's `Connected` info) instead of being re-parsed on every
//! call.
//!
//! May depend on: `config` (the settings type), `security::tls` (PEM loading), tonic,
//! tokio-rustls, hyper-util, tower-service.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::config::SslConfig;
use crate::security::tls::{load_identity, load_roots, stamps, FileStamp, TlsError};

/// The DNS name prefix of a broker's identity in its certificate: `broker-<node.id>`.
pub const NAME_PREFIX: &str = "broker-";

/// How long a peer may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most handshakes in progress at once; a connection beyond it is closed at once (a flood of
/// idle connections holds no more than this many tasks).
const MAX_HANDSHAKES: usize = 256;

/// How often the PEM files are looked at for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Why mutual TLS between brokers cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum MtlsError {
    #[error(transparent)]
    Files(#[from] TlsError),
    #[error(
        "security.inter.broker.protocol=SSL needs ssl.truststore.location (the CA that every \
         broker's certificate is signed by)"
    )]
    NoTruststore,
    #[error(
        "this broker's certificate does not name it: {0} (the inter-broker port needs a \
         certificate with the subjectAltName DNS:{NAME_PREFIX}<node.id>; scripts/make-certs \
         server DIR {NAME_PREFIX}<id> makes one)"
    )]
    NotThisBroker(String),
    #[error("the TLS settings are not usable: {0}")]
    Rustls(String),
}

/// Why a certificate names no single broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the certificate cannot be parsed")]
    Unparsable,
    #[error("the certificate has no subjectAltName DNS:{NAME_PREFIX}<id>")]
    NoBrokerName,
    #[error("the certificate names several brokers ({0:?})")]
    Ambiguous(Vec<u64>),
}

/// The broker a certificate names: the id of its single `broker-<id>` subjectAltName DNS
/// name (several names for the same id are fine).
pub fn broker_identity(cert: &[u8]) -> Result<u64, IdentityError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert).map_err(|_| IdentityError::Unparsable)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|_| IdentityError::Unparsable)?;
    let mut ids: Vec<u64> = san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => d
                        .strip_prefix(NAME_PREFIX)
                        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|id| id.parse().ok()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    ids.dedup();
    match ids.as_slice() {
        [] => Err(IdentityError::NoBrokerName),
        [id] => Ok(*id),
        _ => Err(IdentityError::Ambiguous(ids)),
    }
}

/// The rustls configs of one broker's inter-broker port, rebuilt when the files change.
pub struct InterBrokerTls {
    node_id: u64,
    files: SslConfig,
    state: Mutex<Loaded>,
    /// When a refused handshake was last logged (unix ms), to log at most one a second.
    last_warn_ms: AtomicU64,
}

impl std::fmt::Debug for InterBrokerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterBrokerTls")
            .field("node_id", &self.node_id)
            .field("files", &self.files)
            .finish()
    }
}

struct Loaded {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    stamp: Vec<FileStamp>,
    checked: Instant,
}

/// Builds both configs from the files; the certificate must name broker `node_id`.
fn build(node_id: u64, s: &SslConfig) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>), MtlsError> {
    let trust = s.truststore.as_ref().ok_or(MtlsError::NoTruststore)?;
    let (chain, key) = load_identity(s)?;
    let own = chain
        .first()
        .ok_or_else(|| MtlsError::NotThisBroker("no certificate".into()))?;
    match broker_identity(own) {
        Ok(id) if id == node_id => {}
        Ok(id) => {
            return Err(MtlsError::NotThisBroker(format!(
                "it names broker {id}, this is broker {node_id}"
            )))
        }
        Err(e) => return Err(MtlsError::NotThisBroker(e.to_string())),
    }
    let roots = Arc::new(load_roots(trust)?);
    let provider = Arc::new(default_provider());
    let rustls = |e: tokio_rustls::rustls::Error| MtlsError::Rustls(e.to_string());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| MtlsError::Rustls(e.to_string()))?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(rustls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(rustls)?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(rustls)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(rustls)?;
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok((Arc::new(server), Arc::new(client)))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl InterBrokerTls {
    /// Loads the files of broker `node_id`; fails (the broker does not start) when they are
    /// missing, unusable, or the certificate does not name this broker.
    pub fn new(node_id: u64, files: &SslConfig) -> Result<Self, MtlsError> {
        let (server, client) = build(node_id, files)?;
        Ok(Self {
            node_id,
            state: Mutex::new(Loaded {
                server,
                client,
                stamp: stamps(files),
                checked: Instant::now(),
            }),
            files: files.clone(),
            last_warn_ms: AtomicU64::new(0),
        })
    }

    /// The current configs, re-read first when the files changed (a reload that fails keeps
    /// the previous ones and is retried).
    fn current(&self) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.checked.elapsed() >= RELOAD_CHECK {
            s.checked = Instant::now();
            let now = stamps(&self.files);
            if now != s.stamp {
                match build(self.node_id, &self.files) {
                    Ok((server, client)) => {
                        tracing::info!(
                            "inter-broker TLS key, certificate or truststore file changed: reloaded"
                        );
                        s.server = server;
                        s.client = client;
                        s.stamp = now;
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "inter-broker TLS files changed but cannot be loaded; keeping the previous ones"
                    ),
                }
            }
        }
        (s.server.clone(), s.client.clone())
    }

    /// The client config for the next connection to another broker.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.current().1
    }

    fn warn(&self, peer: SocketAddr, error: &dyn std::fmt::Display) {
        let now = now_ms();
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                node_id = self.node_id,
                %peer,
                %error,
                "refused an inter-broker connection: no valid broker certificate \
                 (at most one such line a second)"
            );
        }
    }
}

/// Who is at the other end of an inter-broker TLS connection, as its certificate proves
/// (tonic's connect info: every request on the connection carries it in its extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerBroker {
    /// The broker id the peer's certificate names.
    pub node: u64,
    pub remote: SocketAddr,
}

/// A server-side TLS connection from a verified broker.
pub struct TlsIo {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    peer: PeerBroker,
}

impl Connected for TlsIo {
    type ConnectInfo = PeerBroker;

    fn connect_info(&self) -> PeerBroker {
        self.peer
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Why a handshake was refused.
fn peer_identity(certs: Option<&[CertificateDer<'static>]>) -> Result<u64, IdentityError> {
    let cert = certs
        .and_then(|c| c.first())
        .ok_or(IdentityError::NoBrokerName)?;
    broker_identity(cert)
}

/// Accepts TCP connections on `listener` and yields those whose TLS handshake presented a
/// certificate that chains to the cluster CA and names a broker. Handshakes run
/// concurrently (a slow peer delays nobody); refusals are logged at most once a second.
/// Stops when `shutdown` is cancelled.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<InterBrokerTls>,
    shutdown: CancellationToken,
) -> impl futures_util::Stream<Item = Result<TlsIo, std::io::Error>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<TlsIo>(64);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "inter-broker accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tls.warn(remote, &"too many TLS handshakes in progress");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.current().0);
            let tls = tls.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                drop(slot);
                let stream = match handshake {
                    Ok(Ok(s)) => s,
                    // Closed before saying anything: the controller's TCP probe of an overdue
                    // broker, or a port scan. Not worth a WARN.
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        return tracing::debug!(peer = %remote, "inter-broker connection closed before a TLS handshake");
                    }
                    Ok(Err(e)) => return tls.warn(remote, &e),
                    Err(_) => return tls.warn(remote, &"TLS handshake timed out"),
                };
                match peer_identity(stream.get_ref().1.peer_certificates()) {
                    Ok(node) => {
                        let _ = tx
                            .send(TlsIo {
                                inner: stream,
                                peer: PeerBroker { node, remote },
                            })
                            .await;
                    }
                    Err(e) => tls.warn(remote, &e),
                }
            });
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|io| (Ok(io), rx))
    })
}

/// Where a [`Connector`] gets its client config.
#[derive(Clone)]
enum ClientSource {
    Reloading(Arc<InterBrokerTls>),
    Fixed(Arc<ClientConfig>),
}

/// Dials a broker over TLS (tonic's connector for a [`Channel`]): checks the server's
/// certificate against the CA and that it names the expected broker.
#[derive(Clone)]
pub struct Connector {
    source: ClientSource,
    /// The broker expected at the other end (`None`: any certificate of the CA, for tests).
    expect: Option<u64>,
    /// The name the server's certificate is checked against.
    server_name: ServerName<'static>,
}

type ConnectFuture = Pin<
    Box<
        dyn Future<
                Output = Result<
                    TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
                    std::io::Error,
                >,
            > + Send,
    >,
>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = match &self.source {
            ClientSource::Reloading(t) => t.client_config(),
            ClientSource::Fixed(c) => c.clone(),
        };
        let expect = self.expect;
        let name = self.server_name.clone();
        Box::pin(async move {
            let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
            let host = uri
                .host()
                .ok_or_else(|| bad(format!("no host in {uri}")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri
                .port_u16()
                .ok_or_else(|| bad(format!("no port in {uri}")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = TlsConnector::from(config).connect(name, tcp).await?;
            if let Some(want) = expect {
                match peer_identity(stream.get_ref().1.peer_certificates()) {
                    Ok(id) if id == want => {}
                    Ok(id) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::PermissionDenied,
                            format!("{uri} presented the certificate of broker {id}, not {want}"),
                        ))
                    }
                    Err(e) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::PermissionDenied,
                            format!("{uri}: {e}"),
                        ))
                    }
                }
            }
            Ok(TokioIo::new(stream))
        })
    }
}

/// A lazily connected channel to broker `target` at `endpoint`'s address, over mutual TLS with
/// this broker's current certificate.
pub fn channel(
    endpoint: Endpoint,
    tls: &Arc<InterBrokerTls>,
    target: u64,
) -> Result<Channel, String> {
    let name = ServerName::try_from(format!("{NAME_PREFIX}{target}"))
        .map_err(|e| format!("broker id {target} makes no DNS name: {e}"))?;
    Ok(endpoint.connect_with_connector_lazy(Connector {
        source: ClientSource::Reloading(tls.clone()),
        expect: Some(target),
        server_name: name,
    }))
}

/// A lazily connected channel with a fixed client config whose server certificate is checked
/// for `server_name` only (tests and tools: they may present any certificate, or none).
pub fn channel_with(
    endpoint: Endpoint,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
) -> Channel {
    endpoint.connect_with_connector_lazy(Connector {
        source: ClientSource::Fixed(config),
        expect: None,
        server_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_names_no_broker() {
        assert_eq!(
            broker_identity(b"not a certificate"),
            Err(IdentityError::Unparsable)
        );
        assert_eq!(peer_identity(None), Err(IdentityError::NoBrokerName));
    }
}
