//! TxnOffsetCommit (KIP-98/447) in the coordinator: the membership check, then the offsets
//! go to the store as pending transactional offsets (`group::txn_offsets`), answered once
//! they are durable; and which partitions of a group have pending ones (OffsetFetch with
//! `require_stable`).

use super::{accept_offsets, Group, GroupCoordinator};
use crate::group::offsets::{CommittedOffset, TopicPartition};
use crate::group::state::MemberRef;
use crate::group::GroupError;

/// A TxnOffsetCommit request.
#[derive(Debug, Clone)]
pub struct TxnCommitRequest {
    pub group_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Empty member id and generation -1 before v3 (and for producers outside the group).
    pub member: MemberRef,
    pub generation_id: i32,
    /// Offsets with `commit_timestamp` ≤ 0 are stamped with the current time.
    pub offsets: Vec<(TopicPartition, CommittedOffset)>,
}

impl GroupCoordinator {
    /// Handles a TxnOffsetCommit: per partition, stored (pending until the transaction
    /// commits) or why not.
    pub async fn commit_txn_offsets(
        &self,
        req: TxnCommitRequest,
    ) -> Vec<(TopicPartition, Result<(), GroupError>)> {
        let all = |e: GroupError| {
            req.offsets
                .iter()
                .map(|(tp, _)| (tp.clone(), Err(e.clone())))
                .collect::<Vec<_>>()
        };
        if req.group_id.is_empty() {
            return all(GroupError::InvalidGroupId);
        }
        if let Err(e) = self.check_local(&req.group_id) {
            return all(e);
        }
        let max = self.config.offset_metadata_max_bytes;
        let now_ms = crate::clock::unix_ms();
        let (accepted, results);
        {
            let mut groups = self.lock();
            // As in Kafka, a transactional commit creates the group when it is unknown.
            let group = groups
                .entry(req.group_id.clone())
                .or_insert_with(|| Group::new(&req.group_id, self.config.limits));
            if let Err(e) = group.validate_txn_commit(&req.member, req.generation_id) {
                return all(e);
            }
            (accepted, results) = accept_offsets(&req.offsets, max, now_ms);
            if let Err(e) = self.offsets.put_txn(
                &req.group_id,
                req.producer_id,
                req.producer_epoch,
                &accepted,
            ) {
                return all(e);
            }
        }
        if !accepted.is_empty() {
            if let Err(e) = self.offsets.sync(&req.group_id).await {
                tracing::warn!(error = %e, group = %req.group_id, "cannot make transactional offsets durable");
                return all(e);
            }
        }
        results
    }

    /// Ends `producer_id`'s transaction in a store without an offsets topic (a single
    /// broker; see [`crate::group::OffsetStore::end_txn`]); false when markers reach the
    /// store through `__consumer_offsets` instead.
    pub fn end_txn_without_topic(&self, producer_id: i64, commit: bool) -> bool {
        match self.offsets.end_txn(producer_id, commit) {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(producer_id, error = %e, "cannot end the transaction's offsets");
                false
            }
        }
    }

    /// The partitions of `group_id` with transactional offsets waiting for their transaction.
    pub fn pending_txn_offsets(&self, group_id: &str) -> Result<Vec<TopicPartition>, GroupError> {
        self.check_local(group_id)?;
        self.offsets.pending_txn(group_id)
    }
}
