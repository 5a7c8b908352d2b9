//! The per-partition part that OffsetCommit and TxnOffsetCommit share: which partitions of a
//! request may be committed (authorized, existing) and the error code of each, then the
//! coordinator's results folded back into those codes, in request order.
//!
//! May depend on: `metadata` (the image's topics), `group` (offsets and their errors),
//! `api::errors`. The two handlers keep their own request fields, authorization and
//! coordinator call.

use super::errors::{code, group_code, NONE};
use crate::group::{CommittedOffset, GroupError, TopicPartition};
use crate::metadata::ClusterImage;
use kafka_protocol::messages::TopicName;
use kafka_protocol::ResponseError;

/// A commit request sorted into what to commit and what to answer.
pub struct CommitPlan {
    /// Per topic, in request order: its name and `(partition, error code)` of each partition.
    pub topics: Vec<(TopicName, Vec<(i32, i16)>)>,
    /// The offsets to hand to the coordinator.
    pub offsets: Vec<(TopicPartition, CommittedOffset)>,
    /// For each of `offsets`, its (topic, partition) index in `topics`.
    slots: Vec<(usize, usize)>,
}

impl CommitPlan {
    /// Sorts `topics` (name, partitions): a topic `denied` gives a code for answers that code
    /// for every partition; a partition the image does not hold answers
    /// UNKNOWN_TOPIC_OR_PARTITION; the others are committed, `offset` giving each partition's
    /// index and offset.
    pub fn new<P>(
        image: &ClusterImage,
        topics: impl IntoIterator<Item = (TopicName, Vec<P>)>,
        mut denied: impl FnMut(&str) -> Option<i16>,
        offset: impl Fn(P) -> (i32, CommittedOffset),
    ) -> Self {
        let mut plan = Self {
            topics: Vec::new(),
            offsets: Vec::new(),
            slots: Vec::new(),
        };
        for (ti, (name, partitions)) in topics.into_iter().enumerate() {
            let meta = image.topics.get(name.0.as_str());
            let denied = denied(name.0.as_str());
            let mut parts = Vec::with_capacity(partitions.len());
            for (pi, p) in partitions.into_iter().enumerate() {
                let (index, committed) = offset(p);
                if let Some(error) = denied {
                    parts.push((index, error));
                    continue;
                }
                let exists = meta
                    .is_some_and(|m| usize::try_from(index).is_ok_and(|i| i < m.partitions.len()));
                if !exists {
                    parts.push((index, code(ResponseError::UnknownTopicOrPartition)));
                    continue;
                }
                parts.push((index, NONE));
                plan.slots.push((ti, pi));
                plan.offsets
                    .push((TopicPartition::new(name.0.as_str(), index), committed));
            }
            plan.topics.push((name, parts));
        }
        plan
    }

    /// The offsets to commit, taken out (empty: nothing to commit).
    pub fn take_offsets(&mut self) -> Vec<(TopicPartition, CommittedOffset)> {
        std::mem::take(&mut self.offsets)
    }

    /// Folds the coordinator's results (one per offset taken, in order) into the codes.
    pub fn apply(&mut self, results: Vec<(TopicPartition, Result<(), GroupError>)>) {
        for ((ti, pi), (_, r)) in self.slots.iter().zip(results) {
            if let Err(e) = r {
                self.topics[*ti].1[*pi].1 = group_code(&e);
            }
        }
    }
}
