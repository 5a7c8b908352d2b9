//! ApiVersions (key 18): the advertised table, straight from [`super::APIS`], and (v3+) the
//! feature flags `kafka-features.sh describe` prints (KIP-584).
//!
//! Features: `metadata.version` is supported and finalized at level 7 (Kafka 3.3-IV3, the
//! oldest level Kafka 4 tools still know): raftka's metadata is its own Raft log, not KRaft
//! records, so the level only tells tools which Kafka generation to expect. `kraft.version`
//! is supported at 0 only: the voters start from `controller.quorum.voters` and change only
//! through AddRaftVoter/RemoveRaftVoter (`quorum_admin`), not through KRaft's voter records
//! that level 1 stands for. Features that switch client behaviour (`group.version` for KIP-848
//! consumers, `transaction.version`) are deliberately absent. The finalized epoch is 0: the
//! features never change.

use bytes::BytesMut;
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{RequestContext, APIS};
use crate::broker::Broker;
use crate::protocol::response::encode_with_header_version;

/// Kafka's `MetadataVersion.IBP_3_3_IV3` feature level.
pub const METADATA_VERSION_LEVEL: i16 = 7;

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

pub async fn handle(
    _broker: &Broker,
    _ctx: &RequestContext,
    _req: ApiVersionsRequest,
) -> ApiVersionsResponse {
    let supported = vec![
        SupportedFeatureKey::default()
            .with_name(StrBytes::from_static_str("kraft.version"))
            .with_min_version(0)
            .with_max_version(0),
        SupportedFeatureKey::default()
            .with_name(StrBytes::from_static_str("metadata.version"))
            .with_min_version(METADATA_VERSION_LEVEL)
            .with_max_version(METADATA_VERSION_LEVEL),
    ];
    let finalized = vec![FinalizedFeatureKey::default()
        .with_name(StrBytes::from_static_str("metadata.version"))
        .with_min_version_level(METADATA_VERSION_LEVEL)
        .with_max_version_level(METADATA_VERSION_LEVEL)];
    ApiVersionsResponse::default()
        .with_api_keys(table())
        .with_supported_features(supported)
        .with_finalized_features_epoch(0)
        .with_finalized_features(finalized)
}

/// The answer to an ApiVersions request of a version raftka does not know: a v0 body with
/// UNSUPPORTED_VERSION and the table, behind a v0 header, as Kafka does.
pub fn unsupported(correlation_id: i32) -> anyhow::Result<BytesMut> {
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(table());
    encode_with_header_version(correlation_id, 0, 0, &body)
}
