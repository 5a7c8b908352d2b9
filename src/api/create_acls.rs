//! CreateAcls (key 30): adds ACLs to the metadata quorum, so every broker enforces them once
//! it has applied the change. Needs ALTER on the cluster; without an authorizer Kafka answers
//! SECURITY_DISABLED, and so does raftka. Each creation is validated on its own (INVALID_REQUEST
//! with Kafka's message); the valid ones are committed together as one metadata command.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::{code, metadata_code};
use super::{acl_access, RequestContext};
use crate::metadata::MetadataCommand;
use crate::metadata_source::MetadataSource;
use crate::security::acl::{AclBinding, Operation};

fn failed(e: ResponseError, msg: String) -> AclCreationResult {
    AclCreationResult::default()
        .with_error_code(code(e))
        .with_error_message(Some(StrBytes::from_string(msg)))
}

pub async fn handle(
    metadata: &MetadataSource,
    ctx: &RequestContext,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    if let Err((e, msg)) = acl_access(ctx, Operation::Alter) {
        let results = req
            .creations
            .iter()
            .map(|_| failed(e, msg.clone()))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    // v0 has no pattern type: LITERAL (the codec fills in 3).
    let parsed: Vec<Result<AclBinding, String>> = req
        .creations
        .iter()
        .map(|c| {
            AclBinding::from_codes(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
            .map_err(|e| e.to_string())
        })
        .collect();
    let acls: Vec<AclBinding> = parsed.iter().filter_map(|r| r.clone().ok()).collect();
    let committed = if acls.is_empty() {
        Ok(())
    } else {
        metadata
            .submit(&MetadataCommand::CreateAcls { acls })
            .await
            .map(|_| ())
    };
    let results = parsed
        .into_iter()
        .map(|r| match (r, &committed) {
            (Err(msg), _) => failed(ResponseError::InvalidRequest, msg),
            (Ok(_), Ok(())) => AclCreationResult::default(),
            (Ok(_), Err(e)) => AclCreationResult::default()
                .with_error_code(metadata_code(e))
                .with_error_message(Some(StrBytes::from_string(e.to_string()))),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}
