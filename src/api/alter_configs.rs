//! AlterConfigs (key 33): replaces every config override of a topic, or the dynamic settings
//! of a broker (resource name = its id) or of every broker (resource name ""), through the
//! metadata quorum. Keys that are not set in the request go back to their defaults.

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::config_resources::{alter, alterable_resource};
use super::RequestContext;
use crate::metadata::config_ops::ConfigOp;
use crate::metadata::MetadataError;
use crate::topics::Topics;

pub async fn handle(
    topics: &Topics,
    ctx: &RequestContext,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let (error_code, error_message) =
            match alterable_resource(ctx, r.resource_type, &r.resource_name) {
                Err(outcome) => outcome,
                Ok(res) => {
                    let ops: Result<Vec<(String, ConfigOp)>, MetadataError> = r
                        .configs
                        .iter()
                        .map(|c| match &c.value {
                            Some(v) => Ok((c.name.to_string(), ConfigOp::Set(v.to_string()))),
                            None => Err(MetadataError::InvalidConfig {
                                key: c.name.to_string(),
                                reason: "the value is null".into(),
                            }),
                        })
                        .collect();
                    match ops {
                        Ok(ops) => alter(topics, res, ops, true, req.validate_only).await,
                        Err(e) => (
                            super::errors::metadata_code(&e),
                            Some(kafka_protocol::protocol::StrBytes::from_string(
                                e.to_string(),
                            )),
                        ),
                    }
                }
            };
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(error_code)
                .with_error_message(error_message)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}
