//! FindCoordinator (key 10): which broker coordinates a group or a transactional id. v4
//! answers a batch of keys. Groups (key type 0) are placed by the group coordinator's
//! `Placement` (in a cluster: the leader of the group's `__consumer_offsets` partition; the
//! first lookup creates the topic); transactional ids (key type 1) by the leader of their
//! `__transaction_state` partition (the first lookup creates that topic, see `txn`).

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::{code, NONE};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::security::acl::Operation;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// The answer for one key.
struct Found {
    node_id: i32,
    host: String,
    port: i32,
    error: i16,
    message: Option<String>,
}

impl Found {
    fn error(error: ResponseError, message: &str) -> Self {
        Self {
            node_id: -1,
            host: String::new(),
            port: -1,
            error: code(error),
            message: Some(message.to_string()),
        }
    }
}

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let v = ctx.api_version;
    if v >= 4 {
        let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
        for key in req.coordinator_keys {
            coordinators.push({
                let f = lookup(broker, ctx, &key, req.key_type).await;
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(f.node_id))
                    .with_host(StrBytes::from_string(f.host))
                    .with_port(f.port)
                    .with_error_code(f.error)
                    .with_error_message(f.message.map(StrBytes::from_string))
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let f = lookup(broker, ctx, &req.key, req.key_type).await;
    let resp = FindCoordinatorResponse::default()
        .with_error_code(f.error)
        .with_node_id(BrokerId(f.node_id))
        .with_host(StrBytes::from_string(f.host))
        .with_port(f.port);
    if v >= 1 {
        resp.with_error_message(f.message.map(StrBytes::from_string))
    } else {
        resp
    }
}

async fn lookup(broker: &Broker, ctx: &RequestContext, key: &str, key_type: i8) -> Found {
    match key_type {
        GROUP if !authz::group(ctx, Operation::Describe, key) => {
            return Found::error(
                ResponseError::GroupAuthorizationFailed,
                "Authorization failed: DESCRIBE on the group is required",
            )
        }
        GROUP => {}
        TRANSACTION if !authz::transactional_id(ctx, Operation::Describe, key) => {
            return Found::error(
                ResponseError::TransactionalIdAuthorizationFailed,
                "Authorization failed: DESCRIBE on the transactional id is required",
            )
        }
        TRANSACTION => return transaction_coordinator(broker, ctx, key).await,
        _ => {
            return Found::error(
                ResponseError::InvalidRequest,
                "unknown coordinator key type",
            )
        }
    }
    if broker.metadata.quorum().is_some() {
        // The first lookup in a cluster creates the offsets topic (as Kafka does); its
        // partitions have leaders a moment later, until then clients retry.
        if let Err(e) = broker.topics.ensure_offsets_topic().await {
            tracing::debug!(error = %e, "cannot create the offsets topic yet");
            return Found::error(
                ResponseError::CoordinatorNotAvailable,
                "the offsets topic cannot be created yet",
            );
        }
    }
    let Some(node) = broker.groups.coordinator_of(key) else {
        return Found::error(
            ResponseError::CoordinatorNotAvailable,
            "no broker coordinates this group yet",
        );
    };
    address_of(broker, ctx, node)
}

/// The leader of the `__transaction_state` partition of transactional id `key`.
async fn transaction_coordinator(broker: &Broker, ctx: &RequestContext, key: &str) -> Found {
    let topic = match broker.topics.ensure_txn_topic().await {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(error = %e, "cannot create the transaction state topic yet");
            return Found::error(
                ResponseError::CoordinatorNotAvailable,
                "the transaction state topic cannot be created yet",
            );
        }
    };
    let p = crate::txn::partition_for(key, topic.partitions.len());
    let leader = usize::try_from(p)
        .ok()
        .and_then(|i| topic.partitions.get(i))
        .map(|m| m.leader);
    let image = broker.metadata.image();
    match leader.filter(|l| image.brokers.get(l).is_some_and(|b| !b.fenced)) {
        Some(node) => address_of(broker, ctx, node),
        None => Found::error(
            ResponseError::CoordinatorNotAvailable,
            "the transactional id's __transaction_state partition has no leader yet",
        ),
    }
}

/// Where clients reach broker `node` on the request's listener.
fn address_of(broker: &Broker, ctx: &RequestContext, node: i32) -> Found {
    let image = broker.metadata.image();
    match image
        .brokers
        .get(&node)
        .and_then(|b| b.endpoint(ctx.listener.as_deref()))
    {
        Some((host, port)) => Found {
            node_id: node,
            host: host.to_string(),
            port,
            error: NONE,
            message: None,
        },
        None => Found::error(
            ResponseError::CoordinatorNotAvailable,
            "the coordinating broker is not registered or has no address on this listener",
        ),
    }
}
