//! A proptest fuzz harness for request decoding: random and mutated frames for every
//! advertised API and version go through the real dispatcher of an in-process broker. It must
//! never panic, and a well-formed request afterwards must still be answered.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, MetadataRequest, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;
use raftka::api::{dispatch, Outcome, APIS};
use raftka::{Broker, BrokerConfig};

#[global_allocator]
static ALLOC: raftka::alloc::GuardedAlloc = raftka::alloc::GuardedAlloc;

fn broker() -> (Arc<Broker>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::from_pairs(vec![(
        "test".into(),
        "log.dirs".into(),
        dir.path().display().to_string(),
    )])
    .unwrap();
    let b = runtime().block_on(raftka::node::open(config)).unwrap();
    (b, dir)
}

fn header(key: ApiKey, version: i16) -> BytesMut {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")))
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    buf
}

/// A valid Metadata request, used as the seed for mutations and as the liveness probe.
fn metadata_frame(version: i16) -> Bytes {
    let mut buf = header(ApiKey::Metadata, version);
    MetadataRequest::default()
        .with_topics(Some(vec![]))
        .encode(&mut buf, version)
        .unwrap();
    buf.freeze()
}

fn runtime() -> tokio::runtime::Runtime {
    // Paused time: a fuzzed Fetch with a long max_wait_ms completes instantly.
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

fn frame_strategy() -> impl Strategy<Value = Bytes> {
    let random_body = (
        0..APIS.len(),
        -1i16..20,
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(i, version, body)| {
            let spec = APIS[i];
            let v = version.clamp(spec.min, spec.max + 1);
            let mut buf = if v <= spec.max {
                header(spec.key, v)
            } else {
                let mut b = BytesMut::new();
                b.extend_from_slice(&(spec.key as i16).to_be_bytes());
                b.extend_from_slice(&v.to_be_bytes());
                b.extend_from_slice(&42i32.to_be_bytes());
                b
            };
            buf.extend_from_slice(&body);
            buf.freeze()
        });
    let mutated = (
        0i16..=12,
        proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        any::<usize>(),
    )
        .prop_map(|(v, flips, cut)| {
            let f = metadata_frame(v);
            let mut b = BytesMut::from(&f[..]);
            for (pos, val) in flips {
                let i = pos % b.len();
                b[i] = val;
            }
            let keep = b.len() - cut % (b.len() / 2 + 1);
            b.truncate(keep);
            b.freeze()
        });
    prop_oneof![random_body, mutated]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn decoding_never_panics(frames in proptest::collection::vec(frame_strategy(), 1..8)) {
        let (b, _dir) = broker();
        let rt = runtime();
        rt.block_on(async {
            for f in frames {
                // Ok or a connection-closing error are both fine; a panic fails the test.
                let _ = dispatch(&b, f).await;
            }
            match dispatch(&b, metadata_frame(12)).await {
                Ok(Outcome::Reply(r)) => prop_assert!(r.len() > 8),
                other => prop_assert!(false, "broker stopped answering: {other:?}"),
            }
            Ok(())
        })?;
    }
}

#[test]
fn every_advertised_api_is_routed() {
    // One table drives ApiVersions and the router: every advertised (API, max version) with
    // an empty body must reach its decoder, never "unknown API".
    let (b, _dir) = broker();
    let rt = runtime();
    rt.block_on(async {
        for spec in APIS {
            for v in [spec.min, spec.max] {
                let r = dispatch(&b, header(spec.key, v).freeze()).await;
                if let Err(e) = &r {
                    let msg = e.to_string();
                    assert!(
                        !msg.contains("unknown or unsupported API"),
                        "{:?} v{v}: {msg}",
                        spec.key
                    );
                }
            }
        }
    });
}

#[test]
fn acks_zero_produce_gets_no_reply_and_acks_one_a_reply() {
    use kafka_protocol::messages::ProduceRequest;
    let (b, _dir) = broker();
    let rt = runtime();
    rt.block_on(async {
        for (acks, wants_reply) in [(0i16, false), (1, true), (-1, true)] {
            let mut buf = header(ApiKey::Produce, 9);
            ProduceRequest::default()
                .with_acks(acks)
                .encode(&mut buf, 9)
                .unwrap();
            let out = dispatch(&b, buf.freeze()).await.unwrap();
            assert_eq!(
                matches!(out, Outcome::Reply(_)),
                wants_reply,
                "acks={acks}: {out:?}"
            );
        }
    });
}

/// Sends a default request of type `R` at `version` through the dispatcher and decodes the
/// answer with the codec at the same version: the header must carry the correlation id and
/// the body must decode to exactly the bytes sent (no missing or extra fields).
async fn round_trip<R>(b: &Arc<Broker>, key: ApiKey, version: i16, req: R)
where
    R: kafka_protocol::protocol::Request,
{
    use bytes::Buf;
    use kafka_protocol::protocol::{Decodable, HeaderVersion};
    let mut buf = header(key, version);
    req.encode(&mut buf, version).unwrap();
    let out = match dispatch(b, buf.freeze()).await {
        Ok(Outcome::Reply(r)) => r,
        other => panic!("{key:?} v{version}: no reply: {other:?}"),
    };
    let mut body = out.freeze();
    let size = body.get_i32();
    assert_eq!(
        size as usize,
        body.remaining(),
        "{key:?} v{version}: size prefix"
    );
    let h = kafka_protocol::messages::ResponseHeader::decode(
        &mut body,
        <R::Response as HeaderVersion>::header_version(version),
    )
    .unwrap();
    assert_eq!(h.correlation_id, 42, "{key:?} v{version}");
    R::Response::decode(&mut body, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: response does not decode: {e}"));
    assert_eq!(body.remaining(), 0, "{key:?} v{version}: trailing bytes");
}

#[test]
fn every_advertised_version_answers_with_a_well_formed_response() {
    use kafka_protocol::messages::*;
    let (b, _dir) = broker();
    let rt = runtime();
    rt.block_on(async {
        for spec in APIS {
            for v in spec.min..=spec.max {
                match spec.key {
                    ApiKey::Produce => {
                        round_trip(&b, spec.key, v, ProduceRequest::default().with_acks(1)).await
                    }
                    ApiKey::Fetch => round_trip(&b, spec.key, v, FetchRequest::default()).await,
                    ApiKey::ListOffsets => {
                        round_trip(&b, spec.key, v, ListOffsetsRequest::default()).await
                    }
                    ApiKey::Metadata => {
                        round_trip(&b, spec.key, v, MetadataRequest::default()).await
                    }
                    ApiKey::ApiVersions => {
                        round_trip(&b, spec.key, v, ApiVersionsRequest::default()).await
                    }
                    ApiKey::CreateTopics => {
                        round_trip(&b, spec.key, v, CreateTopicsRequest::default()).await
                    }
                    ApiKey::DeleteTopics => {
                        round_trip(&b, spec.key, v, DeleteTopicsRequest::default()).await
                    }
                    ApiKey::InitProducerId => {
                        round_trip(&b, spec.key, v, InitProducerIdRequest::default()).await
                    }
                    ApiKey::DescribeConfigs => {
                        round_trip(&b, spec.key, v, DescribeConfigsRequest::default()).await
                    }
                    ApiKey::CreatePartitions => {
                        round_trip(&b, spec.key, v, CreatePartitionsRequest::default()).await
                    }
                    ApiKey::AlterConfigs => {
                        round_trip(&b, spec.key, v, AlterConfigsRequest::default()).await
                    }
                    ApiKey::IncrementalAlterConfigs => {
                        round_trip(&b, spec.key, v, IncrementalAlterConfigsRequest::default()).await
                    }
                    ApiKey::DeleteRecords => {
                        round_trip(&b, spec.key, v, DeleteRecordsRequest::default()).await
                    }
                    ApiKey::DescribeCluster => {
                        round_trip(&b, spec.key, v, DescribeClusterRequest::default()).await
                    }
                    ApiKey::FindCoordinator => {
                        round_trip(&b, spec.key, v, FindCoordinatorRequest::default()).await
                    }
                    ApiKey::JoinGroup => {
                        round_trip(&b, spec.key, v, JoinGroupRequest::default()).await
                    }
                    ApiKey::SyncGroup => {
                        round_trip(&b, spec.key, v, SyncGroupRequest::default()).await
                    }
                    ApiKey::Heartbeat => {
                        round_trip(&b, spec.key, v, HeartbeatRequest::default()).await
                    }
                    ApiKey::LeaveGroup => {
                        round_trip(&b, spec.key, v, LeaveGroupRequest::default()).await
                    }
                    ApiKey::OffsetCommit => {
                        round_trip(&b, spec.key, v, OffsetCommitRequest::default()).await
                    }
                    ApiKey::OffsetFetch => {
                        round_trip(&b, spec.key, v, OffsetFetchRequest::default()).await
                    }
                    ApiKey::OffsetDelete => {
                        round_trip(&b, spec.key, v, OffsetDeleteRequest::default()).await
                    }
                    ApiKey::TxnOffsetCommit => {
                        round_trip(&b, spec.key, v, TxnOffsetCommitRequest::default()).await
                    }
                    ApiKey::DescribeProducers => {
                        round_trip(&b, spec.key, v, DescribeProducersRequest::default()).await
                    }
                    ApiKey::DescribeGroups => {
                        round_trip(&b, spec.key, v, DescribeGroupsRequest::default()).await
                    }
                    ApiKey::ListGroups => {
                        round_trip(&b, spec.key, v, ListGroupsRequest::default()).await
                    }
                    ApiKey::DeleteGroups => {
                        round_trip(&b, spec.key, v, DeleteGroupsRequest::default()).await
                    }
                    ApiKey::DescribeAcls => {
                        round_trip(&b, spec.key, v, DescribeAclsRequest::default()).await
                    }
                    ApiKey::CreateAcls => {
                        round_trip(&b, spec.key, v, CreateAclsRequest::default()).await
                    }
                    ApiKey::DeleteAcls => {
                        round_trip(&b, spec.key, v, DeleteAclsRequest::default()).await
                    }
                    ApiKey::ElectLeaders => {
                        round_trip(&b, spec.key, v, ElectLeadersRequest::default()).await
                    }
                    ApiKey::DescribeLogDirs => {
                        round_trip(&b, spec.key, v, DescribeLogDirsRequest::default()).await
                    }
                    ApiKey::DescribeQuorum => {
                        round_trip(&b, spec.key, v, DescribeQuorumRequest::default()).await
                    }
                    ApiKey::AddRaftVoter => {
                        round_trip(&b, spec.key, v, AddRaftVoterRequest::default()).await
                    }
                    ApiKey::RemoveRaftVoter => {
                        round_trip(&b, spec.key, v, RemoveRaftVoterRequest::default()).await
                    }
                    ApiKey::DescribeTopicPartitions => {
                        let req = DescribeTopicPartitionsRequest::default();
                        round_trip(&b, spec.key, v, req).await
                    }
                    ApiKey::AlterPartitionReassignments => {
                        let req = AlterPartitionReassignmentsRequest::default();
                        round_trip(&b, spec.key, v, req).await
                    }
                    ApiKey::ListPartitionReassignments => {
                        let req = ListPartitionReassignmentsRequest::default();
                        round_trip(&b, spec.key, v, req).await
                    }
                    ApiKey::UnregisterBroker => {
                        round_trip(&b, spec.key, v, UnregisterBrokerRequest::default()).await
                    }
                    ApiKey::SaslHandshake => {
                        round_trip(&b, spec.key, v, SaslHandshakeRequest::default()).await
                    }
                    ApiKey::SaslAuthenticate => {
                        round_trip(&b, spec.key, v, SaslAuthenticateRequest::default()).await
                    }
                    ApiKey::DescribeUserScramCredentials => {
                        let req = DescribeUserScramCredentialsRequest::default();
                        round_trip(&b, spec.key, v, req).await
                    }
                    ApiKey::AlterUserScramCredentials => {
                        let req = AlterUserScramCredentialsRequest::default();
                        round_trip(&b, spec.key, v, req).await
                    }
                    ApiKey::AddPartitionsToTxn => {
                        let req = AddPartitionsToTxnRequest::default();
                        round_trip(&b, spec.key, v, req).await
                    }
                    ApiKey::AddOffsetsToTxn => {
                        let req = AddOffsetsToTxnRequest::default();
                        round_trip(&b, spec.key, v, req).await
                    }
                    ApiKey::EndTxn => round_trip(&b, spec.key, v, EndTxnRequest::default()).await,
                    ApiKey::DescribeTransactions => {
                        let req =
                            DescribeTransactionsRequest::default().with_transactional_ids(vec![
                                TransactionalId(StrBytes::from_static_str("fuzz-txn")),
                            ]);
                        round_trip(&b, spec.key, v, req).await
                    }
                    ApiKey::ListTransactions => {
                        let req = ListTransactionsRequest::default();
                        round_trip(&b, spec.key, v, req).await
                    }
                    other => panic!("{other:?} is advertised but has no round-trip case here"),
                }
            }
        }
    });
}
