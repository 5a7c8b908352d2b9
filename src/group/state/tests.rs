//! The group state machine's rules, step by step with tokio's paused clock.

use super::*;
use tokio::time::advance;

const DELAY: Duration = Duration::from_secs(3);
const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn limits() -> GroupLimits {
    GroupLimits {
        min_session_timeout_ms: 6_000,
        max_session_timeout_ms: 300_000,
        initial_rebalance_delay: DELAY,
        max_size: 10,
    }
}

fn protocols(names: &[&str]) -> Vec<Protocol> {
    names
        .iter()
        .map(|n| Protocol {
            name: n.to_string(),
            metadata: Bytes::from(format!("meta-{n}")),
        })
        .collect()
}

fn join_req(member_id: &str, names: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: protocols(names),
        require_known_member_id: false,
    }
}

fn later<T>(r: Reply<T>) -> oneshot::Receiver<T> {
    match r {
        Reply::Later(rx) => rx,
        Reply::Now(_) => panic!("expected the request to wait"),
    }
}

fn now<T: std::fmt::Debug>(r: Reply<T>) -> T {
    match r {
        Reply::Now(v) => v,
        Reply::Later(_) => panic!("expected an immediate answer"),
    }
}

/// The answer, whether given at once or already sent to the receiver.
fn answer<T: std::fmt::Debug>(r: Reply<T>) -> T {
    match r {
        Reply::Now(v) => v,
        Reply::Later(mut rx) => ready(&mut rx),
    }
}

fn ready<T>(rx: &mut oneshot::Receiver<T>) -> T {
    rx.try_recv().expect("answer should be ready")
}

fn pending<T: std::fmt::Debug>(rx: &mut oneshot::Receiver<T>) {
    assert!(matches!(
        rx.try_recv(),
        Err(oneshot::error::TryRecvError::Empty)
    ));
}

/// Advances paused time and applies the group's timeouts.
async fn pass(g: &mut Group, d: Duration) -> Vec<String> {
    advance(d).await;
    g.tick(Instant::now())
}

fn sync_req(member: &str, generation: i32, assignments: &[(&str, &[u8])]) -> SyncRequest {
    SyncRequest {
        member_id: member.into(),
        group_instance_id: None,
        generation_id: generation,
        protocol_type: None,
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::copy_from_slice(a)))
            .collect(),
    }
}

fn who(id: &str) -> MemberRef {
    MemberRef {
        member_id: id.into(),
        group_instance_id: None,
    }
}

/// Two members "a" (leader) and "b" joined and synced: generation 1, Stable.
async fn stable_pair() -> Group {
    let mut g = Group::new("g", limits());
    let mut a = later(g.join(join_req("", &["range"]), "a".into(), Instant::now()));
    let mut b = later(g.join(join_req("", &["range"]), "b".into(), Instant::now()));
    pass(&mut g, DELAY).await;
    // b arrived during the initial delay: it is extended once.
    pending(&mut a);
    pass(&mut g, DELAY).await;
    assert_eq!(ready(&mut a).generation_id, 1);
    assert_eq!(ready(&mut b).generation_id, 1);
    let mut sb = later(g.sync(sync_req("b", 1, &[]), Instant::now()));
    let _ = answer(g.sync(
        sync_req("a", 1, &[("a", b"A"), ("b", b"B")]),
        Instant::now(),
    ));
    assert_eq!(ready(&mut sb).assignment, Bytes::from_static(b"B"));
    assert_eq!(g.state(), GroupState::Stable);
    g
}

#[tokio::test(start_paused = true)]
async fn first_join_waits_for_the_initial_delay() {
    let mut g = Group::new("g", limits());
    let mut rx = later(g.join(join_req("", &["range"]), "m1".into(), Instant::now()));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    pass(&mut g, DELAY - Duration::from_millis(1)).await;
    pending(&mut rx);
    pass(&mut g, Duration::from_millis(1)).await;
    let r = ready(&mut rx);
    assert_eq!(r.error, None);
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.leader, "m1");
    assert_eq!(r.member_id, "m1");
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
}

#[tokio::test(start_paused = true)]
async fn member_id_required_round_trip() {
    let mut g = Group::new("g", limits());
    let mut first = join_req("", &["range"]);
    first.require_known_member_id = true;
    let r = now(g.join(first.clone(), "m1".into(), Instant::now()));
    assert_eq!(r.error, Some(GroupError::MemberIdRequired));
    assert_eq!(r.member_id, "m1");
    assert_eq!(g.state(), GroupState::Empty);
    let mut again = first;
    again.member_id = "m1".into();
    let mut rx = later(g.join(again, "unused".into(), Instant::now()));
    pass(&mut g, DELAY).await;
    assert_eq!(ready(&mut rx).member_id, "m1");
}

#[tokio::test(start_paused = true)]
async fn unused_member_id_lapses_after_the_session_timeout() {
    let mut g = Group::new("g", limits());
    let mut first = join_req("", &["range"]);
    first.require_known_member_id = true;
    let _ = now(g.join(first, "m1".into(), Instant::now()));
    assert!(!g.is_empty());
    pass(&mut g, Duration::from_millis(SESSION_MS as u64)).await;
    assert!(g.is_empty());
    let r = now(g.join(join_req("m1", &["range"]), "x".into(), Instant::now()));
    assert_eq!(r.error, Some(GroupError::UnknownMemberId("m1".into())));
}

#[tokio::test(start_paused = true)]
async fn leader_gets_metadata_followers_wait_for_its_assignment() {
    let mut g = Group::new("g", limits());
    let mut a = later(g.join(join_req("", &["range"]), "a".into(), Instant::now()));
    let mut b = later(g.join(join_req("", &["range"]), "b".into(), Instant::now()));
    pass(&mut g, DELAY).await;
    pass(&mut g, DELAY).await;
    let ra = ready(&mut a);
    let rb = ready(&mut b);
    assert_eq!((ra.leader.as_str(), rb.leader.as_str()), ("a", "a"));
    assert_eq!(
        ra.members
            .iter()
            .map(|m| (m.member_id.as_str(), m.metadata.clone()))
            .collect::<Vec<_>>(),
        vec![
            ("a", Bytes::from("meta-range")),
            ("b", Bytes::from("meta-range"))
        ]
    );
    assert!(rb.members.is_empty());
    // The follower syncs first and waits; the leader's assignment completes it.
    let mut sb = later(g.sync(sync_req("b", 1, &[]), Instant::now()));
    pending(&mut sb);
    let sa = answer(g.sync(
        sync_req(
            "a",
            1,
            &[("a", b"\x00\x01A"), ("b", b"\x00\x01B"), ("zz", b"?")],
        ),
        Instant::now(),
    ));
    assert_eq!(sa.assignment, Bytes::from_static(b"\x00\x01A"));
    assert_eq!(ready(&mut sb).assignment, Bytes::from_static(b"\x00\x01B"));
    assert_eq!(g.state(), GroupState::Stable);
    // A member syncing again in Stable gets its assignment at once.
    let again = now(g.sync(sync_req("b", 1, &[]), Instant::now()));
    assert_eq!(again.assignment, Bytes::from_static(b"\x00\x01B"));
}

#[tokio::test(start_paused = true)]
async fn heartbeat_errors() {
    let mut g = stable_pair().await;
    let t = Instant::now();
    assert_eq!(g.heartbeat(&who("a"), 1, t), Ok(()));
    assert_eq!(
        g.heartbeat(&who("a"), 0, t),
        Err(GroupError::IllegalGeneration { got: 0, current: 1 })
    );
    assert_eq!(
        g.heartbeat(&who("nobody"), 1, t),
        Err(GroupError::UnknownMemberId("nobody".into()))
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_member_triggers_a_rebalance_and_bumps_the_generation() {
    let mut g = stable_pair().await;
    let mut c = later(g.join(join_req("", &["range"]), "c".into(), Instant::now()));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&who("a"), 1, Instant::now()),
        Err(GroupError::RebalanceInProgress)
    );
    // Syncs and commits of the old generation: rebalance in progress / still allowed.
    assert_eq!(
        now(g.sync(sync_req("a", 1, &[]), Instant::now())).error,
        Some(GroupError::RebalanceInProgress)
    );
    assert_eq!(g.validate_commit(&who("a"), 1, Instant::now()), Ok(()));
    let mut a = later(g.join(join_req("a", &["range"]), "x".into(), Instant::now()));
    pending(&mut c);
    let mut b = later(g.join(join_req("b", &["range"]), "x".into(), Instant::now()));
    // Everyone rejoined: no need to wait for the rebalance timeout.
    for rx in [&mut a, &mut b, &mut c] {
        assert_eq!(ready(rx).generation_id, 2);
    }
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(
        g.validate_commit(&who("a"), 2, Instant::now()),
        Err(GroupError::RebalanceInProgress)
    );
}

#[tokio::test(start_paused = true)]
async fn leaving_leader_hands_over_and_remaining_member_rebalances() {
    let mut g = stable_pair().await;
    assert_eq!(g.leave(&who("a"), Instant::now()), Ok(()));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&who("b"), 1, Instant::now()),
        Err(GroupError::RebalanceInProgress)
    );
    let mut b = later(g.join(join_req("b", &["range"]), "x".into(), Instant::now()));
    let r = ready(&mut b);
    assert_eq!((r.generation_id, r.leader.as_str()), (2, "b"));
    assert_eq!(r.members.len(), 1);
    assert_eq!(
        g.leave(&who("a"), Instant::now()),
        Err(GroupError::UnknownMemberId("a".into()))
    );
}

#[tokio::test(start_paused = true)]
async fn last_member_leaving_empties_the_group() {
    let mut g = stable_pair().await;
    g.leave(&who("a"), Instant::now()).unwrap();
    g.leave(&who("b"), Instant::now()).unwrap();
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.generation(), 2);
    assert_eq!(g.describe().members, vec![]);
    // Admin-style commits are allowed again.
    assert_eq!(
        g.validate_commit(&MemberRef::default(), -1, Instant::now()),
        Ok(())
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_session_evicts_the_member() {
    let mut g = stable_pair().await;
    // b keeps heartbeating, a goes silent.
    for _ in 0..3 {
        advance(Duration::from_secs(3)).await;
        g.heartbeat(&who("b"), 1, Instant::now()).unwrap();
        assert!(g.tick(Instant::now()).is_empty());
    }
    let removed = pass(&mut g, Duration::from_secs(1)).await;
    assert_eq!(removed, vec!["a".to_string()]);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&who("b"), 1, Instant::now()),
        Err(GroupError::RebalanceInProgress)
    );
    let mut b = later(g.join(join_req("b", &["range"]), "x".into(), Instant::now()));
    assert_eq!(ready(&mut b).leader, "b");
}

#[tokio::test(start_paused = true)]
async fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let mut g = stable_pair().await;
    let mut c = later(g.join(join_req("", &["range"]), "c".into(), Instant::now()));
    let mut a = later(g.join(join_req("a", &["range"]), "x".into(), Instant::now()));
    // b only heartbeats (told to rejoin, it never does).
    advance(Duration::from_secs(5)).await;
    assert_eq!(
        g.heartbeat(&who("b"), 1, Instant::now()),
        Err(GroupError::RebalanceInProgress)
    );
    let removed = pass(&mut g, Duration::from_millis(REBALANCE_MS as u64 - 5_000)).await;
    assert_eq!(removed, vec!["b".to_string()]);
    let ra = ready(&mut a);
    assert_eq!(ra.generation_id, 2);
    assert_eq!(ra.members.len(), 2);
    assert_eq!(ready(&mut c).generation_id, 2);
}

#[tokio::test(start_paused = true)]
async fn members_that_do_not_sync_are_dropped_at_the_rebalance_timeout() {
    let mut g = Group::new("g", limits());
    let mut a = later(g.join(join_req("", &["range"]), "a".into(), Instant::now()));
    let mut b = later(g.join(join_req("", &["range"]), "b".into(), Instant::now()));
    pass(&mut g, DELAY).await;
    pass(&mut g, DELAY).await;
    ready(&mut a);
    ready(&mut b);
    let _ = answer(g.sync(sync_req("a", 1, &[("a", b"A")]), Instant::now()));
    // b keeps heartbeating but never syncs.
    for _ in 0..9 {
        advance(Duration::from_secs(3)).await;
        g.heartbeat(&who("a"), 1, Instant::now()).unwrap();
        let _ = g.heartbeat(&who("b"), 1, Instant::now());
        g.tick(Instant::now());
    }
    let removed = pass(&mut g, Duration::from_secs(3)).await;
    assert_eq!(removed, vec!["b".to_string()]);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[tokio::test(start_paused = true)]
async fn protocol_every_member_supports_with_most_votes_wins() {
    let mut g = Group::new("g", limits());
    let mut rxs = [
        later(g.join(
            join_req("", &["range", "roundrobin"]),
            "a".into(),
            Instant::now(),
        )),
        later(g.join(
            join_req("", &["roundrobin", "range"]),
            "b".into(),
            Instant::now(),
        )),
        later(g.join(
            join_req("", &["roundrobin", "sticky", "range"]),
            "c".into(),
            Instant::now(),
        )),
    ];
    let r = now(g.join(join_req("", &["sticky"]), "d".into(), Instant::now()));
    assert_eq!(r.error, Some(GroupError::InconsistentGroupProtocol));
    let mut other_type = join_req("", &["range"]);
    other_type.protocol_type = "connect".into();
    assert_eq!(
        now(g.join(other_type, "e".into(), Instant::now())).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    pass(&mut g, DELAY).await;
    pass(&mut g, DELAY).await;
    let r = ready(&mut rxs[0]);
    assert_eq!(r.protocol_name.as_deref(), Some("roundrobin"));
    assert!(r.members.iter().all(|m| m.metadata == "meta-roundrobin"));
}

#[tokio::test(start_paused = true)]
async fn session_timeout_must_be_in_range() {
    let mut g = Group::new("g", limits());
    let mut r = join_req("", &["range"]);
    r.session_timeout_ms = 1_000;
    assert!(matches!(
        now(g.join(r, "a".into(), Instant::now())).error,
        Some(GroupError::InvalidSessionTimeout { got: 1_000, .. })
    ));
    assert_eq!(g.state(), GroupState::Empty);
}

#[tokio::test(start_paused = true)]
async fn static_member_restart_keeps_its_assignment_without_rebalance() {
    let mut g = Group::new("g", limits());
    let mut ja = join_req("", &["range"]);
    ja.group_instance_id = Some("ia".into());
    let mut jb = join_req("", &["range"]);
    jb.group_instance_id = Some("ib".into());
    let mut a = later(g.join(ja.clone(), "a1".into(), Instant::now()));
    let mut b = later(g.join(jb.clone(), "b1".into(), Instant::now()));
    pass(&mut g, DELAY).await;
    pass(&mut g, DELAY).await;
    ready(&mut a);
    ready(&mut b);
    let mut sb = later(g.sync(sync_req("b1", 1, &[]), Instant::now()));
    answer(g.sync(
        sync_req("a1", 1, &[("a1", b"A"), ("b1", b"B")]),
        Instant::now(),
    ));
    ready(&mut sb);
    // b restarts: new member id, same instance id, no rebalance.
    let r = now(g.join(jb, "b2".into(), Instant::now()));
    assert_eq!(
        (r.error, r.generation_id, r.member_id.as_str()),
        (None, 1, "b2")
    );
    assert_eq!(g.state(), GroupState::Stable);
    let mut s = sync_req("b2", 1, &[]);
    s.group_instance_id = Some("ib".into());
    assert_eq!(
        now(g.sync(s, Instant::now())).assignment,
        Bytes::from_static(b"B")
    );
    // The old incarnation is fenced.
    let old = MemberRef {
        member_id: "b1".into(),
        group_instance_id: Some("ib".into()),
    };
    assert_eq!(
        g.heartbeat(&old, 1, Instant::now()),
        Err(GroupError::FencedInstanceId("ib".into()))
    );
    // The leader restarting does not rebalance either: it is answered as a follower (the
    // leader named is its old id) and syncs to get its assignment back.
    let r = now(g.join(ja, "a2".into(), Instant::now()));
    assert_eq!(
        (
            r.error,
            r.generation_id,
            r.member_id.as_str(),
            r.leader.as_str()
        ),
        (None, 1, "a2", "a1")
    );
    assert!(r.members.is_empty());
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.leader(), Some("a2"));
    let mut s = sync_req("a2", 1, &[]);
    s.group_instance_id = Some("ia".into());
    assert_eq!(
        now(g.sync(s, Instant::now())).assignment,
        Bytes::from_static(b"A")
    );
    // Admin removal by instance id: now the group rebalances, led by a2.
    let by_instance = MemberRef {
        member_id: String::new(),
        group_instance_id: Some("ib".into()),
    };
    assert_eq!(g.leave(&by_instance, Instant::now()), Ok(()));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.member_ids(), vec!["a2".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn commits_outside_the_group_protocol_only_while_empty() {
    let mut g = stable_pair().await;
    let admin = MemberRef::default();
    assert_eq!(
        g.validate_commit(&admin, -1, Instant::now()),
        Err(GroupError::UnknownMemberId(String::new()))
    );
    assert_eq!(
        g.validate_commit(&who("a"), 7, Instant::now()),
        Err(GroupError::IllegalGeneration { got: 7, current: 1 })
    );
    assert_eq!(g.validate_commit(&who("a"), 1, Instant::now()), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn describe_reports_metadata_only_when_stable() {
    let mut g = Group::new("g", limits());
    let _rx = later(g.join(join_req("", &["range"]), "a".into(), Instant::now()));
    let d = g.describe();
    assert_eq!(d.state.as_str(), "PreparingRebalance");
    assert_eq!(d.protocol_name, "");
    assert_eq!(d.members[0].metadata, Bytes::new());
    let g = stable_pair().await.describe();
    assert_eq!(
        (g.state.as_str(), g.protocol_type.as_str()),
        ("Stable", "consumer")
    );
    assert_eq!(g.protocol_name, "range");
    assert_eq!(g.members[1].assignment, Bytes::from_static(b"B"));
    assert_eq!(g.members[1].client_host, "/127.0.0.1");
}

#[tokio::test(start_paused = true)]
async fn dead_group_refuses_everything() {
    let mut g = stable_pair().await;
    g.mark_dead();
    assert_eq!(
        g.heartbeat(&who("a"), 1, Instant::now()),
        Err(GroupError::CoordinatorNotAvailable)
    );
    assert_eq!(
        now(g.join(join_req("", &["range"]), "z".into(), Instant::now())).error,
        Some(GroupError::CoordinatorNotAvailable)
    );
}

#[test]
fn state_names_are_kafkas() {
    for (s, n) in [
        (GroupState::Empty, "Empty"),
        (GroupState::Stable, "Stable"),
        (GroupState::PreparingRebalance, "PreparingRebalance"),
        (GroupState::CompletingRebalance, "CompletingRebalance"),
        (GroupState::Dead, "Dead"),
    ] {
        assert_eq!(s.as_str(), n);
        assert_eq!(GroupState::parse(&n.to_lowercase()), Some(s));
    }
    assert_eq!(GroupState::parse("Bogus"), None);
}

#[tokio::test(start_paused = true)]
async fn a_completed_rebalance_is_persisted_once_and_restores_as_stable() {
    let mut g = stable_pair().await;
    let record = g
        .take_dirty()
        .expect("the completed rebalance is due for a record");
    assert_eq!(g.take_dirty(), None, "written once");
    assert_eq!(record.generation, 1);
    assert_eq!(record.protocol.as_deref(), Some("range"));
    assert_eq!(record.leader.as_deref(), Some("a"));
    let ids: Vec<&str> = record
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(record.members[1].assignment, Bytes::from_static(b"B"));
    assert_eq!(
        record.members[1].subscription,
        Bytes::from_static(b"meta-range")
    );
    assert_eq!(record.members[0].session_timeout_ms, SESSION_MS);

    // Another coordinator takes the group over later: same generation, members, leader and
    // assignments; members go on heartbeating and syncing without a rebalance.
    advance(Duration::from_secs(60)).await;
    let mut r = Group::restore("g", limits(), record, Instant::now());
    assert_eq!(r.state(), GroupState::Stable);
    assert_eq!((r.generation(), r.leader()), (1, Some("a")));
    assert_eq!(r.member_ids(), ["a", "b"]);
    assert_eq!(r.heartbeat(&who("a"), 1, Instant::now()), Ok(()));
    assert!(matches!(
        r.heartbeat(&who("a"), 2, Instant::now()),
        Err(GroupError::IllegalGeneration { got: 2, current: 1 })
    ));
    assert_eq!(
        now(r.sync(sync_req("b", 1, &[]), Instant::now())).assignment,
        Bytes::from_static(b"B")
    );
    assert_eq!(r.describe().members[0].assignment, Bytes::from_static(b"A"));
    assert_eq!(r.take_dirty(), None, "nothing new to persist");
    // Sessions restarted at the takeover: b keeps heartbeating, a goes silent and expires.
    let half = Duration::from_millis(SESSION_MS as u64 / 2);
    assert!(pass(&mut r, half).await.is_empty());
    assert_eq!(r.heartbeat(&who("b"), 1, Instant::now()), Ok(()));
    assert!(pass(&mut r, half - Duration::from_millis(1))
        .await
        .is_empty());
    assert_eq!(pass(&mut r, Duration::from_millis(1)).await, ["a"]);
    assert_eq!(r.member_ids(), ["b"]);
    assert_eq!(r.state(), GroupState::PreparingRebalance);
}

#[tokio::test(start_paused = true)]
async fn an_emptied_group_is_persisted_with_its_generation() {
    let mut g = stable_pair().await;
    let _ = g.take_dirty();
    g.leave(&who("a"), Instant::now()).unwrap();
    g.leave(&who("b"), Instant::now()).unwrap();
    pass(&mut g, Duration::ZERO).await;
    assert_eq!(g.state(), GroupState::Empty);
    let record = g
        .take_dirty()
        .expect("an emptied group is due for a record");
    assert!(record.members.is_empty());
    assert_eq!(record.generation, 2);
    let mut r = Group::restore("g", limits(), record, Instant::now());
    assert_eq!((r.state(), r.generation()), (GroupState::Empty, 2));
    let mut rx = later(r.join(join_req("", &["range"]), "c".into(), Instant::now()));
    pass(&mut r, DELAY).await;
    assert_eq!(
        ready(&mut rx).generation_id,
        3,
        "generations never go backwards"
    );
}
