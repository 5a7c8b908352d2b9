//! The operations a principal may perform on a resource (KIP-430), as the bit set that
//! DescribeCluster, Metadata and DescribeGroups return when asked with
//! `include_*_authorized_operations`. Bit `n` stands for Kafka's `AclOperation` code `n`.
//!
//! raftka has no authorizer yet, so every principal may perform every operation a resource
//! type supports — what Kafka answers when no `authorizer.class.name` is set. The sets are
//! Kafka's `AclEntry.supportedOperations` per resource type. Depends on nothing.

/// Kafka's `AclOperation` codes of the operations these sets use.
mod op {
    pub const READ: u8 = 3;
    pub const WRITE: u8 = 4;
    pub const CREATE: u8 = 5;
    pub const DELETE: u8 = 6;
    pub const ALTER: u8 = 7;
    pub const DESCRIBE: u8 = 8;
    pub const CLUSTER_ACTION: u8 = 9;
    pub const DESCRIBE_CONFIGS: u8 = 10;
    pub const ALTER_CONFIGS: u8 = 11;
    pub const IDEMPOTENT_WRITE: u8 = 12;
}

const fn bits(ops: &[u8]) -> i32 {
    let mut set = 0i32;
    let mut i = 0;
    while i < ops.len() {
        set |= 1 << ops[i];
        i += 1;
    }
    set
}

/// The cluster resource: 7 operations.
pub const CLUSTER: i32 = bits(&[
    op::CREATE,
    op::ALTER,
    op::DESCRIBE,
    op::CLUSTER_ACTION,
    op::DESCRIBE_CONFIGS,
    op::ALTER_CONFIGS,
    op::IDEMPOTENT_WRITE,
]);

/// A topic: 8 operations.
pub const TOPIC: i32 = bits(&[
    op::READ,
    op::WRITE,
    op::CREATE,
    op::DELETE,
    op::ALTER,
    op::DESCRIBE,
    op::DESCRIBE_CONFIGS,
    op::ALTER_CONFIGS,
]);

/// A consumer group: 3 operations.
pub const GROUP: i32 = bits(&[op::READ, op::DELETE, op::DESCRIBE]);

/// What the response carries when the request did not ask (Kafka's `Integer.MIN_VALUE`).
pub const NOT_REQUESTED: i32 = i32::MIN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_have_kafkas_sizes_and_codes() {
        assert_eq!(CLUSTER.count_ones(), 7);
        assert_eq!(TOPIC.count_ones(), 8);
        assert_eq!(GROUP.count_ones(), 3);
        // READ(3) | DELETE(6) | DESCRIBE(8)
        assert_eq!(GROUP, 0b1_0100_1000);
        // No set claims UNKNOWN(0), ANY(1) or ALL(2): those are filters, not operations.
        assert_eq!((CLUSTER | TOPIC | GROUP) & 0b111, 0);
    }
}
