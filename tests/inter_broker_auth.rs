//! Issue 13, item 4: the inter-broker gRPC port of a broker with `inter.broker.secret` refuses
//! the attacks of the issue. A process without the secret sends heartbeats (which would keep a
//! dead broker alive and admit a fake learner), replica fetches (which would read any partition
//! and count as a follower's progress), Raft votes and appends (a term storm) and metadata
//! writes (delete a topic, re-register a broker at another address); a process with the secret
//! may still speak only as itself. Every refusal changes nothing, and the same calls signed
//! properly are accepted (so the refusals are not an accident of the harness).
//!
//! The calls go through the generated gRPC clients: no Kafka client speaks this port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftka::broker::Broker;
use raftka::metadata::{BrokerMeta, MetadataCommand};
use raftka::rpc::auth::{method, RpcAuth};
use raftka::rpc::pb::cluster_client::ClusterClient;
use raftka::rpc::pb::raft_client::RaftClient;
use raftka::rpc::pb::{self, HeartbeatRequest, RaftRequest};
use raftka::topics::CreateTopicSpec;
use raftka::BrokerConfig;
use tonic::{Code, Request};

const SECRET: &str = "test-cluster-secret-0123456789";
const WAIT: Duration = Duration::from_secs(20);

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Broker 1, the only voter (and so the controller) of a cluster with `SECRET`.
async fn broker() -> (Arc<Broker>, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let grpc = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let kafka = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let set = |k: &str, v: String| ("test".to_string(), k.to_string(), v);
    let config = BrokerConfig::from_pairs(vec![
        set("log.dirs", dir.path().display().to_string()),
        set("listeners", format!("PLAINTEXT://{kafka}")),
        set("http.listener", "127.0.0.1:0".into()),
        set("controller.quorum.voters", format!("1@{grpc}")),
        set("raft.listener", grpc.to_string()),
        set("inter.broker.secret", SECRET.into()),
    ])
    .unwrap();
    let b = raftka::node::open(config).await.unwrap();
    let q = b.metadata.quorum().unwrap();
    eventually("broker 1 to lead the quorum and register", || {
        q.is_leader() && b.metadata.image().brokers.contains_key(&1)
    })
    .await;
    (b, dir, format!("http://{grpc}"))
}

/// `req` signed as `node` with `secret` (None: unsigned, as a stranger sends it).
fn signed<T>(req: T, node: u64, secret: Option<&str>, rpc: &str) -> Request<T> {
    let mut r = Request::new(req);
    RpcAuth::new(node, secret.map(|s| s.as_bytes().to_vec())).sign(&mut r, rpc);
    r
}

fn heartbeat(broker_id: i32, addr: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        broker_id,
        raft_addr: addr.to_string(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_grpc_port_refuses_callers_without_the_secret_or_speaking_for_others() {
    let (b, _dir, url) = broker().await;
    let q = b.metadata.quorum().unwrap();
    // Broker 2 exists in the metadata (registered by trusted code) and replicates topic `t`;
    // `solo` has only broker 1 as replica.
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
    for (name, replicas) in [("t", vec![1, 2]), ("solo", vec![1])] {
        b.topics
            .create(&CreateTopicSpec {
                name: name.into(),
                num_partitions: -1,
                replication_factor: -1,
                assignments: vec![replicas],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let image_before = b.metadata.image();
    let members_before = q.members();
    let term_before = q.raft().metrics().borrow().current_term;

    let mut cluster = ClusterClient::connect(url.clone()).await.unwrap();
    let mut raft = RaftClient::connect(url.clone()).await.unwrap();
    let wrong = Some("another-secret-of-the-right-size");

    // Heartbeats: no token, a wrong secret, or the right secret speaking for another broker.
    for (who, secret, as_broker, expected) in [
        (3, None, 3, Code::Unauthenticated),
        (3, wrong, 3, Code::Unauthenticated),
        (2, Some(SECRET), 3, Code::PermissionDenied),
        (2, Some(SECRET), 1, Code::PermissionDenied),
    ] {
        let r = cluster
            .heartbeat(signed(
                heartbeat(as_broker, "127.0.0.1:6666"),
                who,
                secret,
                method::HEARTBEAT,
            ))
            .await;
        assert_eq!(code(r), expected, "heartbeat for {as_broker} from {who}");
    }
    // A token is bound to its RPC: a valid heartbeat token does not open ReplicaFetch.
    let mut r = Request::new(fetch(2, "t"));
    let token = RpcAuth::new(2, Some(SECRET.as_bytes().to_vec()))
        .token(method::HEARTBEAT)
        .unwrap();
    r.metadata_mut()
        .insert(raftka::rpc::auth::HEADER, token.parse().unwrap());
    assert_eq!(code(cluster.replica_fetch(r).await), Code::Unauthenticated);

    // Replica fetches: no token, or the right secret claiming another replica.
    for (who, secret, replica, expected) in [
        (3, None, 3, Code::Unauthenticated),
        (2, wrong, 2, Code::Unauthenticated),
        (2, Some(SECRET), 1, Code::PermissionDenied),
    ] {
        let r = cluster
            .replica_fetch(signed(
                fetch(replica, "t"),
                who,
                secret,
                method::REPLICA_FETCH,
            ))
            .await;
        assert_eq!(code(r), expected, "fetch as {replica} from {who}");
    }
    // Broker 2, proven, fetching a partition it does not replicate: answered without data.
    let r = cluster
        .replica_fetch(signed(
            fetch(2, "solo"),
            2,
            Some(SECRET),
            method::REPLICA_FETCH,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.partitions.len(), 1);
    assert_eq!(
        r.partitions[0].refusal,
        pb::FetchRefusal::UnknownPartition as i32
    );
    assert!(r.partitions[0].records.is_empty());

    // Raft: a vote storm and a lying append in a huge term, without the secret.
    let huge = 1_000_003u64;
    let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(huge, 3), None);
    let append = openraft::raft::AppendEntriesRequest::<raftka::raft::TypeConfig> {
        vote: openraft::Vote::new_committed(huge, 3),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let raft_req = |payload: Vec<u8>| RaftRequest {
        target: 1,
        from: 3,
        payload,
        data: Vec::new(),
    };
    for secret in [None, wrong] {
        let r = raft
            .vote(signed(
                raft_req(serde_json::to_vec(&vote).unwrap()),
                3,
                secret,
                method::VOTE,
            ))
            .await;
        assert_eq!(code(r), Code::Unauthenticated);
        let r = raft
            .append_entries(signed(
                raft_req(serde_json::to_vec(&append).unwrap()),
                3,
                secret,
                method::APPEND_ENTRIES,
            ))
            .await;
        assert_eq!(code(r), Code::Unauthenticated);
    }

    // Metadata writes: delete a topic without the secret; with it, from a non-member, and a
    // member re-registering another broker at an attacker's address.
    let write = |from: u64, cmd: MetadataCommand| RaftRequest {
        target: 1,
        from,
        payload: serde_json::to_vec(&raftka::raft::Command::from(cmd)).unwrap(),
        data: Vec::new(),
    };
    let delete = || MetadataCommand::DeleteTopic { name: "t".into() };
    let hijack = MetadataCommand::RegisterBroker(BrokerMeta {
        id: 1,
        host: "127.0.0.1".into(),
        port: 6666,
        rack: None,
        fenced: false,
        incarnation: 5,
        endpoints: Vec::new(),
    });
    for (from, secret, cmd, expected) in [
        (3, None, delete(), Code::Unauthenticated),
        (1, wrong, delete(), Code::Unauthenticated),
        (7, Some(SECRET), delete(), Code::PermissionDenied),
    ] {
        let r = raft
            .client_write(signed(write(from, cmd), from, secret, method::CLIENT_WRITE))
            .await;
        assert_eq!(code(r), expected, "client write from {from}");
    }

    // Nothing changed: same image, same members, same term.
    assert_eq!(*b.metadata.image(), *image_before);
    assert_eq!(q.members(), members_before);
    assert_eq!(q.raft().metrics().borrow().current_term, term_before);
    assert!(q.is_leader());

    // Positive controls: broker 2, proven, heartbeats and is admitted as a learner; it may
    // then forward a write, but not one that speaks for broker 1.
    let r = cluster
        .heartbeat(signed(
            heartbeat(2, "127.0.0.1:1"),
            2,
            Some(SECRET),
            method::HEARTBEAT,
        ))
        .await;
    assert_eq!(code(r), Code::Ok);
    eventually("broker 2 to become a learner", || {
        q.members().contains_key(&2)
    })
    .await;
    assert!(!q.members().contains_key(&3));
    let r = raft
        .client_write(signed(
            write(2, hijack),
            2,
            Some(SECRET),
            method::CLIENT_WRITE,
        ))
        .await;
    assert_eq!(code(r), Code::PermissionDenied);
    assert_eq!(
        b.metadata.image().brokers[&1].port,
        image_before.brokers[&1].port
    );
    let r = raft
        .client_write(signed(
            write(
                2,
                MetadataCommand::DeleteTopic {
                    name: "solo".into(),
                },
            ),
            2,
            Some(SECRET),
            method::CLIENT_WRITE,
        ))
        .await;
    assert_eq!(code(r), Code::Ok);
    eventually("the forwarded delete to apply", || {
        !b.metadata.image().topics.contains_key("solo")
    })
    .await;
    assert!(b.metadata.image().topics.contains_key("t"));
    // A proven replica fetch of a partition broker 2 replicates is served.
    let r = cluster
        .replica_fetch(signed(
            fetch(2, "t"),
            2,
            Some(SECRET),
            method::REPLICA_FETCH,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(
        r.partitions[0].refusal,
        pb::FetchRefusal::UnknownPartition as i32
    );
    b.shutdown.cancel();
}

fn markers(coordinator_id: i32) -> pb::WriteTxnMarkersRequest {
    pb::WriteTxnMarkersRequest {
        coordinator_id,
        markers: vec![pb::TxnMarkerWrite {
            topic: "m".into(),
            partition: 0,
            producer_id: 77,
            producer_epoch: 0,
            coordinator_epoch: 0,
            commit: false,
        }],
        timeout_ms: 10_000,
    }
}

/// Transaction markers (which end any producer's transaction in a partition) and KIP-890
/// verifications are taken only with the secret, from the coordinator they name.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transaction_markers_need_the_secret_and_the_sender_they_name() {
    let (b, _dir, url) = broker().await;
    b.topics
        .create(&CreateTopicSpec {
            name: "m".into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: vec![vec![1]],
            ..Default::default()
        })
        .await
        .unwrap();
    let end = || b.logs.partition("m", 0).unwrap().offsets().log_end;
    eventually("m-0 led here", || {
        b.replication
            .leader_term(
                "m",
                0,
                b.metadata.image().topics["m"].partitions[0].leader_epoch,
            )
            .is_some()
    })
    .await;
    let before = end();
    let mut cluster = ClusterClient::connect(url).await.unwrap();
    let wrong = Some("another-secret-of-the-right-size");
    for (who, secret, as_coordinator, expected) in [
        (3, None, 3, Code::Unauthenticated),
        (3, wrong, 3, Code::Unauthenticated),
        (2, Some(SECRET), 3, Code::PermissionDenied),
    ] {
        let r = cluster
            .write_txn_markers(signed(
                markers(as_coordinator),
                who,
                secret,
                method::WRITE_TXN_MARKERS,
            ))
            .await;
        assert_eq!(code(r), expected, "markers as {as_coordinator} from {who}");
        let v = pb::VerifyTxnPartitionsRequest {
            sender_id: as_coordinator,
            transactional_id: "tx".into(),
            producer_id: 77,
            producer_epoch: 0,
            partitions: vec![pb::TxnPartition {
                topic: "m".into(),
                partition: 0,
            }],
        };
        let r = cluster
            .verify_txn_partitions(signed(v, who, secret, method::VERIFY_TXN_PARTITIONS))
            .await;
        assert_eq!(
            code(r),
            expected,
            "verification as {as_coordinator} from {who}"
        );
    }
    assert_eq!(end(), before, "a refused marker was written");
    // The same marker from the coordinator it names is written.
    let r = cluster
        .write_txn_markers(signed(
            markers(2),
            2,
            Some(SECRET),
            method::WRITE_TXN_MARKERS,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.results.len(), 1);
    assert_eq!(
        r.results[0].outcome,
        pb::TxnMarkerOutcome::MarkerWritten as i32,
        "{:?}",
        r.results[0]
    );
    assert_eq!(end(), before + 1);
}
