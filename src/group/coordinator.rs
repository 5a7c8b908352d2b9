//! The group coordinator: the groups this broker coordinates, the waits of JoinGroup and
//! SyncGroup requests, the sweeper that applies session and rebalance timeouts, and offset
//! commit, fetch and delete on top of an [`OffsetStore`].
//!
//! After every step that completes a rebalance or empties a group, the group's metadata
//! record is handed to the store ([`OffsetStore::put_group`]; the leader's SyncGroup answers
//! once it is replicated); deleting a persisted group writes its tombstone. A broker that
//! takes over coordination restores the groups from those records
//! ([`GroupCoordinator::groups_restored`]).
//!
//! Every group lives in one map behind a std mutex that is held only for the few
//! microseconds a state-machine step takes, never across an await: a request that must wait
//! takes a one-shot receiver out of the lock and waits on it alone. A waiting request also
//! wakes at its group's next deadline and applies it itself, so a join completes even where
//! no sweeper runs (the fuzz harness); the sweeper started by [`GroupCoordinator::run_sweeper`]
//! handles members that are not waiting (expired sessions).
//!
//! May depend on: `group::{state, offsets}`, `tokio`, `tokio_util`. Not on `api` or `broker`.

pub mod txn;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::group_records::GroupSnapshot;
use super::offsets::{CommittedOffset, OffsetStore, TopicPartition};
use super::state::{
    Group, GroupDescription, GroupLimits, GroupState, JoinRequest, JoinResponse, MemberRef, Reply,
    SyncRequest, SyncResponse, CONSUMER_PROTOCOL_TYPE,
};
use super::{GroupError, Placement};

/// The longest the sweeper sleeps between looks at the groups.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// How often Empty groups without committed offsets are forgotten (Kafka's
/// `offsets.retention.check.interval.ms` default).
const CLEANUP_INTERVAL: Duration = Duration::from_secs(600);

/// Coordinator settings (from the broker's `group.*` and `offset.*` settings).
#[derive(Debug, Clone, Copy)]
pub struct GroupConfig {
    pub limits: GroupLimits,
    pub offset_metadata_max_bytes: usize,
}

/// An OffsetCommit request.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    pub member: MemberRef,
    /// -1 for commits from outside the group protocol (admin tools).
    pub generation_id: i32,
    /// Offsets with `commit_timestamp` ≤ 0 are stamped with the current time.
    pub offsets: Vec<(TopicPartition, CommittedOffset)>,
}

/// One group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

/// Committed offsets of one topic as OffsetFetch reports them (`None`: nothing committed).
pub type TopicOffsets = (String, Vec<(i32, Option<CommittedOffset>)>);

/// The consumer groups coordinated by this broker.
pub struct GroupCoordinator {
    node_id: i32,
    config: GroupConfig,
    /// Which broker coordinates which group (the cluster replaces the single-broker answer).
    placement: Arc<dyn Placement>,
    /// Where committed offsets are made durable.
    offsets: Arc<dyn OffsetStore>,
    groups: Mutex<HashMap<String, Group>>,
    /// Cancelled on shutdown: waiting Join/Sync requests answer NOT_COORDINATOR so their
    /// connections can close.
    closed: CancellationToken,
}

impl GroupCoordinator {
    /// Opens the coordinator; every group with committed offsets starts as Empty.
    pub fn open(
        node_id: i32,
        config: GroupConfig,
        placement: Arc<dyn Placement>,
        offsets: Arc<dyn OffsetStore>,
    ) -> Result<Self, GroupError> {
        let groups = offsets
            .groups()?
            .into_iter()
            .map(|g| (g.clone(), Group::new(g, config.limits)))
            .collect();
        Ok(Self {
            node_id,
            config,
            placement,
            offsets,
            groups: Mutex::new(groups),
            closed: CancellationToken::new(),
        })
    }

    /// The node id of the broker coordinating `group_id`.
    pub fn coordinator_of(&self, group_id: &str) -> Option<i32> {
        self.placement.coordinator_of(group_id)
    }

    fn check_local(&self, group_id: &str) -> Result<(), GroupError> {
        if self.closed.is_cancelled() {
            return Err(GroupError::NotCoordinator(group_id.to_string()));
        }
        match self.placement.coordinator_of(group_id) {
            Some(n) if n == self.node_id => self.offsets.ready(group_id),
            Some(_) => Err(GroupError::NotCoordinator(group_id.to_string())),
            None => Err(GroupError::CoordinatorNotAvailable),
        }
    }

    /// The offset store loaded these groups' offsets (this broker now coordinates them):
    /// each group not restored from its metadata record ([`Self::groups_restored`]) starts
    /// as Empty, as after a restart; members rebuild it by rejoining.
    pub fn groups_loaded(&self, ids: Vec<String>) {
        let mut groups = self.lock();
        for id in ids {
            groups
                .entry(id.clone())
                .or_insert_with(|| Group::new(id, self.config.limits));
        }
    }

    /// The offset store loaded these groups' metadata records (this broker now coordinates
    /// them): each is taken over as it was persisted — Stable with the same generation,
    /// members and assignments, every session restarting now — so its members go on without
    /// a rebalance (Kafka's group-metadata load). Replaces any group of the same id.
    pub fn groups_restored(&self, records: Vec<(String, GroupSnapshot)>) {
        if records.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut groups = self.lock();
        for (id, record) in records {
            let g = Group::restore(id.clone(), self.config.limits, record, now);
            tracing::info!(
                group = %id,
                generation = g.generation(),
                members = g.member_ids().len(),
                state = g.state().as_str(),
                "took over group from its metadata record"
            );
            groups.insert(id, g);
        }
    }

    /// Writes `g`'s metadata record if one is due (a rebalance completed, the group emptied);
    /// returns whether it wrote one. Called with the groups locked, right after each step.
    fn persist(&self, g: &mut Group) -> bool {
        let Some(record) = g.take_dirty() else {
            return false;
        };
        match self.offsets.put_group(g.id(), Some(&record)) {
            Ok(()) => true,
            Err(e) => {
                // The group goes on; only a coordinator move would cost a rebalance.
                tracing::warn!(group = g.id(), error = %e, "cannot persist group metadata");
                false
            }
        }
    }

    /// This broker no longer coordinates the groups `gone` selects: they are forgotten, and
    /// requests waiting in them answer NOT_COORDINATOR.
    pub fn groups_unloaded(&self, gone: impl Fn(&str) -> bool) {
        let removed: Vec<Group> = {
            let mut groups = self.lock();
            let ids: Vec<String> = groups.keys().filter(|g| gone(g)).cloned().collect();
            ids.iter().filter_map(|id| groups.remove(id)).collect()
        };
        if !removed.is_empty() {
            tracing::info!(groups = removed.len(), "no longer coordinating groups");
        }
        // Dropping the groups (outside the lock) drops the waiters' senders.
        drop(removed);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        // A panic while holding the lock leaves a consistent map (every step is applied to
        // one group); keep serving.
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles a JoinGroup; may wait until the group's join phase ends.
    pub async fn join(&self, group_id: &str, req: JoinRequest) -> JoinResponse {
        let member_id = req.member_id.clone();
        if group_id.is_empty() {
            return JoinResponse::error(&member_id, GroupError::InvalidGroupId);
        }
        if let Err(e) = self.check_local(group_id) {
            return JoinResponse::error(&member_id, e);
        }
        let reply = {
            let mut groups = self.lock();
            let created = !groups.contains_key(group_id);
            if created && !member_id.is_empty() {
                return JoinResponse::error(
                    &member_id,
                    GroupError::UnknownMemberId(member_id.clone()),
                );
            }
            let group = groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, self.config.limits));
            let new_id = new_member_id(&req.client_id);
            let reply = group.join(req, new_id, Instant::now());
            self.persist(group);
            if created && matches!(reply, Reply::Now(_)) && group.is_empty() {
                // A refused first join leaves no trace (no members, no offsets).
                if group.state() == GroupState::Empty {
                    groups.remove(group_id);
                }
            }
            reply
        };
        match reply {
            Reply::Now(r) => r,
            Reply::Later(rx) => {
                self.wait(
                    group_id,
                    rx,
                    || {
                        JoinResponse::error(
                            &member_id,
                            GroupError::UnknownMemberId(member_id.clone()),
                        )
                    },
                    || JoinResponse::error(&member_id, GroupError::NotCoordinator(group_id.into())),
                )
                .await
            }
        }
    }

    /// Handles a SyncGroup; a follower may wait for the leader's assignment.
    pub async fn sync(&self, group_id: &str, req: SyncRequest) -> SyncResponse {
        if group_id.is_empty() {
            return SyncResponse::error(GroupError::InvalidGroupId);
        }
        if let Err(e) = self.check_local(group_id) {
            return SyncResponse::error(e);
        }
        let member_id = req.member_id.clone();
        let (reply, persisted) = match self.lock().get_mut(group_id) {
            Some(g) => {
                let reply = g.sync(req, Instant::now());
                (reply, self.persist(g))
            }
            None => return SyncResponse::error(GroupError::UnknownMemberId(member_id)),
        };
        if persisted {
            // The leader's assignment completed the rebalance: as Kafka, answer it once the
            // group's record is replicated, so a coordinator that takes over knows the
            // generation the members were told about.
            if let Err(e) = self.offsets.sync(group_id).await {
                tracing::warn!(group = group_id, error = %e, "group metadata not replicated");
            }
        }
        match reply {
            Reply::Now(r) => r,
            Reply::Later(rx) => {
                self.wait(
                    group_id,
                    rx,
                    || SyncResponse::error(GroupError::UnknownMemberId(member_id.clone())),
                    || SyncResponse::error(GroupError::NotCoordinator(group_id.into())),
                )
                .await
            }
        }
    }

    /// Waits for a Join/Sync answer, applying the group's deadlines as they pass.
    async fn wait<T>(
        &self,
        group_id: &str,
        mut rx: oneshot::Receiver<T>,
        dropped: impl Fn() -> T,
        closed: impl Fn() -> T,
    ) -> T {
        loop {
            let deadline = self.lock().get(group_id).and_then(Group::next_deadline);
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut rx => return r.unwrap_or_else(|_| {
                    // The group went away: unloaded (moved to another coordinator) or removed.
                    if self.check_local(group_id).is_err() { closed() } else { dropped() }
                }),
                _ = self.closed.cancelled() => return closed(),
                _ = timer => self.tick_group(group_id, Instant::now()),
            }
        }
    }

    /// Handles a Heartbeat.
    pub fn heartbeat(
        &self,
        group_id: &str,
        who: &MemberRef,
        generation_id: i32,
    ) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.check_local(group_id)?;
        match self.lock().get_mut(group_id) {
            Some(g) => g.heartbeat(who, generation_id, Instant::now()),
            None => Err(GroupError::UnknownMemberId(who.member_id.clone())),
        }
    }

    /// Handles a LeaveGroup: one result per member, or an error for the whole request.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[MemberRef],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.check_local(group_id)?;
        let now = Instant::now();
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Ok(members
                .iter()
                .map(|m| Err(GroupError::UnknownMemberId(m.member_id.clone())))
                .collect());
        };
        if g.state() == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let results = members.iter().map(|m| g.leave(m, now)).collect();
        self.persist(g);
        tracing::info!(group = group_id, members = ?members.iter().map(|m| &m.member_id).collect::<Vec<_>>(), state = g.state().as_str(), "members left the group");
        Ok(results)
    }

    /// Handles an OffsetCommit: validates the member, stores the offsets, and answers once
    /// they are durable. One result per offset, in request order.
    pub async fn commit_offsets(
        &self,
        req: CommitRequest,
    ) -> Vec<(TopicPartition, Result<(), GroupError>)> {
        let all = |e: GroupError| {
            req.offsets
                .iter()
                .map(|(tp, _)| (tp.clone(), Err(e.clone())))
                .collect::<Vec<_>>()
        };
        if let Err(e) = self.check_local(&req.group_id) {
            return all(e);
        }
        let max = self.config.offset_metadata_max_bytes;
        let now_ms = crate::clock::unix_ms();
        let (accepted, results);
        {
            let mut groups = self.lock();
            let group = match groups.get_mut(&req.group_id) {
                Some(g) => g,
                // Commits from outside the group protocol create the group.
                None if req.generation_id < 0 => groups
                    .entry(req.group_id.clone())
                    .or_insert_with(|| Group::new(&req.group_id, self.config.limits)),
                None => {
                    return all(GroupError::IllegalGeneration {
                        got: req.generation_id,
                        current: -1,
                    })
                }
            };
            if let Err(e) = group.validate_commit(&req.member, req.generation_id, Instant::now()) {
                return all(e);
            }
            (accepted, results) = accept_offsets(&req.offsets, max, now_ms);
            if let Err(e) = self.offsets.put(&req.group_id, &accepted) {
                return all(e);
            }
        }
        if !accepted.is_empty() {
            if let Err(e) = self.offsets.sync(&req.group_id).await {
                tracing::warn!(error = %e, group = %req.group_id, "cannot make committed offsets durable");
                return all(e);
            }
        }
        results
    }

    /// Handles one group of an OffsetFetch: `None` = every committed offset of the group.
    /// An unknown group has no offsets (not an error).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<TopicOffsets>, GroupError> {
        self.check_local(group_id)?;
        match topics {
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                    BTreeMap::new();
                for (tp, o) in self.offsets.group_offsets(group_id)? {
                    by_topic
                        .entry(tp.topic)
                        .or_default()
                        .push((tp.partition, Some(o)));
                }
                Ok(by_topic.into_iter().collect())
            }
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let offsets = partitions
                        .into_iter()
                        .map(|p| {
                            let o = self
                                .offsets
                                .get(group_id, &TopicPartition::new(&topic, p))?;
                            Ok((p, o))
                        })
                        .collect::<Result<Vec<_>, GroupError>>()?;
                    Ok((topic, offsets))
                })
                .collect(),
        }
    }

    /// Handles an OffsetDelete: offsets of topics the group's members still subscribe to
    /// are kept (GROUP_SUBSCRIBED_TO_TOPIC).
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        tps: Vec<TopicPartition>,
    ) -> Result<Vec<(TopicPartition, Result<(), GroupError>)>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.check_local(group_id)?;
        let mut results = Vec::with_capacity(tps.len());
        {
            let groups = self.lock();
            let g = groups
                .get(group_id)
                .filter(|g| g.state() != GroupState::Dead)
                .ok_or_else(|| GroupError::GroupIdNotFound(group_id.to_string()))?;
            if g.state() != GroupState::Empty && g.protocol_type() != Some(CONSUMER_PROTOCOL_TYPE) {
                return Err(GroupError::NonEmptyGroup);
            }
            let subscribed = g.subscribed_topics();
            let mut deletable = Vec::new();
            for tp in tps {
                let used = subscribed.as_ref().is_none_or(|s| s.contains(&tp.topic));
                if used {
                    results.push((tp, Err(GroupError::GroupSubscribedToTopic)));
                } else {
                    deletable.push(tp.clone());
                    results.push((tp, Ok(())));
                }
            }
            self.offsets.remove(group_id, &deletable)?;
        }
        self.offsets.sync(group_id).await?;
        Ok(results)
    }

    /// Describes a group; an unknown group is reported as Dead with no members.
    pub fn describe(&self, group_id: &str) -> Result<GroupDescription, GroupError> {
        self.check_local(group_id)?;
        Ok(match self.lock().get(group_id) {
            Some(g) => g.describe(),
            None => GroupDescription {
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
            },
        })
    }

    /// Every group this broker coordinates, optionally only those in `states`.
    pub fn list(&self, states: &[GroupState]) -> Vec<ListedGroup> {
        let mut out: Vec<ListedGroup> = self
            .lock()
            .values()
            .filter(|g| states.is_empty() || states.contains(&g.state()))
            .map(|g| ListedGroup {
                group_id: g.id().to_string(),
                protocol_type: g.protocol_type().unwrap_or_default().to_string(),
                state: g.state(),
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// Deletes Empty groups and their offsets; groups with members answer NON_EMPTY_GROUP.
    pub async fn delete_groups(&self, ids: &[String]) -> Vec<Result<(), GroupError>> {
        let mut results = Vec::with_capacity(ids.len());
        for id in ids {
            let mut r = self.delete_group(id);
            if r.is_ok() {
                r = self.offsets.sync(id).await;
            }
            results.push(r);
        }
        results
    }

    fn delete_group(&self, id: &str) -> Result<(), GroupError> {
        self.check_local(id)?;
        let mut groups = self.lock();
        let g = groups
            .get_mut(id)
            .filter(|g| g.state() != GroupState::Dead)
            .ok_or_else(|| GroupError::GroupIdNotFound(id.to_string()))?;
        if g.state() != GroupState::Empty {
            return Err(GroupError::NonEmptyGroup);
        }
        self.offsets.remove_group(id)?;
        if g.persisted() {
            self.offsets.put_group(id, None)?;
        }
        g.mark_dead();
        groups.remove(id);
        tracing::info!(group = id, "deleted group");
        Ok(())
    }

    /// Forgets every committed offset of a deleted topic.
    pub fn topic_deleted(&self, topic: &str) -> Result<(), GroupError> {
        self.offsets.remove_topic(topic)
    }

    fn tick_group(&self, group_id: &str, now: Instant) {
        if let Some(g) = self.lock().get_mut(group_id) {
            let removed = g.tick(now);
            log_expired(g, removed);
            self.persist(g);
        }
    }

    /// Applies every timeout due at `now` in every group.
    pub fn tick(&self, now: Instant) {
        let mut groups = self.lock();
        for g in groups.values_mut() {
            if g.next_deadline().is_some_and(|d| d <= now) {
                let removed = g.tick(now);
                log_expired(g, removed);
                self.persist(g);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.lock().values().filter_map(Group::next_deadline).min()
    }

    /// Forgets Empty groups that have no committed offsets (Kafka's periodic cleanup).
    fn remove_unused_groups(&self) {
        let mut groups = self.lock();
        let unused: Vec<String> = groups
            .values()
            .filter(|g| g.state() == GroupState::Empty && g.is_empty())
            .filter(|g| {
                self.offsets
                    .group_offsets(g.id())
                    .is_ok_and(|o| o.is_empty())
            })
            .map(|g| g.id().to_string())
            .collect();
        for id in unused {
            if groups.remove(&id).is_some_and(|g| g.persisted()) {
                if let Err(e) = self.offsets.put_group(&id, None) {
                    tracing::warn!(group = %id, error = %e, "cannot delete group metadata");
                }
            }
        }
    }

    /// Applies session and rebalance timeouts until `shutdown`, then answers every waiting
    /// request with NOT_COORDINATOR.
    pub async fn run_sweeper(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last_cleanup = Instant::now();
        loop {
            let now = Instant::now();
            let wake = self
                .next_deadline()
                .map_or(now + SWEEP_INTERVAL, |d| d.clamp(now, now + SWEEP_INTERVAL));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
            let now = Instant::now();
            self.tick(now);
            if now.duration_since(last_cleanup) >= CLEANUP_INTERVAL {
                last_cleanup = now;
                self.remove_unused_groups();
            }
        }
        self.close();
    }

    /// Stops coordinating: waiting requests and every later request answer NOT_COORDINATOR.
    pub fn close(&self) {
        self.closed.cancel();
    }
}

/// What a commit accepts of its offsets: those whose metadata fits in `max` bytes (a missing
/// commit timestamp set to `now_ms`), and a result per partition in request order
/// (OFFSET_METADATA_TOO_LARGE for the others). Shared by OffsetCommit and TxnOffsetCommit.
pub(super) type Accepted = (
    Vec<(TopicPartition, CommittedOffset)>,
    Vec<(TopicPartition, Result<(), GroupError>)>,
);

pub(super) fn accept_offsets(
    offsets: &[(TopicPartition, CommittedOffset)],
    max: usize,
    now_ms: i64,
) -> Accepted {
    let mut accepted = Vec::with_capacity(offsets.len());
    let mut results = Vec::with_capacity(offsets.len());
    for (tp, o) in offsets {
        if o.metadata.len() > max {
            results.push((
                tp.clone(),
                Err(GroupError::OffsetMetadataTooLarge {
                    len: o.metadata.len(),
                    max,
                }),
            ));
        } else {
            let mut o = o.clone();
            if o.commit_timestamp <= 0 {
                o.commit_timestamp = now_ms;
            }
            accepted.push((tp.clone(), o));
            results.push((tp.clone(), Ok(())));
        }
    }
    (accepted, results)
}

fn log_expired(g: &Group, removed: Vec<String>) {
    if !removed.is_empty() {
        tracing::info!(
            group = g.id(),
            members = ?removed,
            state = g.state().as_str(),
            "removed members whose session or rebalance timeout expired"
        );
    }
}

/// A new member id: the client id and a random UUID, as Kafka forms them.
fn new_member_id(client_id: &str) -> String {
    let u: u128 = rand::random();
    let h = format!("{u:032x}");
    format!(
        "{client_id}-{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::state::Protocol;
    use crate::group::{LocalPlacement, SledOffsetStore};
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn config() -> GroupConfig {
        GroupConfig {
            limits: GroupLimits {
                min_session_timeout_ms: 6_000,
                max_session_timeout_ms: 300_000,
                initial_rebalance_delay: Duration::from_secs(3),
                max_size: 100,
            },
            offset_metadata_max_bytes: 16,
        }
    }

    fn coordinator_on(db: &sled::Db, node: i32) -> Arc<GroupCoordinator> {
        Arc::new(
            GroupCoordinator::open(
                1,
                config(),
                Arc::new(LocalPlacement { node_id: node }),
                Arc::new(SledOffsetStore::open(db).unwrap()),
            )
            .unwrap(),
        )
    }

    fn temp_db() -> sled::Db {
        sled::Config::new().temporary(true).open().unwrap()
    }

    fn subscription(topics: &[&str]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(0);
        ConsumerProtocolSubscription::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| StrBytes::from_string(t.to_string()))
                    .collect(),
            )
            .encode(&mut b, 0)
            .unwrap();
        b.freeze()
    }

    fn join_req(member_id: &str, topics: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 20_000,
            protocol_type: "consumer".into(),
            protocols: vec![Protocol {
                name: "range".into(),
                metadata: subscription(topics),
            }],
            require_known_member_id: true,
        }
    }

    /// Joins with the MEMBER_ID_REQUIRED round trip, as a v4+ client does.
    async fn join(c: &GroupCoordinator, group: &str, topics: &[&str]) -> JoinResponse {
        let first = c.join(group, join_req("", topics)).await;
        assert_eq!(first.error, Some(GroupError::MemberIdRequired));
        assert!(first.member_id.starts_with("client-"));
        c.join(group, join_req(&first.member_id, topics)).await
    }

    fn sync_req(r: &JoinResponse, assignments: Vec<(String, Bytes)>) -> SyncRequest {
        SyncRequest {
            member_id: r.member_id.clone(),
            group_instance_id: None,
            generation_id: r.generation_id,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments,
        }
    }

    fn who(r: &JoinResponse) -> MemberRef {
        MemberRef {
            member_id: r.member_id.clone(),
            group_instance_id: None,
        }
    }

    /// Two members of `group` through join and sync, with the sweeper running.
    async fn stable_pair(c: &Arc<GroupCoordinator>, group: &str) -> (JoinResponse, JoinResponse) {
        let (c1, c2) = (c.clone(), c.clone());
        let (g1, g2) = (group.to_string(), group.to_string());
        let a = tokio::spawn(async move { join(&c1, &g1, &["t"]).await });
        let b = tokio::spawn(async move { join(&c2, &g2, &["t"]).await });
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert_eq!((a.error.clone(), b.error.clone()), (None, None));
        assert_eq!((a.generation_id, b.generation_id), (1, 1));
        let (leader, follower) = if a.leader == a.member_id {
            (a, b)
        } else {
            (b, a)
        };
        assert_eq!(leader.members.len(), 2);
        let c2 = c.clone();
        let (g2, f2) = (group.to_string(), follower.clone());
        let fs = tokio::spawn(async move { c2.sync(&g2, sync_req(&f2, vec![])).await });
        let assignments = vec![
            (leader.member_id.clone(), Bytes::from_static(b"L")),
            (follower.member_id.clone(), Bytes::from_static(b"F")),
        ];
        let ls = c.sync(group, sync_req(&leader, assignments)).await;
        assert_eq!(ls.assignment, Bytes::from_static(b"L"));
        let fs = fs.await.unwrap();
        assert_eq!(fs.assignment, Bytes::from_static(b"F"));
        assert_eq!(fs.protocol_name.as_deref(), Some("range"));
        (leader, follower)
    }

    #[tokio::test(start_paused = true)]
    async fn members_join_sync_and_a_silent_one_is_evicted() {
        let db = temp_db();
        let c = coordinator_on(&db, 1);
        let sweeper = tokio::spawn(c.clone().run_sweeper(CancellationToken::new()));
        let (leader, follower) = stable_pair(&c, "g").await;
        assert_eq!(c.describe("g").unwrap().state, GroupState::Stable);
        // The leader heartbeats every 3 s; the follower has died.
        let mut evicted_after = None;
        let start = Instant::now();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            match c.heartbeat("g", &who(&leader), 1) {
                Ok(()) => {}
                Err(GroupError::RebalanceInProgress) => {
                    evicted_after = Some(start.elapsed());
                    break;
                }
                Err(e) => panic!("unexpected heartbeat error {e}"),
            }
        }
        let after = evicted_after.expect("the follower's session should expire");
        assert!(after >= Duration::from_secs(10) && after <= Duration::from_secs(13));
        let rejoin = c.join("g", join_req(&leader.member_id, &["t"])).await;
        assert_eq!(rejoin.generation_id, 2);
        assert_eq!(rejoin.members.len(), 1);
        assert_eq!(
            c.heartbeat("g", &who(&follower), 1),
            Err(GroupError::UnknownMemberId(follower.member_id.clone()))
        );
        sweeper.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn leave_group_rebalances_at_once() {
        let db = temp_db();
        let c = coordinator_on(&db, 1);
        let (leader, follower) = stable_pair(&c, "g").await;
        let r = c
            .leave(
                "g",
                &[
                    who(&follower),
                    MemberRef {
                        member_id: "ghost".into(),
                        group_instance_id: None,
                    },
                ],
            )
            .unwrap();
        assert_eq!(
            r,
            vec![Ok(()), Err(GroupError::UnknownMemberId("ghost".into()))]
        );
        assert_eq!(
            c.heartbeat("g", &who(&leader), 1),
            Err(GroupError::RebalanceInProgress)
        );
        let t = Instant::now();
        let rejoin = c.join("g", join_req(&leader.member_id, &["t"])).await;
        assert_eq!(t.elapsed(), Duration::ZERO);
        assert_eq!(rejoin.generation_id, 2);
        // Unknown groups: every member is unknown.
        assert_eq!(
            c.leave("nope", &[who(&leader)]).unwrap(),
            vec![Err(GroupError::UnknownMemberId(leader.member_id.clone()))]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_releases_waiting_joins() {
        let db = temp_db();
        let c = coordinator_on(&db, 1);
        let shutdown = CancellationToken::new();
        let sweeper = tokio::spawn(c.clone().run_sweeper(shutdown.clone()));
        let first = c.join("g", join_req("", &["t"])).await;
        let c2 = c.clone();
        let id = first.member_id.clone();
        // Waits in the initial delay; shut down before it ends.
        let waiting = tokio::spawn(async move { c2.join("g", join_req(&id, &["t"])).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        shutdown.cancel();
        sweeper.await.unwrap();
        let r = waiting.await.unwrap();
        assert_eq!(r.error, Some(GroupError::NotCoordinator("g".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn another_brokers_groups_answer_not_coordinator() {
        let db = temp_db();
        let c = coordinator_on(&db, 2);
        assert_eq!(c.coordinator_of("g"), Some(2));
        let r = c.join("g", join_req("", &["t"])).await;
        assert_eq!(r.error, Some(GroupError::NotCoordinator("g".into())));
        assert!(c.fetch_offsets("g", None).is_err());
        assert!(c.describe("g").is_err());
    }

    fn commit(
        group: &str,
        generation: i32,
        member: &str,
        offsets: &[(&str, i32, i64, &str)],
    ) -> CommitRequest {
        CommitRequest {
            group_id: group.into(),
            member: MemberRef {
                member_id: member.into(),
                group_instance_id: None,
            },
            generation_id: generation,
            offsets: offsets
                .iter()
                .map(|(t, p, o, m)| {
                    (
                        TopicPartition::new(*t, *p),
                        CommittedOffset {
                            offset: *o,
                            leader_epoch: -1,
                            metadata: m.to_string(),
                            commit_timestamp: -1,
                        },
                    )
                })
                .collect(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn admin_commits_fetch_and_delete_on_an_empty_group() {
        let db = temp_db();
        let c = coordinator_on(&db, 1);
        let r = c
            .commit_offsets(commit(
                "g",
                -1,
                "",
                &[("t", 0, 5, "x"), ("t", 1, 7, "far too long metadata")],
            ))
            .await;
        assert_eq!(r[0].1, Ok(()));
        assert!(matches!(
            r[1].1,
            Err(GroupError::OffsetMetadataTooLarge { .. })
        ));
        // Generation ≥ 0 on a group that does not exist: refused.
        let r = c
            .commit_offsets(commit("other", 3, "m", &[("t", 0, 1, "")]))
            .await;
        assert!(matches!(r[0].1, Err(GroupError::IllegalGeneration { .. })));
        let all = c.fetch_offsets("g", None).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1.len(), 1);
        assert_eq!(
            all[0].1[0]
                .1
                .as_ref()
                .map(|o| (o.offset, o.metadata.as_str())),
            Some((5, "x"))
        );
        assert!(all[0].1[0]
            .1
            .as_ref()
            .is_some_and(|o| o.commit_timestamp > 0));
        let some = c
            .fetch_offsets("g", Some(vec![("t".into(), vec![0, 1])]))
            .unwrap();
        assert_eq!(some[0].1[1], (1, None));
        assert_eq!(
            c.list(&[]),
            vec![ListedGroup {
                group_id: "g".into(),
                protocol_type: String::new(),
                state: GroupState::Empty
            }]
        );
        assert!(c.list(&[GroupState::Stable]).is_empty());
        assert_eq!(
            c.delete_groups(&["g".into(), "missing".into()]).await,
            vec![Ok(()), Err(GroupError::GroupIdNotFound("missing".into()))]
        );
        assert!(c.fetch_offsets("g", None).unwrap().is_empty());
        assert_eq!(c.describe("g").unwrap().state, GroupState::Dead);
    }

    #[tokio::test(start_paused = true)]
    async fn members_commit_with_their_generation_and_non_empty_groups_stay() {
        let db = temp_db();
        let c = coordinator_on(&db, 1);
        let (leader, _follower) = stable_pair(&c, "g").await;
        let ok = c
            .commit_offsets(commit(
                "g",
                1,
                &leader.member_id,
                &[("t", 0, 10, ""), ("u", 0, 3, "")],
            ))
            .await;
        assert!(ok.iter().all(|(_, r)| r.is_ok()));
        let stale = c
            .commit_offsets(commit("g", 0, &leader.member_id, &[("t", 0, 11, "")]))
            .await;
        assert!(matches!(
            stale[0].1,
            Err(GroupError::IllegalGeneration { .. })
        ));
        let admin = c
            .commit_offsets(commit("g", -1, "", &[("t", 0, 0, "")]))
            .await;
        assert!(matches!(admin[0].1, Err(GroupError::UnknownMemberId(_))));
        assert_eq!(
            c.delete_groups(&["g".into()]).await,
            vec![Err(GroupError::NonEmptyGroup)]
        );
        // OffsetDelete: `t` is subscribed, `u` is not.
        let r = c
            .delete_offsets(
                "g",
                vec![TopicPartition::new("t", 0), TopicPartition::new("u", 0)],
            )
            .await
            .unwrap();
        assert_eq!(r[0].1, Err(GroupError::GroupSubscribedToTopic));
        assert_eq!(r[1].1, Ok(()));
        let left = c.fetch_offsets("g", None).unwrap();
        assert_eq!(
            left.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
            vec!["t"]
        );
        assert_eq!(
            c.delete_offsets("nope", vec![]).await,
            Err(GroupError::GroupIdNotFound("nope".into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn committed_offsets_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let c = coordinator_on(&db, 1);
            let r = c
                .commit_offsets(commit("g", -1, "", &[("t", 2, 42, "m")]))
                .await;
            assert_eq!(r[0].1, Ok(()));
        }
        let db = crate::log::reopen::sled_when_unlocked(dir.path());
        let c = coordinator_on(&db, 1);
        assert_eq!(c.list(&[GroupState::Empty]).len(), 1);
        let got = c
            .fetch_offsets("g", Some(vec![("t".into(), vec![2])]))
            .unwrap();
        assert_eq!(got[0].1[0].1.as_ref().map(|o| o.offset), Some(42));
        c.topic_deleted("t").unwrap();
        assert!(c.fetch_offsets("g", None).unwrap().is_empty());
    }
}
