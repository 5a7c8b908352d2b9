//! IncrementalAlterConfigs (key 44): SET (0), DELETE (1), APPEND (2) and SUBTRACT (3) per
//! key, for topics and brokers' dynamic settings, applied through the metadata quorum as one
//! command per resource (all of a resource's operations take effect, or none).

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::config_resources::{alter, alterable_resource, ResourceOutcome};
use super::errors::code;
use super::RequestContext;
use crate::metadata::config_ops::ConfigOp;
use crate::topics::Topics;

fn op(name: &str, operation: i8, value: Option<&StrBytes>) -> Result<ConfigOp, ResourceOutcome> {
    let need = |v: Option<&StrBytes>| {
        v.map(|s| s.to_string()).ok_or_else(|| {
            (
                code(ResponseError::InvalidConfig),
                Some(StrBytes::from_string(format!(
                    "invalid value for config '{name}': the value is null"
                ))),
            )
        })
    };
    Ok(match operation {
        0 => ConfigOp::Set(need(value)?),
        1 => ConfigOp::Delete,
        2 => ConfigOp::Append(need(value)?),
        3 => ConfigOp::Subtract(need(value)?),
        other => {
            return Err((
                code(ResponseError::InvalidRequest),
                Some(StrBytes::from_string(format!(
                    "unknown config operation {other} for '{name}' (0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT)"
                ))),
            ))
        }
    })
}

pub async fn handle(
    topics: &Topics,
    ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let parsed = alterable_resource(ctx, r.resource_type, &r.resource_name).and_then(|res| {
            let ops = r
                .configs
                .iter()
                .map(|c| {
                    op(&c.name, c.config_operation, c.value.as_ref())
                        .map(|o| (c.name.to_string(), o))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((res, ops))
        });
        let (error_code, error_message) = match parsed {
            Err(outcome) => outcome,
            Ok((res, ops)) => alter(topics, res, ops, false, req.validate_only).await,
        };
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(error_code)
                .with_error_message(error_message)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
