//! Kafka APIs: one module per API, and the table that drives both the router and the
//! ApiVersions answer, so what is advertised is exactly what is handled.
//!
//! May depend on: `protocol`, `broker` (and through it `metadata`, `log`), the codec's
//! message types. Not on sockets: [`dispatch`] turns one request frame into one response frame.

mod alter_configs;
mod api_versions;
mod authorized_ops;
pub mod authz;
mod config_resources;
mod create_acls;
mod create_partitions;
mod create_topics;
mod delete_acls;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_acls;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_quorum;
mod describe_topic_partitions;
mod elect_leaders;
pub mod errors;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod produce;
mod sasl;
mod scram_credentials;
mod sync_group;
mod topic_ids;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Request};

use crate::broker::Broker;
use crate::protocol::header::{decode_header, peek_header, HeaderError};
use crate::protocol::response::encode_response;

/// An API and the versions of it this broker handles.
#[derive(Debug, Clone, Copy)]
pub struct ApiSpec {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiSpec {
    ApiSpec { key, min, max }
}

/// Every API raftka handles. Ranges start as low as the codec decodes (old librdkafka only
/// enables features when old versions are advertised) and stop where raftka fills in every
/// field the version carries.
pub const APIS: &[ApiSpec] = &[
    api(ApiKey::Produce, 0, 11),
    // From 4, as Kafka 4.0 (KIP-896): v0-v3 responses carry message sets of format v0/v1,
    // which cannot hold the v2 batches raftka stores (no down-conversion), so an old client
    // must fail at once instead of reading batches it cannot parse. v13+ by topic id.
    api(ApiKey::Fetch, 4, 17),
    // v7: max timestamp (-3); v8: earliest local (-4); v9: latest tiered (-5).
    api(ApiKey::ListOffsets, 0, 9),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 3),
    api(ApiKey::CreateTopics, 0, 7),
    api(ApiKey::DeleteTopics, 0, 6),
    api(ApiKey::InitProducerId, 0, 4),
    api(ApiKey::DescribeConfigs, 0, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DescribeCluster, 0, 1),
    // Consumer groups (the classic protocol). v4 batches coordinator keys; v5+ only adds
    // error semantics of transactions and v6 share groups.
    api(ApiKey::FindCoordinator, 0, 4),
    // v9 lets a static leader skip re-assignment; raftka never asks it to (always valid).
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    // Up to 8: v9 is for KIP-848 consumer groups (member epochs), not implemented.
    api(ApiKey::OffsetCommit, 0, 8),
    api(ApiKey::OffsetFetch, 0, 8),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DescribeGroups, 0, 5),
    // v5 filters by group type (KIP-848); every group here is a classic one.
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
    // ACLs in the metadata quorum (SECURITY_DISABLED without authorizer.class.name).
    api(ApiKey::DescribeAcls, 0, 3),
    api(ApiKey::CreateAcls, 0, 3),
    api(ApiKey::DeleteAcls, 0, 3),
    // Operator APIs (issue 15).
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::DescribeLogDirs, 0, 4),
    api(ApiKey::DescribeQuorum, 0, 2),
    api(ApiKey::DescribeTopicPartitions, 0, 0),
    // SASL (the exchange runs in server::auth; here they answer ILLEGAL_SASL_STATE).
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
];

/// The spec for an API key, if raftka handles that API.
/// The name of API `key` as Kafka's request metrics label it ("Produce"); "Unknown" for keys
/// raftka does not serve.
pub fn api_name(key: i16) -> String {
    spec(key).map_or_else(|| "Unknown".to_string(), |s| format!("{:?}", s.key))
}

pub fn spec(key: i16) -> Option<&'static ApiSpec> {
    APIS.iter().find(|s| s.key as i16 == key)
}

/// What the connection should do after a request.
#[derive(Debug)]
pub enum Outcome {
    Reply(BytesMut),
    /// acks=0 produce: Kafka sends nothing back.
    NoReply,
}

/// A request that cannot be answered; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("unknown or unsupported API key {0}")]
    UnknownApi(i16),
    #[error("unsupported version {version} of {key:?} (supported {min}-{max})")]
    UnsupportedVersion {
        key: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("cannot decode {key:?} v{version}: {reason}")]
    Decode {
        key: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode {key:?} v{version} response (broker bug): {reason}")]
    Encode {
        key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Facts about the request a handler may need besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// The client's address as Kafka reports it (`/127.0.0.1`), empty when unknown.
    pub client_host: String,
    /// Name of the listener the request came through (Metadata answers with that listener's
    /// addresses); `None` for in-process callers.
    pub listener: Option<Arc<str>>,
    /// Who sent the request (`User:ANONYMOUS` until the connection authenticates).
    pub principal: crate::security::Principal,
}

/// Whether the ACL APIs may run for this request: SECURITY_DISABLED without an authorizer
/// (Kafka's answer), CLUSTER_AUTHORIZATION_FAILED without `op` on the cluster.
fn acl_access(
    b: &Broker,
    ctx: &RequestContext,
    op: crate::security::acl::Operation,
) -> Result<(), (kafka_protocol::ResponseError, String)> {
    use kafka_protocol::ResponseError as E;
    if !b.config.authorizer.enabled {
        return Err((
            E::SecurityDisabled,
            "No Authorizer is configured on the broker (authorizer.class.name)".to_string(),
        ));
    }
    if !authz::cluster(b, ctx, op) {
        return Err((
            E::ClusterAuthorizationFailed,
            format!("Authorization failed: {op:?} on the cluster is required"),
        ));
    }
    Ok(())
}

/// Decodes one request frame, runs its handler and encodes the response.
pub async fn dispatch(broker: &Arc<Broker>, frame: Bytes) -> Result<Outcome, DispatchError> {
    dispatch_from(broker, frame, None, None).await
}

/// [`dispatch`] for a request that arrived from `peer` (DescribeGroups reports it) through the
/// listener named `listener` (Metadata answers with its addresses), as `User:ANONYMOUS`.
pub async fn dispatch_from(
    broker: &Arc<Broker>,
    frame: Bytes,
    peer: Option<SocketAddr>,
    listener: Option<Arc<str>>,
) -> Result<Outcome, DispatchError> {
    dispatch_as(
        broker,
        frame,
        peer,
        listener,
        crate::security::Principal::anonymous(),
    )
    .await
}

/// [`dispatch_from`] for a request of a connection that authenticated as `principal` (the
/// connection layer passes its TLS or SASL identity; `User:ANONYMOUS` otherwise).
pub async fn dispatch_as(
    broker: &Arc<Broker>,
    mut frame: Bytes,
    peer: Option<SocketAddr>,
    listener: Option<Arc<str>>,
    principal: crate::security::Principal,
) -> Result<Outcome, DispatchError> {
    let prefix = peek_header(&frame)?;
    let spec = spec(prefix.api_key).ok_or(DispatchError::UnknownApi(prefix.api_key))?;
    let version = prefix.api_version;
    if version < spec.min || version > spec.max {
        if spec.key == ApiKey::ApiVersions {
            // Answer with a v0 body so the client can pick a version we know.
            return api_versions::unsupported(prefix.correlation_id)
                .map(Outcome::Reply)
                .map_err(|e| encode_error(spec.key, 0, e));
        }
        return Err(DispatchError::UnsupportedVersion {
            key: spec.key,
            version,
            min: spec.min,
            max: spec.max,
        });
    }
    let header = decode_header(spec.key, version, &mut frame)?;
    let ctx = RequestContext {
        api_version: version,
        correlation_id: header.correlation_id,
        client_id: header.client_id.as_ref().map(|c| c.to_string()),
        client_host: peer.map(|p| format!("/{}", p.ip())).unwrap_or_default(),
        listener,
        principal,
    };
    let b = broker;
    match spec.key {
        ApiKey::Produce => {
            let req: ProduceRequest = decode(spec.key, &mut frame, version)?;
            let acks = req.acks;
            let resp = produce::handle(b, &ctx, req).await;
            if acks == 0 {
                return Ok(Outcome::NoReply);
            }
            reply(spec.key, &ctx, &resp)
        }
        ApiKey::Fetch => serve(spec.key, &ctx, frame, |r| fetch::handle(b, &ctx, r)).await,
        ApiKey::ListOffsets => {
            serve(spec.key, &ctx, frame, |r| list_offsets::handle(b, &ctx, r)).await
        }
        ApiKey::Metadata => serve(spec.key, &ctx, frame, |r| metadata::handle(b, &ctx, r)).await,
        ApiKey::ApiVersions => {
            serve(spec.key, &ctx, frame, |r| api_versions::handle(&ctx, r)).await
        }
        ApiKey::CreateTopics => {
            serve(spec.key, &ctx, frame, |r| create_topics::handle(b, &ctx, r)).await
        }
        ApiKey::DeleteTopics => {
            serve(spec.key, &ctx, frame, |r| delete_topics::handle(b, &ctx, r)).await
        }
        ApiKey::InitProducerId => {
            serve(spec.key, &ctx, frame, |r| {
                init_producer_id::handle(b, &ctx, r)
            })
            .await
        }
        ApiKey::DescribeConfigs => {
            serve(spec.key, &ctx, frame, |r| {
                describe_configs::handle(b, &ctx, r)
            })
            .await
        }
        ApiKey::AlterConfigs => {
            serve(spec.key, &ctx, frame, |r| alter_configs::handle(b, &ctx, r)).await
        }
        ApiKey::IncrementalAlterConfigs => {
            serve(spec.key, &ctx, frame, |r| {
                incremental_alter_configs::handle(b, &ctx, r)
            })
            .await
        }
        ApiKey::DeleteRecords => {
            serve(spec.key, &ctx, frame, |r| {
                delete_records::handle(b, &ctx, r)
            })
            .await
        }
        ApiKey::CreatePartitions => {
            serve(spec.key, &ctx, frame, |r| {
                create_partitions::handle(b, &ctx, r)
            })
            .await
        }
        ApiKey::DescribeCluster => {
            serve(spec.key, &ctx, frame, |r| {
                describe_cluster::handle(b, &ctx, r)
            })
            .await
        }
        ApiKey::FindCoordinator => {
            serve(spec.key, &ctx, frame, |r| {
                find_coordinator::handle(b, &ctx, r)
            })
            .await
        }
        ApiKey::JoinGroup => serve(spec.key, &ctx, frame, |r| join_group::handle(b, &ctx, r)).await,
        ApiKey::SyncGroup => serve(spec.key, &ctx, frame, |r| sync_group::handle(b, &ctx, r)).await,
        ApiKey::Heartbeat => serve(spec.key, &ctx, frame, |r| heartbeat::handle(b, &ctx, r)).await,
        ApiKey::LeaveGroup => {
            serve(spec.key, &ctx, frame, |r| leave_group::handle(b, &ctx, r)).await
        }
        ApiKey::OffsetCommit => {
            serve(spec.key, &ctx, frame, |r| offset_commit::handle(b, &ctx, r)).await
        }
        ApiKey::OffsetFetch => {
            serve(spec.key, &ctx, frame, |r| offset_fetch::handle(b, &ctx, r)).await
        }
        ApiKey::OffsetDelete => {
            serve(spec.key, &ctx, frame, |r| offset_delete::handle(b, &ctx, r)).await
        }
        ApiKey::DescribeGroups => {
            serve(spec.key, &ctx, frame, |r| {
                describe_groups::handle(b, &ctx, r)
            })
            .await
        }
        ApiKey::ListGroups => {
            serve(spec.key, &ctx, frame, |r| list_groups::handle(b, &ctx, r)).await
        }
        ApiKey::DeleteGroups => {
            serve(spec.key, &ctx, frame, |r| delete_groups::handle(b, &ctx, r)).await
        }
        ApiKey::DescribeAcls => {
            serve(spec.key, &ctx, frame, |r| describe_acls::handle(b, &ctx, r)).await
        }
        ApiKey::CreateAcls => {
            serve(spec.key, &ctx, frame, |r| create_acls::handle(b, &ctx, r)).await
        }
        ApiKey::DeleteAcls => {
            serve(spec.key, &ctx, frame, |r| delete_acls::handle(b, &ctx, r)).await
        }
        ApiKey::ElectLeaders => {
            serve(spec.key, &ctx, frame, |r| elect_leaders::handle(b, &ctx, r)).await
        }
        ApiKey::DescribeLogDirs => {
            serve(spec.key, &ctx, frame, |r| {
                describe_log_dirs::handle(b, &ctx, r)
            })
            .await
        }
        ApiKey::DescribeQuorum => {
            serve(spec.key, &ctx, frame, |r| {
                describe_quorum::handle(b, &ctx, r)
            })
            .await
        }
        ApiKey::DescribeTopicPartitions => {
            serve(spec.key, &ctx, frame, |r| {
                describe_topic_partitions::handle(b, &ctx, r)
            })
            .await
        }
        ApiKey::SaslHandshake => serve(spec.key, &ctx, frame, |r| sasl::handshake(&ctx, r)).await,
        ApiKey::SaslAuthenticate => {
            serve(spec.key, &ctx, frame, |r| sasl::authenticate(&ctx, r)).await
        }
        ApiKey::DescribeUserScramCredentials => {
            serve(spec.key, &ctx, frame, |r| {
                scram_credentials::describe(b, &ctx, r)
            })
            .await
        }
        ApiKey::AlterUserScramCredentials => {
            serve(spec.key, &ctx, frame, |r| {
                scram_credentials::alter(b, &ctx, r)
            })
            .await
        }
        other => Err(DispatchError::UnknownApi(other as i16)),
    }
}

fn decode<T: Decodable>(key: ApiKey, frame: &mut Bytes, version: i16) -> Result<T, DispatchError> {
    T::decode(frame, version).map_err(|e| DispatchError::Decode {
        key,
        version,
        reason: e.to_string(),
    })
}

fn encode_error(key: ApiKey, version: i16, e: anyhow::Error) -> DispatchError {
    DispatchError::Encode {
        key,
        version,
        reason: e.to_string(),
    }
}

fn reply<R>(key: ApiKey, ctx: &RequestContext, resp: &R) -> Result<Outcome, DispatchError>
where
    R: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion,
{
    encode_response(ctx.correlation_id, ctx.api_version, resp)
        .map(Outcome::Reply)
        .map_err(|e| encode_error(key, ctx.api_version, e))
}

async fn serve<Req, F, Fut>(
    key: ApiKey,
    ctx: &RequestContext,
    mut frame: Bytes,
    handler: F,
) -> Result<Outcome, DispatchError>
where
    Req: Request,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Req::Response>,
{
    let req: Req = decode(key, &mut frame, ctx.api_version)?;
    let resp = handler(req).await;
    reply(key, ctx, &resp)
}
