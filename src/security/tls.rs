//! TLS for SSL and SASL_SSL listeners: the rustls server config built from PEM files
//! (`ssl.keystore.location`, or `ssl.key.location` + `ssl.certificate.location`;
//! `ssl.truststore.location` and `ssl.client.auth` for client certificates), rebuilt when those
//! files change, and the principal of a client certificate (its subject as RFC 2253 names it,
//! Kafka's default `User:CN=…,OU=…`).
//!
//! May depend on: `config` (the settings), `security::principal`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::Principal;
use crate::config::{ClientAuth, SslConfig};

/// Why the TLS settings cannot be used; each names the file or setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {setting} file {path}: {reason}")]
    Read {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{setting} file {path} holds no {what}")]
    Missing {
        setting: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("the private key in {path} is encrypted: {reason}")]
    Encrypted { path: PathBuf, reason: String },
    #[error("no ssl.keystore.location, or ssl.key.location with ssl.certificate.location, is set")]
    NoKey,
    #[error("the TLS settings are not usable: {0}")]
    Rustls(String),
}

/// How often the PEM files are looked at for changes (at most once per accepted connection).
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// The TLS acceptor of the broker's TLS listeners; hands out an acceptor built from the
/// current files, rebuilding it when their modification time or size changed. A rebuild
/// that fails (a half-written file) keeps the previous config and is retried.
pub struct TlsSource {
    settings: SslConfig,
    state: Mutex<Loaded>,
}

struct Loaded {
    config: Arc<ServerConfig>,
    stamp: Vec<FileStamp>,
    checked: Instant,
}

/// What [`stamps`] records of one file (`None`: unreadable).
pub type FileStamp = Option<(SystemTime, u64)>;

impl TlsSource {
    /// Loads the files once; fails when they are missing or unusable (the broker does not
    /// start).
    pub fn new(settings: &SslConfig) -> Result<Self, TlsError> {
        let config = build(settings)?;
        Ok(Self {
            state: Mutex::new(Loaded {
                config,
                stamp: stamps(settings),
                checked: Instant::now(),
            }),
            settings: settings.clone(),
        })
    }

    /// The acceptor for the next connection (the files are re-read when they changed).
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.checked.elapsed() >= RELOAD_CHECK {
            s.checked = Instant::now();
            let now = stamps(&self.settings);
            if now != s.stamp {
                match build(&self.settings) {
                    Ok(config) => {
                        tracing::info!("TLS key, certificate or truststore file changed: reloaded");
                        s.config = config;
                        s.stamp = now;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS files changed but cannot be loaded; keeping the previous ones")
                    }
                }
            }
        }
        TlsAcceptor::from(s.config.clone())
    }
}

fn files(s: &SslConfig) -> Vec<&Path> {
    [&s.keystore, &s.key, &s.certificate, &s.truststore]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
        .collect()
}

/// Modification time and size of each PEM file the settings name (a change triggers a reload).
pub fn stamps(s: &SslConfig) -> Vec<FileStamp> {
    files(s)
        .into_iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        setting,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn certs(
    setting: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read {
            setting,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            setting,
            path: path.to_path_buf(),
            what: "certificate (-----BEGIN CERTIFICATE-----)",
        });
    }
    Ok(certs)
}

fn key(
    setting: &'static str,
    path: &Path,
    pem: &[u8],
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let encrypted = |reason: String| TlsError::Encrypted {
            path: path.to_path_buf(),
            reason,
        };
        let password = password.ok_or_else(|| encrypted("set ssl.key.password".into()))?;
        let start = text
            .find("-----BEGIN ENCRYPTED PRIVATE KEY-----")
            .unwrap_or(0);
        let end_marker = "-----END ENCRYPTED PRIVATE KEY-----";
        let end = text[start..]
            .find(end_marker)
            .map(|e| start + e + end_marker.len())
            .ok_or_else(|| encrypted("the PEM section is not terminated".into()))?;
        let (_, doc) =
            pkcs8::Document::from_pem(&text[start..end]).map_err(|e| encrypted(e.to_string()))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
            .map_err(|e| encrypted(e.to_string()))?;
        let plain = info
            .decrypt(password)
            .map_err(|e| encrypted(format!("cannot decrypt with ssl.key.password: {e}")))?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )));
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|_| TlsError::Missing {
        setting,
        path: path.to_path_buf(),
        what: "private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)",
    })
}

/// The broker's private key and certificate chain from `ssl.keystore.location`, or from
/// `ssl.key.location` with `ssl.certificate.location` (also used by the inter-broker port's
/// mutual TLS, `rpc::tls`).
pub fn load_identity(
    s: &SslConfig,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let password = s.key_password.as_deref();
    Ok(match (&s.keystore, &s.key, &s.certificate) {
        (Some(store), _, _) => {
            let pem = read("ssl.keystore.location", store)?;
            (
                certs("ssl.keystore.location", store, &pem)?,
                key("ssl.keystore.location", store, &pem, password)?,
            )
        }
        (None, Some(k), Some(c)) => (
            certs(
                "ssl.certificate.location",
                c,
                &read("ssl.certificate.location", c)?,
            )?,
            key(
                "ssl.key.location",
                k,
                &read("ssl.key.location", k)?,
                password,
            )?,
        ),
        _ => return Err(TlsError::NoKey),
    })
}

/// The CA certificates of `ssl.truststore.location` (the file at `trust`).
pub fn load_roots(trust: &Path) -> Result<RootCertStore, TlsError> {
    let pem = read("ssl.truststore.location", trust)?;
    let mut roots = RootCertStore::empty();
    for c in certs("ssl.truststore.location", trust, &pem)? {
        roots
            .add(c)
            .map_err(|e| TlsError::Rustls(format!("CA in {}: {e}", trust.display())))?;
    }
    Ok(roots)
}

/// Builds the rustls server config from the files.
pub fn build(s: &SslConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain, key) = load_identity(s)?;
    let provider = Arc::new(default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let auth = s.client_auth.unwrap_or(ClientAuth::None);
    let builder = match (&s.truststore, auth) {
        (_, ClientAuth::None) | (None, _) => builder.with_no_client_auth(),
        (Some(trust), auth) => {
            let roots = load_roots(trust)?;
            let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if auth == ClientAuth::Requested {
                v = v.allow_unauthenticated();
            }
            let verifier = v.build().map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(format!("the key does not fit the certificate: {e}")))?;
    Ok(Arc::new(config))
}

/// The principal of a verified client certificate: `User:` and its subject as RFC 2253
/// prints it (`CN=alice,OU=eng,O=Example,C=US`, most specific first), as Kafka's DEFAULT
/// principal mapping does. `None` when the certificate cannot be parsed.
pub fn principal_of(cert: &[u8]) -> Option<Principal> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    let rdns: Vec<String> = cert
        .subject()
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    match (short_name(&oid), atv.as_str()) {
                        (Some(name), Ok(v)) => format!("{name}={}", escape(v)),
                        (name, _) => {
                            let v = atv.attr_value();
                            let mut der = vec![v.header.tag().0 as u8];
                            let len = v.data.len();
                            if len < 128 {
                                der.push(len as u8);
                            } else {
                                let bytes: Vec<u8> = len
                                    .to_be_bytes()
                                    .into_iter()
                                    .skip_while(|b| *b == 0)
                                    .collect();
                                der.push(0x80 | bytes.len() as u8);
                                der.extend(bytes);
                            }
                            der.extend_from_slice(v.data);
                            let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
                            format!("{}=#{hex}", name.unwrap_or(&oid))
                        }
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    let dn: Vec<String> = rdns.into_iter().rev().collect();
    Some(Principal::user(dn.join(",")))
}

/// The attribute names RFC 2253 (and Java's X500Principal) print by name.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 2253 escaping of an attribute value.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2253_escaping() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape("#x "), "\\#x\\ ");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn missing_files_name_the_setting() {
        let s = SslConfig {
            keystore: Some(PathBuf::from("/nonexistent/keystore.pem")),
            ..Default::default()
        };
        let e = build(&s).unwrap_err().to_string();
        assert!(e.contains("ssl.keystore.location"), "{e}");
        assert!(matches!(build(&SslConfig::default()), Err(TlsError::NoKey)));
        assert!(principal_of(b"not a certificate").is_none());
    }
}
