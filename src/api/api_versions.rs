//! ApiVersions (key 18): the advertised table, straight from [`super::APIS`].

use bytes::BytesMut;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use super::{RequestContext, APIS};
use crate::protocol::response::encode_with_header_version;

fn table() -> Vec<ApiVersion> {
    APIS.iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.min)
                .with_max_version(s.max)
        })
        .collect()
}

pub async fn handle(_ctx: &RequestContext, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(table())
}

/// The answer to an ApiVersions request of a version raftka does not know: a v0 body with
/// UNSUPPORTED_VERSION and the table, behind a v0 header, as Kafka does.
pub fn unsupported(correlation_id: i32) -> anyhow::Result<BytesMut> {
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(table());
    encode_with_header_version(correlation_id, 0, 0, &body)
}
