//! Shared by AlterConfigs and IncrementalAlterConfigs: resource types as Kafka numbers them,
//! and running one resource's change through the metadata quorum with its result mapped to
//! the error code and message Kafka clients expect.

use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::{code, topics_code};
use super::{authz, RequestContext};
use crate::metadata::config_ops::{ConfigOp, ConfigResource};
use crate::security::acl::Operation;
use crate::topics::Topics;

/// Kafka's ConfigResource.Type values.
pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;

/// The error code and message of one resource's result (0 and no message on success).
pub type ResourceOutcome = (i16, Option<StrBytes>);

fn failure(e: ResponseError, msg: String) -> ResourceOutcome {
    (code(e), Some(StrBytes::from_string(msg)))
}

/// Parses a resource as a request names it.
pub fn resource(resource_type: i8, name: &str) -> Result<ConfigResource, ResourceOutcome> {
    match resource_type {
        TOPIC => Ok(ConfigResource::Topic(name.to_string())),
        BROKER if name.is_empty() => Ok(ConfigResource::Broker(None)),
        BROKER => name
            .parse::<i32>()
            .map(|id| ConfigResource::Broker(Some(id)))
            .map_err(|_| {
                failure(
                    ResponseError::InvalidRequest,
                    format!("broker resource name '{name}' is not a broker id"),
                )
            }),
        other => Err(failure(
            ResponseError::InvalidRequest,
            format!("resource type {other} is not supported (only topics (2) and brokers (4))"),
        )),
    }
}

/// Parses a resource an alter request names, once the principal may ALTER_CONFIGS it
/// (TOPIC_AUTHORIZATION_FAILED / CLUSTER_AUTHORIZATION_FAILED otherwise). An internal
/// topic's configs are not for clients to change (INVALID_REQUEST).
pub fn alterable_resource(
    ctx: &RequestContext,
    resource_type: i8,
    name: &str,
) -> Result<ConfigResource, ResourceOutcome> {
    if let Some((e, msg)) = authz::config_refusal(ctx, resource_type, name, Operation::AlterConfigs)
    {
        return Err(failure(e, msg));
    }
    if resource_type == TOPIC && authz::is_internal_topic(name) {
        return Err(failure(
            ResponseError::InvalidRequest,
            format!("{name} is an internal topic: its configs cannot be changed by clients"),
        ));
    }
    resource(resource_type, name)
}

/// Applies (or with `validate_only` only checks) one resource's operations.
pub async fn alter(
    topics: &Topics,
    resource: ConfigResource,
    ops: Vec<(String, ConfigOp)>,
    replace: bool,
    validate_only: bool,
) -> ResourceOutcome {
    match topics
        .alter_configs(resource, ops, replace, validate_only)
        .await
    {
        Ok(()) => (0, None),
        Err(e) => (topics_code(&e), Some(StrBytes::from_string(e.to_string()))),
    }
}
