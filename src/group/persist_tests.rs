//! The coordinator hands group metadata records to its store at the right moments: after the
//! leader's assignment completes a rebalance, when the group empties, and a tombstone when a
//! persisted group is deleted; and restored groups are served as they were.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::coordinator::{GroupConfig, GroupCoordinator};
use super::group_records::GroupSnapshot;
use super::messages::{GroupLimits, JoinRequest, MemberRef, Protocol, SyncRequest};
use super::offsets::{CommittedOffset, OffsetStore, SyncFuture, TopicPartition};
use super::{GroupError, GroupState, LocalPlacement};

/// An in-memory store that records every group record handed to it.
#[derive(Default)]
struct Recording {
    records: Mutex<Vec<(String, Option<GroupSnapshot>)>>,
}

impl OffsetStore for Recording {
    fn put(&self, _: &str, _: &[(TopicPartition, CommittedOffset)]) -> Result<(), GroupError> {
        Ok(())
    }
    fn sync(&self, _: &str) -> SyncFuture {
        Box::pin(async { Ok(()) })
    }
    fn get(&self, _: &str, _: &TopicPartition) -> Result<Option<CommittedOffset>, GroupError> {
        Ok(None)
    }
    fn group_offsets(&self, _: &str) -> Result<Vec<(TopicPartition, CommittedOffset)>, GroupError> {
        Ok(Vec::new())
    }
    fn remove(&self, _: &str, _: &[TopicPartition]) -> Result<(), GroupError> {
        Ok(())
    }
    fn remove_group(&self, _: &str) -> Result<(), GroupError> {
        Ok(())
    }
    fn remove_topic(&self, _: &str) -> Result<(), GroupError> {
        Ok(())
    }
    fn groups(&self) -> Result<Vec<String>, GroupError> {
        Ok(Vec::new())
    }
    fn put_group(&self, group: &str, record: Option<&GroupSnapshot>) -> Result<(), GroupError> {
        self.records
            .lock()
            .unwrap()
            .push((group.to_string(), record.cloned()));
        Ok(())
    }
}

fn coordinator(store: Arc<Recording>) -> Arc<GroupCoordinator> {
    let config = GroupConfig {
        limits: GroupLimits {
            min_session_timeout_ms: 1000,
            max_session_timeout_ms: 60_000,
            initial_rebalance_delay: Duration::ZERO,
            max_size: 10,
        },
        offset_metadata_max_bytes: 4096,
    };
    Arc::new(
        GroupCoordinator::open(1, config, Arc::new(LocalPlacement { node_id: 1 }), store).unwrap(),
    )
}

fn join_req() -> JoinRequest {
    JoinRequest {
        member_id: String::new(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/h".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![Protocol {
            name: "range".into(),
            metadata: Bytes::from_static(b"sub"),
        }],
        require_known_member_id: false,
    }
}

#[tokio::test(start_paused = true)]
async fn rebalances_empty_groups_and_deletions_are_persisted() {
    let store = Arc::new(Recording::default());
    let groups = coordinator(store.clone());
    let joined = groups.join("g", join_req()).await;
    assert_eq!(joined.error, None);
    assert!(
        store.records.lock().unwrap().is_empty(),
        "nothing before the assignment"
    );
    let synced = groups
        .sync(
            "g",
            SyncRequest {
                member_id: joined.member_id.clone(),
                group_instance_id: None,
                generation_id: joined.generation_id,
                protocol_type: None,
                protocol_name: None,
                assignments: vec![(joined.member_id.clone(), Bytes::from_static(b"A"))],
            },
        )
        .await;
    assert_eq!(synced.error, None);
    {
        let records = store.records.lock().unwrap();
        assert_eq!(records.len(), 1);
        let s = records[0].1.as_ref().unwrap();
        assert_eq!((s.generation, s.members.len()), (joined.generation_id, 1));
        assert_eq!(s.members[0].assignment, Bytes::from_static(b"A"));
    }
    // Heartbeats persist nothing.
    let who = MemberRef {
        member_id: joined.member_id.clone(),
        group_instance_id: None,
    };
    groups.heartbeat("g", &who, joined.generation_id).unwrap();
    assert_eq!(store.records.lock().unwrap().len(), 1);
    // The last member leaves: the emptied group is persisted (no members, next generation).
    groups.leave("g", std::slice::from_ref(&who)).unwrap();
    {
        let records = store.records.lock().unwrap();
        assert_eq!(records.len(), 2);
        let s = records[1].1.as_ref().unwrap();
        assert!(s.members.is_empty());
        assert_eq!(s.generation, joined.generation_id + 1);
    }
    // Deleting it writes the tombstone.
    assert_eq!(groups.delete_groups(&["g".to_string()]).await, vec![Ok(())]);
    assert_eq!(store.records.lock().unwrap()[2], ("g".to_string(), None));
}

#[tokio::test(start_paused = true)]
async fn restored_groups_are_served_as_persisted() {
    let store = Arc::new(Recording::default());
    let first = coordinator(store.clone());
    let joined = first.join("g", join_req()).await;
    let _ = first
        .sync(
            "g",
            SyncRequest {
                member_id: joined.member_id.clone(),
                group_instance_id: None,
                generation_id: joined.generation_id,
                protocol_type: None,
                protocol_name: None,
                assignments: vec![(joined.member_id.clone(), Bytes::from_static(b"A"))],
            },
        )
        .await;
    let record = store.records.lock().unwrap()[0].1.clone().unwrap();
    // Another coordinator takes the group over from the record.
    let second = coordinator(Arc::new(Recording::default()));
    second.groups_restored(vec![("g".to_string(), record)]);
    let d = second.describe("g").unwrap();
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.members[0].member_id, joined.member_id);
    let who = MemberRef {
        member_id: joined.member_id.clone(),
        group_instance_id: None,
    };
    assert_eq!(second.heartbeat("g", &who, joined.generation_id), Ok(()));
    let resynced = second
        .sync(
            "g",
            SyncRequest {
                member_id: joined.member_id.clone(),
                group_instance_id: None,
                generation_id: joined.generation_id,
                protocol_type: None,
                protocol_name: None,
                assignments: Vec::new(),
            },
        )
        .await;
    assert_eq!(resynced.assignment, Bytes::from_static(b"A"));
}
