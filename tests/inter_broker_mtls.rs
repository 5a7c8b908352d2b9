//! Issue 13, item 4: mutual TLS between brokers (`security.inter.broker.protocol=SSL`). A
//! gRPC client without a certificate, with a certificate from another CA, with a certificate
//! of the right CA that names no broker, or in plain HTTP/2 is refused; one holding broker
//! 2's certificate may speak only as broker 2 (a heartbeat, replica fetch, vote or metadata
//! write as broker 3 or 1 is refused); none of it changes anything. With the cluster secret
//! as well, the token must name the certificate's broker. Two brokers form a cluster over
//! mutual TLS, and a broker whose certificate names another broker does not start.
//!
//! Certificates come from scripts/make-certs (openssl); the calls go through the generated
//! gRPC clients over `raftka::rpc::tls::channel_with` (no Kafka client speaks this port).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftka::broker::Broker;
use raftka::metadata::{BrokerMeta, MetadataCommand};
use raftka::rpc::auth::{method, RpcAuth};
use raftka::rpc::pb::cluster_client::ClusterClient;
use raftka::rpc::pb::raft_client::RaftClient;
use raftka::rpc::pb::{self, HeartbeatRequest, RaftRequest};
use raftka::rpc::tls::channel_with;
use raftka::topics::CreateTopicSpec;
use raftka::BrokerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "test-cluster-secret-0123456789";

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn make_certs(dir: &Path, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-certs");
    let status = Command::new(&script)
        .arg(args[0])
        .arg(dir)
        .args(&args[1..])
        .status()
        .expect("scripts/make-certs runs (needs openssl)");
    assert!(status.success(), "make-certs {args:?}");
}

/// `ca/`: the cluster CA with broker-1, broker-2, broker-3 and a client `alice`; `other/`:
/// another CA with its own broker-2.
fn certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    for b in ["broker-1", "broker-2", "broker-3"] {
        make_certs(&ca, &["server", b]);
    }
    make_certs(&ca, &["client", "alice", "/O=raftka/CN=alice"]);
    make_certs(&dir.path().join("other"), &["server", "broker-2"]);
    dir
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A broker with mutual TLS between brokers; `voters` as `controller.quorum.voters`.
async fn start_broker(
    id: u32,
    certs: &Path,
    grpc: std::net::SocketAddr,
    voters: &str,
    secret: Option<&str>,
) -> (Arc<Broker>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs.join("ca");
    let set = |k: &str, v: String| ("test".to_string(), k.to_string(), v);
    let mut pairs = vec![
        set("node.id", id.to_string()),
        set("log.dirs", dir.path().display().to_string()),
        set("listeners", format!("PLAINTEXT://{}", free_addr())),
        set("http.listener", "127.0.0.1:0".into()),
        set("controller.quorum.voters", voters.into()),
        set("raft.listener", grpc.to_string()),
        set("security.inter.broker.protocol", "SSL".into()),
        set(
            "ssl.key.location",
            ca.join(format!("broker-{id}.key")).display().to_string(),
        ),
        set(
            "ssl.certificate.location",
            ca.join(format!("broker-{id}.pem")).display().to_string(),
        ),
        set(
            "ssl.truststore.location",
            ca.join("ca.pem").display().to_string(),
        ),
    ];
    if let Some(s) = secret {
        pairs.push(set("inter.broker.secret", s.into()));
    }
    let config = BrokerConfig::from_pairs(pairs).unwrap();
    (raftka::node::open(config).await.unwrap(), dir)
}

/// A TLS client config trusting `ca_dir`'s CA and presenting `cert` (a name in `cert_dir`),
/// or no certificate.
fn client_config(ca_dir: &Path, cert: Option<(&Path, &str)>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca_dir.join("ca.pem")).unwrap())
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match cert {
        None => builder.with_no_client_auth(),
        Some((dir, name)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(dir.join(format!("{name}.pem"))).unwrap()],
                PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// A channel to broker 1 at `addr` over TLS with `config`.
fn tls_channel(addr: std::net::SocketAddr, config: Arc<ClientConfig>) -> Channel {
    channel_with(
        Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10)),
        config,
        ServerName::try_from("broker-1").unwrap(),
    )
}

fn heartbeat(broker_id: i32) -> HeartbeatRequest {
    HeartbeatRequest {
        broker_id,
        raft_addr: "127.0.0.1:6666".to_string(),
        incarnation: 1,
    }
}

fn fetch(replica_id: i32, topic: &str) -> pb::ReplicaFetchRequest {
    pb::ReplicaFetchRequest {
        replica_id,
        max_wait_ms: 0,
        max_bytes: 1 << 20,
        partitions: vec![pb::PartitionFetch {
            topic: topic.to_string(),
            partition: 0,
            leader_epoch: 0,
            fetch_offset: 0,
            last_fetched_epoch: -1,
            topic_id: Vec::new(),
        }],
        partition_max_bytes: 0,
        ..Default::default()
    }
}

fn code<T>(r: Result<T, tonic::Status>) -> Code {
    r.map(|_| Code::Ok).unwrap_or_else(|s| s.code())
}

fn raft_req(from: u64, payload: Vec<u8>) -> RaftRequest {
    RaftRequest {
        target: 1,
        from,
        payload,
        data: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_a_broker_certificate_opens_the_port_and_only_as_that_broker() {
    let certs = certs();
    let (ca, other) = (certs.path().join("ca"), certs.path().join("other"));
    let grpc = free_addr();
    let (b, _data) = start_broker(1, certs.path(), grpc, &format!("1@{grpc}"), None).await;
    let q = b.metadata.quorum().unwrap();
    eventually("broker 1 to lead the quorum and register", || {
        q.is_leader() && b.metadata.image().brokers.contains_key(&1)
    })
    .await;
    // Broker 2 is known to the metadata and replicates `t`.
    b.metadata
        .submit(&MetadataCommand::RegisterBroker(BrokerMeta {
            id: 2,
            host: "127.0.0.1".into(),
            port: 1,
            rack: None,
            fenced: false,
            incarnation: 0,
            endpoints: Vec::new(),
        }))
        .await
        .unwrap();
    b.topics
        .create(&CreateTopicSpec {
            name: "t".into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: vec![vec![1, 2]],
            ..Default::default()
        })
        .await
        .unwrap();
    let image_before = b.metadata.image();
    let members_before = q.members();
    let term_before = q.raft().metrics().borrow().current_term;

    // Not even a connection: plain HTTP/2, no certificate, another CA's broker-2, and a
    // certificate of the cluster CA that names no broker.
    let strangers: Vec<(&str, Channel)> = vec![
        (
            "plaintext",
            Endpoint::from_shared(format!("http://{grpc}"))
                .unwrap()
                .timeout(Duration::from_secs(10))
                .connect_lazy(),
        ),
        (
            "no certificate",
            tls_channel(grpc, client_config(&ca, None)),
        ),
        (
            "another CA",
            tls_channel(grpc, client_config(&ca, Some((&other, "broker-2")))),
        ),
        (
            "no broker name",
            tls_channel(grpc, client_config(&ca, Some((&ca, "alice")))),
        ),
    ];
    for (who, channel) in strangers {
        let mut cluster = ClusterClient::new(channel.clone());
        let mut raft = RaftClient::new(channel);
        let r = cluster.heartbeat(Request::new(heartbeat(3))).await;
        assert_ne!(code(r), Code::Ok, "heartbeat from {who}");
        let r = cluster.replica_fetch(Request::new(fetch(2, "t"))).await;
        assert_ne!(code(r), Code::Ok, "replica fetch from {who}");
        let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(1_000_003, 3), None);
        let r = raft
            .vote(Request::new(raft_req(
                3,
                serde_json::to_vec(&vote).unwrap(),
            )))
            .await;
        assert_ne!(code(r), Code::Ok, "vote from {who}");
        let delete = raftka::raft::Command::from(MetadataCommand::DeleteTopic { name: "t".into() });
        let r = raft
            .client_write(Request::new(raft_req(
                1,
                serde_json::to_vec(&delete).unwrap(),
            )))
            .await;
        assert_ne!(code(r), Code::Ok, "client write from {who}");
    }

    // Broker 2's real certificate, speaking for others.
    let as2 = tls_channel(grpc, client_config(&ca, Some((&ca, "broker-2"))));
    let mut cluster = ClusterClient::new(as2.clone());
    let mut raft = RaftClient::new(as2);
    for as_broker in [3, 1] {
        let r = cluster.heartbeat(Request::new(heartbeat(as_broker))).await;
        assert_eq!(code(r), Code::PermissionDenied, "heartbeat as {as_broker}");
    }
    let r = cluster.replica_fetch(Request::new(fetch(1, "t"))).await;
    assert_eq!(code(r), Code::PermissionDenied, "fetch as replica 1");
    let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(1_000_003, 3), None);
    let r = raft
        .vote(Request::new(raft_req(
            3,
            serde_json::to_vec(&vote).unwrap(),
        )))
        .await;
    assert_eq!(code(r), Code::PermissionDenied, "vote as 3");
    let hijack = raftka::raft::Command::from(MetadataCommand::RegisterBroker(BrokerMeta {
        id: 1,
        host: "127.0.0.1".into(),
        port: 6666,
        rack: None,
        fenced: false,
        incarnation: 5,
        endpoints: Vec::new(),
    }));
    let r = raft
        .client_write(Request::new(raft_req(
            1,
            serde_json::to_vec(&hijack).unwrap(),
        )))
        .await;
    assert_eq!(
        code(r),
        Code::PermissionDenied,
        "metadata write as broker 1"
    );

    // Nothing changed.
    assert_eq!(*b.metadata.image(), *image_before);
    assert_eq!(q.members(), members_before);
    assert_eq!(q.raft().metrics().borrow().current_term, term_before);
    assert!(q.is_leader());

    // Positive controls on the same connection: broker 2 as itself heartbeats (and is admitted
    // as a learner) and fetches its partition.
    let r = cluster.heartbeat(Request::new(heartbeat(2))).await;
    assert_eq!(code(r), Code::Ok, "heartbeat as 2");
    eventually("broker 2 to become a learner", || {
        q.members().contains_key(&2)
    })
    .await;
    let r = cluster
        .replica_fetch(Request::new(fetch(2, "t")))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(
        r.partitions[0].refusal,
        pb::FetchRefusal::UnknownPartition as i32
    );
    b.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_secret_too_the_token_must_name_the_certificates_broker() {
    let certs = certs();
    let ca = certs.path().join("ca");
    let grpc = free_addr();
    let (b, _data) = start_broker(1, certs.path(), grpc, &format!("1@{grpc}"), Some(SECRET)).await;
    let q = b.metadata.quorum().unwrap();
    eventually("broker 1 to lead and register", || {
        q.is_leader() && b.metadata.image().brokers.contains_key(&1)
    })
    .await;
    let mut cluster = ClusterClient::new(tls_channel(
        grpc,
        client_config(&ca, Some((&ca, "broker-2"))),
    ));
    let signed = |as_node: u64, secret: Option<&str>| {
        let mut r = Request::new(heartbeat(i32::try_from(as_node).unwrap()));
        RpcAuth::new(as_node, secret.map(|s| s.as_bytes().to_vec()))
            .sign(&mut r, method::HEARTBEAT);
        r
    };
    // broker 2's certificate without a token, with a wrong secret, or with broker 3's token
    for (req, expected) in [
        (signed(2, None), Code::Unauthenticated),
        (
            signed(2, Some("another-secret-of-the-right-size")),
            Code::Unauthenticated,
        ),
        (signed(3, Some(SECRET)), Code::PermissionDenied),
    ] {
        assert_eq!(code(cluster.heartbeat(req).await), expected);
    }
    assert!(!q.members().contains_key(&3));
    assert_eq!(
        code(cluster.heartbeat(signed(2, Some(SECRET))).await),
        Code::Ok
    );
    b.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_brokers_form_a_cluster_over_mutual_tls() {
    let certs = certs();
    let (g1, g2) = (free_addr(), free_addr());
    let voters = format!("1@{g1},2@{g2}");
    let ((b1, _d1), (b2, _d2)) = tokio::join!(
        start_broker(1, certs.path(), g1, &voters, Some(SECRET)),
        start_broker(2, certs.path(), g2, &voters, Some(SECRET)),
    );
    eventually("a leader and both brokers registered and unfenced", || {
        let img = b2.metadata.image();
        img.brokers.len() == 2 && img.brokers.values().all(|b| !b.fenced)
    })
    .await;
    // A replicated topic: both brokers see it, and broker 2's metadata matches broker 1's.
    let b = if b1.metadata.quorum().unwrap().is_leader() {
        &b1
    } else {
        &b2
    };
    b.topics
        .create(&CreateTopicSpec {
            name: "replicated".into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: vec![vec![1, 2]],
            ..Default::default()
        })
        .await
        .unwrap();
    eventually("both brokers to apply the topic", || {
        b1.metadata.image().topics.contains_key("replicated")
            && b2.metadata.image().topics.contains_key("replicated")
    })
    .await;
    b1.shutdown.cancel();
    b2.shutdown.cancel();
}

#[tokio::test]
async fn a_broker_whose_certificate_names_another_broker_does_not_start() {
    let certs = certs();
    let ca = certs.path().join("ca");
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_addr();
    let set = |k: &str, v: String| ("test".to_string(), k.to_string(), v);
    let config = BrokerConfig::from_pairs(vec![
        set("node.id", "1".into()),
        set("log.dirs", dir.path().display().to_string()),
        set("listeners", format!("PLAINTEXT://{}", free_addr())),
        set("http.listener", "127.0.0.1:0".into()),
        set("controller.quorum.voters", format!("1@{grpc}")),
        set("raft.listener", grpc.to_string()),
        set("security.inter.broker.protocol", "SSL".into()),
        set(
            "ssl.key.location",
            ca.join("broker-2.key").display().to_string(),
        ),
        set(
            "ssl.certificate.location",
            ca.join("broker-2.pem").display().to_string(),
        ),
        set(
            "ssl.truststore.location",
            ca.join("ca.pem").display().to_string(),
        ),
    ])
    .unwrap();
    let e = raftka::node::open(config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("names broker 2, this is broker 1"), "{e}");
}

#[tokio::test]
async fn renewed_certificate_files_are_picked_up_and_broken_ones_are_not() {
    use raftka::config::SslConfig;
    use raftka::rpc::tls::InterBrokerTls;
    let certs = certs();
    let ca = certs.path().join("ca");
    let files = SslConfig {
        key: Some(ca.join("broker-1.key")),
        certificate: Some(ca.join("broker-1.pem")),
        truststore: Some(ca.join("ca.pem")),
        ..Default::default()
    };
    let tls = InterBrokerTls::new(1, &files).unwrap();
    let before = tls.client_config();
    // A renewed certificate (new key, same name): the next connection uses it.
    make_certs(&ca, &["server", "broker-1"]);
    let deadline = Instant::now() + WAIT;
    while Arc::ptr_eq(&before, &tls.client_config()) {
        assert!(
            Instant::now() < deadline,
            "the renewed files were not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let renewed = tls.client_config();
    // Files replaced by broker 2's certificate: refused, the renewed config stays.
    std::fs::copy(ca.join("broker-2.pem"), ca.join("broker-1.pem")).unwrap();
    std::fs::copy(ca.join("broker-2.key"), ca.join("broker-1.key")).unwrap();
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        assert!(Arc::ptr_eq(&renewed, &tls.client_config()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
