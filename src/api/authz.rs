//! The authorization calls of the API handlers: one small function per question ("may this
//! request's principal WRITE topic t?"), answered by the request's [`Access`] service
//! (`crate::access`: `security::authorizer` with the ACLs of this broker's metadata image).
//! Each takes only the request's context, which carries the service: a handler needs no
//! `Broker` to authorize.
//!
//! May depend on: `access`, `security`, `offsets_topic`, `txn` (the internal topics' names).

use kafka_protocol::ResponseError;

use super::errors::code;
use crate::access::{Access, Asker};
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

use super::RequestContext;

/// Who sent the request, as the authorizer compares it (the host as `127.0.0.1`).
fn asker(ctx: &RequestContext) -> Asker<'_> {
    Asker {
        principal: &ctx.principal,
        host: ctx.client_host.trim_start_matches('/'),
    }
}

fn access(ctx: &RequestContext) -> &Access {
    &ctx.access
}

/// Whether the request's principal may perform `op` on `(rt, name)`.
pub fn allowed(ctx: &RequestContext, op: Operation, rt: ResourceType, name: &str) -> bool {
    access(ctx).allowed(asker(ctx), op, rt, name)
}

/// `op` on topic `name`.
pub fn topic(ctx: &RequestContext, op: Operation, name: &str) -> bool {
    allowed(ctx, op, ResourceType::Topic, name)
}

/// `op` on consumer group `name`.
pub fn group(ctx: &RequestContext, op: Operation, name: &str) -> bool {
    allowed(ctx, op, ResourceType::Group, name)
}

/// `op` on the cluster.
pub fn cluster(ctx: &RequestContext, op: Operation) -> bool {
    allowed(ctx, op, ResourceType::Cluster, CLUSTER_NAME)
}

/// `op` on transactional id `id`.
pub fn transactional_id(ctx: &RequestContext, op: Operation, id: &str) -> bool {
    allowed(ctx, op, ResourceType::TransactionalId, id)
}

/// `op` on at least one resource of type `rt` (Kafka's `authorizeByResourceType`).
pub fn any_of_type(ctx: &RequestContext, op: Operation, rt: ResourceType) -> bool {
    access(ctx).allowed_on_any(asker(ctx), op, rt)
}

/// Creating topic `name`: CREATE on the cluster or on the topic (as Kafka checks it).
pub fn create_topic(ctx: &RequestContext, name: &str) -> bool {
    cluster(ctx, Operation::Create) || topic(ctx, Operation::Create, name)
}

/// KIP-430's bit set of the operations of `supported` the principal may perform on
/// `(rt, name)`: every supported one without an authorizer.
pub fn operations(
    ctx: &RequestContext,
    rt: ResourceType,
    name: &str,
    supported: &[Operation],
) -> i32 {
    access(ctx).operations(asker(ctx), rt, name, supported)
}

/// Whether `name` is an internal topic no client may delete, re-partition or reconfigure.
pub fn is_internal_topic(name: &str) -> bool {
    name == crate::offsets_topic::OFFSETS_TOPIC || name == crate::txn::TXN_TOPIC
}

/// Produce: TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every partition when the request has a
/// transactional id the principal may not WRITE.
pub fn produce_transactional_id_denied(
    ctx: &RequestContext,
    req: &kafka_protocol::messages::ProduceRequest,
) -> Option<i16> {
    let id = req.transactional_id.as_ref()?;
    (!transactional_id(ctx, Operation::Write, &id.0))
        .then(|| code(ResponseError::TransactionalIdAuthorizationFailed))
}

/// Produce to topic `name`: WRITE, else TOPIC_AUTHORIZATION_FAILED.
pub fn produce_topic(ctx: &RequestContext, name: &str) -> Result<(), i16> {
    if topic(ctx, Operation::Write, name) {
        Ok(())
    } else {
        Err(code(ResponseError::TopicAuthorizationFailed))
    }
}

/// CreatePartitions on topic `name`: ALTER, else TOPIC_AUTHORIZATION_FAILED; never on an
/// internal topic (INVALID_REQUEST). `None` when allowed.
pub fn alter_topic_refusal(ctx: &RequestContext, name: &str) -> Option<(i16, String)> {
    if !topic(ctx, Operation::Alter, name) {
        return Some((
            code(ResponseError::TopicAuthorizationFailed),
            "Authorization failed: ALTER on the topic is required".to_string(),
        ));
    }
    is_internal_topic(name).then(|| {
        (
            code(ResponseError::InvalidRequest),
            format!("{name} is an internal topic: its partitions cannot be changed by clients"),
        )
    })
}

/// Authorization of a config resource (DescribeConfigs, AlterConfigs,
/// IncrementalAlterConfigs): `op` on the topic for a topic (TOPIC_AUTHORIZATION_FAILED), on
/// the cluster for a broker (CLUSTER_AUTHORIZATION_FAILED). `None` when allowed (or the type
/// is unknown: the caller refuses that itself).
pub fn config_refusal(
    ctx: &RequestContext,
    resource_type: i8,
    name: &str,
    op: Operation,
) -> Option<(ResponseError, String)> {
    let verb = if op == Operation::AlterConfigs {
        "ALTER_CONFIGS"
    } else {
        "DESCRIBE_CONFIGS"
    };
    match resource_type {
        super::config_resources::TOPIC if !topic(ctx, op, name) => Some((
            ResponseError::TopicAuthorizationFailed,
            format!("Authorization failed: {verb} on topic {name} is required"),
        )),
        super::config_resources::BROKER if !cluster(ctx, op) => Some((
            ResponseError::ClusterAuthorizationFailed,
            format!("Authorization failed: {verb} on the cluster is required"),
        )),
        _ => None,
    }
}

/// GROUP_AUTHORIZATION_FAILED's code.
pub fn group_denied() -> i16 {
    code(ResponseError::GroupAuthorizationFailed)
}

/// TOPIC_AUTHORIZATION_FAILED's code.
pub fn topic_denied() -> i16 {
    code(ResponseError::TopicAuthorizationFailed)
}
