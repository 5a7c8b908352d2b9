//! DescribeAcls (key 29): the ACLs a filter selects, grouped by resource pattern as Kafka
//! answers. Needs DESCRIBE on the cluster; SECURITY_DISABLED without an authorizer. A filter
//! with invalid codes is answered INVALID_REQUEST.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::code;
use super::{acl_access, RequestContext};
use crate::metadata_source::MetadataSource;
use crate::security::acl::{AclFilter, Operation};

fn failed(e: ResponseError, msg: String) -> DescribeAclsResponse {
    DescribeAclsResponse::default()
        .with_error_code(code(e))
        .with_error_message(Some(StrBytes::from_string(msg)))
}

pub async fn handle(
    metadata: &MetadataSource,
    ctx: &RequestContext,
    req: DescribeAclsRequest,
) -> DescribeAclsResponse {
    if let Err((e, msg)) = acl_access(ctx, Operation::Describe) {
        return failed(e, msg);
    }
    let filter = match AclFilter::from_codes(
        req.resource_type_filter,
        req.resource_name_filter.as_deref(),
        req.pattern_type_filter,
        req.principal_filter.as_deref(),
        req.host_filter.as_deref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(e) => return failed(ResponseError::InvalidRequest, e.to_string()),
    };
    let image = metadata.image();
    let mut by_resource: BTreeMap<(i8, &str, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in image.acls.iter().filter(|b| filter.matches(b)) {
        by_resource
            .entry((
                b.resource_type.code(),
                b.resource_name.as_str(),
                b.pattern_type.code(),
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(StrBytes::from_string(b.principal.clone()))
                    .with_host(StrBytes::from_string(b.host.clone()))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    let resources = by_resource
        .into_iter()
        .map(|((rt, name, pt), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_pattern_type(pt)
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}
