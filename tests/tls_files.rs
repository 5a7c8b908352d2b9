//! TLS settings against real PEM files made by openssl (scripts/make-certs): a keystore file
//! holding key and chain, separate key and certificate files, an encrypted PKCS#8 key with
//! `ssl.key.password`, a client certificate's principal, and a full mutual-TLS handshake in
//! process whose server sees that principal.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use raftka::config::{ClientAuth, SslConfig};
use raftka::security::tls::{build, principal_of, TlsSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

fn make_certs(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-certs");
    for args in [
        vec!["server", "broker"],
        vec!["client", "alice", "/O=raftka/OU=test/CN=alice, jr"],
    ] {
        let status = Command::new(&script)
            .arg(args[0])
            .arg(dir)
            .args(&args[1..])
            .status()
            .expect("scripts/make-certs runs (needs openssl)");
        assert!(status.success(), "make-certs {args:?}");
    }
}

fn files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join("broker.key"),
        dir.join("broker.pem"),
        dir.join("ca.pem"),
    )
}

#[test]
fn keystore_separate_files_and_encrypted_keys() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let (key, cert, ca) = files(dir.path());
    let separate = SslConfig {
        key: Some(key.clone()),
        certificate: Some(cert.clone()),
        ..Default::default()
    };
    build(&separate).expect("separate key and certificate files load");

    // Kafka's PEM keystore: key and chain in one file.
    let keystore = dir.path().join("keystore.pem");
    let both = [std::fs::read(&key).unwrap(), std::fs::read(&cert).unwrap()].concat();
    std::fs::write(&keystore, both).unwrap();
    let store = SslConfig {
        keystore: Some(keystore),
        truststore: Some(ca.clone()),
        client_auth: Some(ClientAuth::Required),
        ..Default::default()
    };
    build(&store).expect("a keystore with key and chain loads");

    // An encrypted PKCS#8 key (PBES2, AES-256-CBC) needs ssl.key.password.
    let encrypted = dir.path().join("encrypted.key");
    let status = Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:s3cret",
            "-in",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&encrypted)
        .status()
        .unwrap();
    assert!(status.success());
    let mut c = SslConfig {
        key: Some(encrypted),
        certificate: Some(cert),
        ..Default::default()
    };
    let e = build(&c).unwrap_err().to_string();
    assert!(e.contains("ssl.key.password"), "{e}");
    c.key_password = Some("wrong".into());
    assert!(build(&c).is_err());
    c.key_password = Some("s3cret".into());
    build(&c).expect("the encrypted key decrypts with ssl.key.password");
}

#[test]
fn client_certificate_principal_is_the_rfc2253_subject() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let der = CertificateDer::from_pem_file(dir.path().join("alice.pem")).unwrap();
    let p = principal_of(&der).unwrap();
    assert_eq!(p.to_string(), "User:CN=alice\\, jr,OU=test,O=raftka");
}

#[tokio::test]
async fn mutual_tls_handshake_names_the_client() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let (key, cert, ca) = files(dir.path());
    let source = TlsSource::new(&SslConfig {
        key: Some(key),
        certificate: Some(cert),
        truststore: Some(ca.clone()),
        client_auth: Some(ClientAuth::Required),
        ..Default::default()
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut tls = source.acceptor().accept(socket).await.unwrap();
        let principal = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| principal_of(c));
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.unwrap();
        tls.write_all(b"pong").await.unwrap();
        tls.flush().await.unwrap();
        principal
    });
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&ca).unwrap())
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_file(dir.path().join("alice.pem")).unwrap()],
            PrivateKeyDer::from_pem_file(dir.path().join("alice.key")).unwrap(),
        )
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), socket)
        .await
        .unwrap();
    tls.write_all(b"ping").await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
    let principal = server
        .await
        .unwrap()
        .expect("a verified client certificate");
    assert_eq!(
        principal.to_string(),
        "User:CN=alice\\, jr,OU=test,O=raftka"
    );
}
