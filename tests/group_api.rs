//! The consumer-group APIs through the real dispatcher of an in-process broker, at old and
//! new versions: what each version carries (v0 without member ids, MEMBER_ID_REQUIRED from
//! v4, batched FindCoordinator in v4, OffsetFetch's groups array in v8, batched LeaveGroup in
//! v3) and the error codes clients act on. Paused time: join waits complete at once.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use raftka::api::{dispatch, Outcome};
use raftka::{Broker, BrokerConfig};

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const ILLEGAL_GENERATION: i16 = 22;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_REQUEST: i16 = 42;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;

async fn broker() -> (Arc<Broker>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::from_pairs(vec![
        (
            "test".to_string(),
            "log.dirs".to_string(),
            dir.path().display().to_string(),
        ),
        ("test".into(), "num.partitions".into(), "2".into()),
    ])
    .unwrap();
    (raftka::node::open(config).await.unwrap(), dir)
}

async fn call<R>(b: &Arc<Broker>, version: i16, req: &R) -> R::Response
where
    R: Request + Encodable,
    R::Response: Decodable + HeaderVersion,
{
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("group-api-test")))
        .encode(&mut buf, R::header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    let mut out: Bytes = match dispatch(b, buf.freeze()).await {
        Ok(Outcome::Reply(r)) => r.freeze(),
        other => panic!("{:?} v{version}: {other:?}", R::KEY),
    };
    out.advance(4);
    let header = ResponseHeader::decode(&mut out, R::Response::header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7);
    let resp = R::Response::decode(&mut out, version).unwrap();
    assert!(
        !out.has_remaining(),
        "trailing bytes in {:?} v{version}",
        R::KEY
    );
    resp
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join(group: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(20_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"sub"))])
}

fn sync(group: &str, member: &str, generation: i32, assignment: &'static [u8]) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id(generation)
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s(member))
            .with_assignment(Bytes::from_static(assignment))])
}

fn describe(group: &str) -> DescribeGroupsRequest {
    DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))])
}

#[tokio::test(start_paused = true)]
async fn find_coordinator_every_version_and_key_type() {
    let (b, _dir) = broker().await;
    for v in 0..=3 {
        let r = call(&b, v, &FindCoordinatorRequest::default().with_key(s("g"))).await;
        assert_eq!(r.error_code, NONE, "v{v}");
        assert_eq!(
            (r.node_id.0, r.host.as_str(), r.port),
            (1, "127.0.0.1", 9092)
        );
    }
    let txn = FindCoordinatorRequest::default()
        .with_key(s("tx"))
        .with_key_type(1);
    // Transactional ids: the leader of their __transaction_state partition (created now).
    let r = call(&b, 3, &txn).await;
    assert_eq!(r.error_code, NONE);
    assert_eq!(r.node_id.0, 1);
    let batched_txn = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![s("tx"), s("ty")]);
    let r = call(&b, 4, &batched_txn).await;
    assert_eq!(
        r.coordinators
            .iter()
            .map(|c| (c.key.as_str(), c.node_id.0, c.error_code))
            .collect::<Vec<_>>(),
        vec![("tx", 1, NONE), ("ty", 1, NONE)]
    );
    let batched = FindCoordinatorRequest::default().with_coordinator_keys(vec![s("a"), s("b")]);
    let r = call(&b, 4, &batched).await;
    assert_eq!(
        r.coordinators
            .iter()
            .map(|c| (c.key.as_str(), c.node_id.0, c.error_code))
            .collect::<Vec<_>>(),
        vec![("a", 1, NONE), ("b", 1, NONE)]
    );
    let bad = batched.with_key_type(9);
    let r = call(&b, 4, &bad).await;
    assert!(r
        .coordinators
        .iter()
        .all(|c| c.error_code == INVALID_REQUEST));
}

#[tokio::test(start_paused = true)]
async fn v0_member_joins_syncs_heartbeats_and_leaves() {
    let (b, _dir) = broker().await;
    // v0: no MEMBER_ID_REQUIRED round trip; waits out the initial rebalance delay.
    let j = call(&b, 0, &join("g0", "")).await;
    assert_eq!(j.error_code, NONE);
    assert_eq!(j.generation_id, 1);
    assert_eq!(j.leader, j.member_id);
    assert!(j.member_id.starts_with("group-api-test-"));
    assert_eq!(j.protocol_name.as_deref(), Some("range"));
    assert_eq!(j.members.len(), 1);
    assert_eq!(j.members[0].metadata, Bytes::from_static(b"sub"));
    let id = j.member_id.to_string();
    let sr = call(&b, 0, &sync("g0", &id, 1, b"assignment-bytes")).await;
    assert_eq!(sr.error_code, NONE);
    assert_eq!(sr.assignment, Bytes::from_static(b"assignment-bytes"));
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(s("g0")))
        .with_member_id(s(&id))
        .with_generation_id(1);
    assert_eq!(call(&b, 0, &hb).await.error_code, NONE);
    let stale = hb.clone().with_generation_id(0);
    assert_eq!(call(&b, 0, &stale).await.error_code, ILLEGAL_GENERATION);
    let d = call(&b, 0, &describe("g0")).await;
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(d.groups[0].protocol_data.as_str(), "range");
    assert_eq!(
        d.groups[0].members[0].member_assignment,
        Bytes::from_static(b"assignment-bytes")
    );
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g0")))
        .with_member_id(s(&id));
    assert_eq!(call(&b, 0, &leave).await.error_code, NONE);
    assert_eq!(call(&b, 0, &leave).await.error_code, UNKNOWN_MEMBER_ID);
    assert_eq!(call(&b, 0, &hb).await.error_code, UNKNOWN_MEMBER_ID);
    let d = call(&b, 5, &describe("g0")).await;
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
    assert!(d.groups[0].members.is_empty());
}

#[tokio::test(start_paused = true)]
async fn v4_plus_member_id_required_and_protocol_checks() {
    let (b, _dir) = broker().await;
    let first = call(&b, 9, &join("g9", "")).await;
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    assert_eq!(first.generation_id, -1);
    assert_eq!(first.protocol_name, None);
    let id = first.member_id.to_string();
    let j = call(&b, 9, &join("g9", &id)).await;
    assert_eq!((j.error_code, j.generation_id), (NONE, 1));
    assert_eq!(j.protocol_type.as_deref(), Some("consumer"));
    assert!(!j.skip_assignment);
    // SyncGroup v5 checks the protocol it names against the group's.
    let wrong = sync("g9", &id, 1, b"x").with_protocol_name(Some(s("roundrobin")));
    assert_eq!(
        call(&b, 5, &wrong).await.error_code,
        INCONSISTENT_GROUP_PROTOCOL
    );
    let right = sync("g9", &id, 1, b"x")
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")));
    let r = call(&b, 5, &right).await;
    assert_eq!(r.error_code, NONE);
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    // A join of another protocol type is refused; an unknown member id too.
    let other = join("g9", "").with_protocol_type(s("connect"));
    assert_eq!(
        call(&b, 9, &other).await.error_code,
        INCONSISTENT_GROUP_PROTOCOL
    );
    assert_eq!(
        call(&b, 9, &join("g9", "nobody")).await.error_code,
        UNKNOWN_MEMBER_ID
    );
    // The leader rejoining triggers a rebalance; heartbeats then say so.
    let again = call(&b, 9, &join("g9", &id)).await;
    assert_eq!(again.generation_id, 2);
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(s("g9")))
        .with_member_id(s(&id))
        .with_generation_id(2);
    assert_eq!(call(&b, 4, &hb).await.error_code, NONE);
    let join_other = join("g9", "");
    let r = call(&b, 3, &join_other).await; // v3: no MEMBER_ID_REQUIRED; waits for the rebalance
    assert_eq!(
        r.generation_id, 3,
        "the old member was dropped at the rebalance timeout"
    );
    assert_eq!(call(&b, 4, &hb).await.error_code, UNKNOWN_MEMBER_ID);
    // Batched leave (v3+): per-member results.
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g9")))
        .with_members(vec![
            MemberIdentity::default().with_member_id(r.member_id.clone()),
            MemberIdentity::default().with_member_id(s("ghost")),
        ]);
    let lr = call(&b, 5, &leave).await;
    assert_eq!(lr.error_code, NONE);
    assert_eq!(
        lr.members.iter().map(|m| m.error_code).collect::<Vec<_>>(),
        vec![NONE, UNKNOWN_MEMBER_ID]
    );
}

fn commit(group: &str, topic: &str, offsets: &[(i32, i64)]) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(
                offsets
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                            .with_committed_metadata(Some(s("meta")))
                    })
                    .collect(),
            )])
}

#[tokio::test(start_paused = true)]
async fn offsets_commit_fetch_list_and_delete_groups() {
    let (b, _dir) = broker().await;
    b.topics.auto_create("t").await.unwrap();
    // Admin-style commits (generation -1, no member) at old and new versions.
    for v in [0, 2, 8] {
        let r = call(&b, v, &commit("og", "t", &[(0, 10 + v as i64), (5, 1)])).await;
        let codes: Vec<i16> = r.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(codes, vec![NONE, UNKNOWN_TOPIC_OR_PARTITION], "v{v}");
    }
    // v1: explicit topics; partition 1 has no commit.
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("og")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0, 1])]));
    let r = call(&b, 1, &fetch).await;
    let got: Vec<(i32, i64, Option<&str>)> = r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset, p.metadata.as_deref()))
        .collect();
    assert_eq!(got, vec![(0, 18, Some("meta")), (1, -1, Some(""))]);
    // v7: null topics = all committed offsets.
    let r = call(&b, 7, &fetch.clone().with_topics(None)).await;
    assert_eq!(r.error_code, NONE);
    assert_eq!(r.topics.len(), 1);
    assert_eq!(r.topics[0].partitions.len(), 1);
    // v8: several groups, one unknown (no offsets, no error).
    let groups = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("og")))
            .with_topics(None),
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("nobody")))
            .with_topics(None),
    ]);
    let r = call(&b, 8, &groups).await;
    assert_eq!(r.groups.len(), 2);
    assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 18);
    assert!(r.groups[1].topics.is_empty() && r.groups[1].error_code == NONE);

    // ListGroups: v0 lists, v4 filters by state (case-insensitively).
    let r = call(&b, 0, &ListGroupsRequest::default()).await;
    assert_eq!(r.groups.len(), 1);
    let only = |state: &str| ListGroupsRequest::default().with_states_filter(vec![s(state)]);
    let r = call(&b, 4, &only("empty")).await;
    assert_eq!(
        (
            r.groups[0].group_id.as_str(),
            r.groups[0].group_state.as_str()
        ),
        ("og", "Empty")
    );
    assert!(call(&b, 4, &only("Stable")).await.groups.is_empty());
    assert!(call(&b, 4, &only("NoSuchState")).await.groups.is_empty());

    // DescribeGroups of an unknown group: Dead, no error.
    let d = call(&b, 5, &describe("unknown")).await;
    assert_eq!(
        (d.groups[0].error_code, d.groups[0].group_state.as_str()),
        (NONE, "Dead")
    );

    // DeleteGroups: a group with a member is not deleted; Empty ones are.
    let j = call(&b, 3, &join("busy", "")).await;
    assert_eq!(j.error_code, NONE);
    let del = DeleteGroupsRequest::default().with_groups_names(vec![
        GroupId(s("og")),
        GroupId(s("busy")),
        GroupId(s("missing")),
    ]);
    let r = call(&b, 2, &del).await;
    assert_eq!(
        r.results
            .iter()
            .map(|g| (g.group_id.as_str(), g.error_code))
            .collect::<Vec<_>>(),
        vec![
            ("og", NONE),
            ("busy", NON_EMPTY_GROUP),
            ("missing", GROUP_ID_NOT_FOUND)
        ]
    );
    let r = call(&b, 7, &fetch.with_topics(None)).await;
    assert!(r.topics.is_empty());
}
