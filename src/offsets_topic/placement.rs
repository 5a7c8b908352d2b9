//! Which broker coordinates a group: the leader of the group's `__consumer_offsets`
//! partition, `abs(hashCode(group)) % partitions` as Kafka computes it.
//!
//! May depend on: `group` (the `Placement` trait), `metadata`, `raft` (the applied image).

use tokio::sync::watch;

use super::OFFSETS_TOPIC;
use crate::group::Placement;
use crate::metadata::ClusterImage;
use crate::raft::AppliedImage;

/// Java's `String.hashCode` (over UTF-16 code units).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The offsets partition of a group: `Utils.abs(hashCode) % partitions`, as Kafka computes it
/// (`abs(Integer.MIN_VALUE)` is 0 there).
pub fn partition_for(group: &str, partitions: usize) -> i32 {
    let h = java_string_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    (abs as usize % partitions.max(1)) as i32
}

/// Partitions of `__consumer_offsets`; `None` before the topic exists.
pub(super) fn offsets_partition_count(image: &ClusterImage) -> Option<usize> {
    image
        .topics
        .get(OFFSETS_TOPIC)
        .map(|t| t.partitions.len())
        .filter(|n| *n > 0)
}

/// Coordinator = leader of the group's offsets partition (see the module documentation).
pub struct OffsetsTopicPlacement {
    pub images: watch::Receiver<AppliedImage>,
}

impl Placement for OffsetsTopicPlacement {
    fn coordinator_of(&self, group_id: &str) -> Option<i32> {
        let image = self.images.borrow().image.clone();
        let n = offsets_partition_count(&image)?;
        let p = &image.topics[OFFSETS_TOPIC].partitions[partition_for(group_id, n) as usize];
        image
            .brokers
            .get(&p.leader)
            .filter(|b| !b.fenced)
            .map(|b| b.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_hash_is_javas_string_hash_code() {
        // Values of java.lang.String#hashCode, so every broker (and Kafka) agrees.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("console-consumer-12345"), 158_455_506);
        assert_eq!(java_string_hash("é"), 233);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE; Kafka's Utils.abs makes it 0.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 10), 0);
        assert_eq!(partition_for("hello", 10), 2);
    }
}
