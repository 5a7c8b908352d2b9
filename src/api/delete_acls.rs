//! DeleteAcls (key 31): removes the ACLs each filter selects through the metadata quorum and
//! reports, per filter, the ACLs it matched (in this broker's image when it submitted the
//! deletion). Needs ALTER on the cluster; SECURITY_DISABLED without an authorizer. A filter
//! with invalid codes is answered INVALID_REQUEST and deletes nothing.

use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::{code, metadata_code};
use super::{acl_access, RequestContext};
use crate::metadata::MetadataCommand;
use crate::metadata_source::MetadataSource;
use crate::security::acl::{AclBinding, AclFilter, Operation};

fn failed(e: i16, msg: String) -> DeleteAclsFilterResult {
    DeleteAclsFilterResult::default()
        .with_error_code(e)
        .with_error_message(Some(StrBytes::from_string(msg)))
}

fn matching(b: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(b.resource_type.code())
        .with_resource_name(StrBytes::from_string(b.resource_name.clone()))
        .with_pattern_type(b.pattern_type.code())
        .with_principal(StrBytes::from_string(b.principal.clone()))
        .with_host(StrBytes::from_string(b.host.clone()))
        .with_operation(b.operation.code())
        .with_permission_type(b.permission.code())
}

pub async fn handle(
    metadata: &MetadataSource,
    ctx: &RequestContext,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    if let Err((e, msg)) = acl_access(ctx, Operation::Alter) {
        let results = req
            .filters
            .iter()
            .map(|_| failed(code(e), msg.clone()))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let parsed: Vec<Result<AclFilter, String>> = req
        .filters
        .iter()
        .map(|f| {
            AclFilter::from_codes(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
            .map_err(|e| e.to_string())
        })
        .collect();
    let filters: Vec<AclFilter> = parsed.iter().filter_map(|r| r.clone().ok()).collect();
    let before = metadata.image();
    let committed = if filters.is_empty() {
        Ok(())
    } else {
        metadata
            .submit(&MetadataCommand::DeleteAcls { filters })
            .await
            .map(|_| ())
    };
    let results = parsed
        .into_iter()
        .map(|r| match (r, &committed) {
            (Err(msg), _) => failed(code(ResponseError::InvalidRequest), msg),
            (Ok(f), Ok(())) => DeleteAclsFilterResult::default().with_matching_acls(
                before
                    .acls
                    .iter()
                    .filter(|b| f.matches(b))
                    .map(matching)
                    .collect(),
            ),
            (Ok(_), Err(e)) => failed(metadata_code(e), e.to_string()),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
