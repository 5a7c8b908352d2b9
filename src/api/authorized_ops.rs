//! The operations a principal may perform on a resource (KIP-430), as the bit set that
//! DescribeCluster, Metadata and DescribeGroups return when asked with
//! `include_*_authorized_operations`. Bit `n` stands for Kafka's `AclOperation` code `n`.
//!
//! The supported operations per resource type are Kafka's `AclEntry.supportedOperations`;
//! of those, the set holds what the authorizer allows the request's principal (every one
//! when no `authorizer.class.name` is set, as Kafka answers). Depends on `api::authz`.

use super::authz;
use super::RequestContext;
use crate::security::acl::Operation::{self, *};
use crate::security::acl::{ResourceType, CLUSTER_NAME};

/// The cluster resource: 7 operations.
pub const CLUSTER_OPS: &[Operation] = &[
    Create,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
];

/// A topic: 8 operations.
pub const TOPIC_OPS: &[Operation] = &[
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    DescribeConfigs,
    AlterConfigs,
];

/// A consumer group: 3 operations.
pub const GROUP_OPS: &[Operation] = &[Read, Delete, Describe];

/// What the response carries when the request did not ask (Kafka's `Integer.MIN_VALUE`).
pub const NOT_REQUESTED: i32 = i32::MIN;

/// The cluster's authorized operations for the request's principal.
pub fn cluster(ctx: &RequestContext) -> i32 {
    authz::operations(ctx, ResourceType::Cluster, CLUSTER_NAME, CLUSTER_OPS)
}

/// Topic `name`'s authorized operations for the request's principal.
pub fn topic(ctx: &RequestContext, name: &str) -> i32 {
    authz::operations(ctx, ResourceType::Topic, name, TOPIC_OPS)
}

/// Group `name`'s authorized operations for the request's principal.
pub fn group(ctx: &RequestContext, name: &str) -> i32 {
    authz::operations(ctx, ResourceType::Group, name, GROUP_OPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(ops: &[Operation]) -> i32 {
        ops.iter().fold(0, |s, o| s | (1 << o.code()))
    }

    #[test]
    fn sets_have_kafkas_sizes_and_codes() {
        assert_eq!(bits(CLUSTER_OPS).count_ones(), 7);
        assert_eq!(bits(TOPIC_OPS).count_ones(), 8);
        // READ(3) | DELETE(6) | DESCRIBE(8)
        assert_eq!(bits(GROUP_OPS), 0b1_0100_1000);
        // No set claims UNKNOWN(0), ANY(1) or ALL(2): those are filters, not operations.
        assert_eq!(
            (bits(CLUSTER_OPS) | bits(TOPIC_OPS) | bits(GROUP_OPS)) & 0b111,
            0
        );
    }
}
