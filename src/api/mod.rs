//! Kafka APIs: one module per API, and the table that drives both the router and the
//! ApiVersions answer, so what is advertised is exactly what is handled.
//!
//! May depend on: `protocol`, `broker` and the services it holds (`group`, `txn`, `topics`,
//! `metadata_source`, and through them `metadata`, `log`), `access`, the codec's message
//! types. Not on sockets: [`dispatch`] turns one request frame into one response frame.

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_configs;
mod alter_partition_reassignments;
mod api_versions;
mod authorized_ops;
pub mod authz;
mod commit_plan;
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
mod describe_producers;
mod describe_quorum;
mod describe_topic_partitions;
mod describe_transactions;
mod elect_leaders;
mod end_txn;
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
mod list_partition_reassignments;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod produce;
pub mod quorum_admin;
mod sasl;
mod scram_credentials;
mod sync_group;
mod topic_ids;
pub mod turn;
mod txn_offset_commit;
mod txn_verify;
mod unregister_broker;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

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

/// Calls a handler with what it takes: the broker, or (`[field]`) the one broker service it
/// needs.
macro_rules! call_handler {
    ($handler:path, $broker:ident, $ctx:ident, $req:ident) => {
        $handler($broker, $ctx, $req).await
    };
    ($handler:path, $broker:ident, $ctx:ident, $req:ident, $svc:ident) => {
        $handler(&$broker.$svc, $ctx, $req).await
    };
}

/// Generates, from one list of `Key min..=max => handler [service][, no_reply_if predicate];`
/// lines, both [`APIS`] (what ApiVersions advertises, in list order) and `route` (the
/// dispatch `match`), so an API is added, or its versions changed, in one line. A handler is
/// an `async fn(&S, &RequestContext, Request) -> Response`: `S` is the one service named in
/// brackets (`[groups]`: `&broker.groups`, a `&GroupCoordinator`), or `Broker` for the handlers
/// that still need several. Authorization needs none: the context carries it
/// ([`RequestContext::access`], asked through [`authz`]). The request type is inferred from
/// the handler. `no_reply_if` names a `fn(&Request) -> bool` for requests Kafka does not
/// answer (acks=0 produce).
macro_rules! apis {
    ($(
        $key:ident $min:literal ..= $max:literal => $handler:path $([$svc:ident])?
            $(, no_reply_if $silent:path)?;
    )*) => {
        /// Every API raftka handles. Ranges start as low as the codec decodes (old librdkafka
        /// only enables features when old versions are advertised) and stop where raftka fills
        /// in every field the version carries.
        pub const APIS: &[ApiSpec] = &[$(
            ApiSpec { key: ApiKey::$key, min: $min, max: $max },
        )*];

        /// Decodes the body of a `key` request (its header already read), runs its handler
        /// and encodes the response.
        async fn route(
            key: ApiKey,
            broker: &Arc<Broker>,
            ctx: &RequestContext,
            mut frame: Bytes,
        ) -> Result<Outcome, DispatchError> {
            match key {
                $(ApiKey::$key => {
                    let req = decode(key, &mut frame, ctx.api_version)?;
                    let silent = false $(|| $silent(&req))?;
                    let resp = call_handler!($handler, broker, ctx, req $(, $svc)?);
                    if silent {
                        return Ok(Outcome::NoReply);
                    }
                    reply(key, ctx, &resp)
                })*
                other => Err(DispatchError::UnknownApi(other as i16)),
            }
        }
    };
}

/// Kafka sends nothing back to an acks=0 produce.
fn acks_zero(req: &ProduceRequest) -> bool {
    req.acks == 0
}

// The list: comments say why a range starts or stops where it does.
apis! {
    Produce 0..=11 => produce::handle, no_reply_if acks_zero;
    // From 4, as Kafka 4.0 (KIP-896): v0-v3 responses carry message sets of format v0/v1,
    // which cannot hold the v2 batches raftka stores (no down-conversion), so an old client
    // must fail at once instead of reading batches it cannot parse. v13+ by topic id.
    Fetch 4..=17 => fetch::handle;
    // v7: max timestamp (-3); v8: earliest local (-4); v9: latest tiered (-5).
    ListOffsets 0..=9 => list_offsets::handle;
    Metadata 0..=12 => metadata::handle;
    ApiVersions 0..=3 => api_versions::handle;
    CreateTopics 0..=7 => create_topics::handle;
    DeleteTopics 0..=6 => delete_topics::handle;
    InitProducerId 0..=4 => init_producer_id::handle;
    DescribeConfigs 0..=4 => describe_configs::handle;
    AlterConfigs 0..=2 => alter_configs::handle [topics];
    IncrementalAlterConfigs 0..=1 => incremental_alter_configs::handle [topics];
    DeleteRecords 0..=2 => delete_records::handle;
    CreatePartitions 0..=3 => create_partitions::handle;
    DescribeCluster 0..=1 => describe_cluster::handle;
    // Consumer groups (the classic protocol). v4 batches coordinator keys; v5+ only adds
    // error semantics of transactions and v6 share groups.
    FindCoordinator 0..=4 => find_coordinator::handle;
    // v9 lets a static leader skip re-assignment; raftka never asks it to (always valid).
    JoinGroup 0..=9 => join_group::handle [groups];
    SyncGroup 0..=5 => sync_group::handle [groups];
    Heartbeat 0..=4 => heartbeat::handle [groups];
    LeaveGroup 0..=5 => leave_group::handle [groups];
    // Up to 8: v9 is for KIP-848 consumer groups (member epochs), not implemented.
    OffsetCommit 0..=8 => offset_commit::handle;
    OffsetFetch 0..=8 => offset_fetch::handle [groups];
    OffsetDelete 0..=0 => offset_delete::handle;
    // Transactions, partition side (issue 14): v3 adds the group member (KIP-447); v4 is
    // KIP-890's server-side verification, not advertised.
    TxnOffsetCommit 0..=3 => txn_offset_commit::handle;
    DescribeProducers 0..=0 => describe_producers::handle;
    DescribeGroups 0..=5 => describe_groups::handle [groups];
    // v5 filters by group type (KIP-848); every group here is a classic one.
    ListGroups 0..=5 => list_groups::handle [groups];
    DeleteGroups 0..=2 => delete_groups::handle [groups];
    // ACLs in the metadata quorum (SECURITY_DISABLED without authorizer.class.name).
    DescribeAcls 0..=3 => describe_acls::handle [metadata];
    CreateAcls 0..=3 => create_acls::handle [metadata];
    DeleteAcls 0..=3 => delete_acls::handle [metadata];
    // Operator APIs (issue 15).
    ElectLeaders 0..=2 => elect_leaders::handle;
    DescribeLogDirs 0..=4 => describe_log_dirs::handle;
    DescribeQuorum 0..=2 => describe_quorum::handle;
    AddRaftVoter 0..=0 => quorum_admin::handle_add;
    RemoveRaftVoter 0..=0 => quorum_admin::handle_remove;
    DescribeTopicPartitions 0..=0 => describe_topic_partitions::handle [metadata];
    // Partition reassignment (KIP-455) and broker decommission.
    AlterPartitionReassignments 0..=0 => alter_partition_reassignments::handle;
    ListPartitionReassignments 0..=0 => list_partition_reassignments::handle [metadata];
    UnregisterBroker 0..=0 => unregister_broker::handle [metadata];
    // SASL (the exchange runs in server::auth; here they answer ILLEGAL_SASL_STATE).
    SaslHandshake 0..=1 => sasl::handshake;
    SaslAuthenticate 0..=2 => sasl::authenticate;
    DescribeUserScramCredentials 0..=0 => scram_credentials::describe;
    AlterUserScramCredentials 0..=0 => scram_credentials::alter;
    // Transactions (the coordinator, see `txn`). AddPartitionsToTxn v4+ is the brokers'
    // batched/verify form (CLUSTER_ACTION); the KIP-890 part 2 versions (AddPartitionsToTxn
    // v5, AddOffsetsToTxn v4, EndTxn v4-5) are not advertised: clients would expect the
    // epoch bump per transaction they announce.
    AddPartitionsToTxn 0..=4 => add_partitions_to_txn::handle;
    AddOffsetsToTxn 0..=3 => add_offsets_to_txn::handle;
    EndTxn 0..=3 => end_txn::handle [txns];
    DescribeTransactions 0..=0 => describe_transactions::handle [txns];
    ListTransactions 0..=1 => list_transactions::handle [txns];
}

/// The name of API `key` as Kafka's request metrics label it ("Produce"); "Unknown" for keys
/// raftka does not serve.
pub fn api_name(key: i16) -> String {
    spec(key).map_or_else(|| "Unknown".to_string(), |s| format!("{:?}", s.key))
}

/// The spec for an API key, if raftka handles that API.
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
    /// The request's place in its connection's append order, when the connection pipelines
    /// it (Produce only; see [`turn`]).
    pub append_turn: Option<Arc<turn::AppendTurn>>,
    /// The authorizer service ([`authz`] asks it): the broker's, shared.
    pub access: Arc<crate::access::Access>,
}

/// Whether the ACL APIs may run for this request: SECURITY_DISABLED without an authorizer
/// (Kafka's answer), CLUSTER_AUTHORIZATION_FAILED without `op` on the cluster.
fn acl_access(
    ctx: &RequestContext,
    op: crate::security::acl::Operation,
) -> Result<(), (kafka_protocol::ResponseError, String)> {
    use kafka_protocol::ResponseError as E;
    if !ctx.access.enabled() {
        return Err((
            E::SecurityDisabled,
            "No Authorizer is configured on the broker (authorizer.class.name)".to_string(),
        ));
    }
    if !authz::cluster(ctx, op) {
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
    frame: Bytes,
    peer: Option<SocketAddr>,
    listener: Option<Arc<str>>,
    principal: crate::security::Principal,
) -> Result<Outcome, DispatchError> {
    dispatch_in_turn(broker, frame, peer, listener, principal, None).await
}

/// [`dispatch_as`] for a request that may be in progress together with later requests of its
/// connection: a Produce appends only in `turn` (after every earlier request appended).
pub async fn dispatch_in_turn(
    broker: &Arc<Broker>,
    mut frame: Bytes,
    peer: Option<SocketAddr>,
    listener: Option<Arc<str>>,
    principal: crate::security::Principal,
    turn: Option<Arc<turn::AppendTurn>>,
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
        append_turn: turn,
        access: broker.access.clone(),
    };
    route(spec.key, broker, &ctx, frame).await
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The table as it stood before `apis!` generated it (key, min, max, in order): the
    /// ApiVersions answer (built from `APIS` in order) must not change with the macro.
    const BEFORE_THE_MACRO: &[(ApiKey, i16, i16)] = &[
        (ApiKey::Produce, 0, 11),
        (ApiKey::Fetch, 4, 17),
        (ApiKey::ListOffsets, 0, 9),
        (ApiKey::Metadata, 0, 12),
        (ApiKey::ApiVersions, 0, 3),
        (ApiKey::CreateTopics, 0, 7),
        (ApiKey::DeleteTopics, 0, 6),
        (ApiKey::InitProducerId, 0, 4),
        (ApiKey::DescribeConfigs, 0, 4),
        (ApiKey::AlterConfigs, 0, 2),
        (ApiKey::IncrementalAlterConfigs, 0, 1),
        (ApiKey::DeleteRecords, 0, 2),
        (ApiKey::CreatePartitions, 0, 3),
        (ApiKey::DescribeCluster, 0, 1),
        (ApiKey::FindCoordinator, 0, 4),
        (ApiKey::JoinGroup, 0, 9),
        (ApiKey::SyncGroup, 0, 5),
        (ApiKey::Heartbeat, 0, 4),
        (ApiKey::LeaveGroup, 0, 5),
        (ApiKey::OffsetCommit, 0, 8),
        (ApiKey::OffsetFetch, 0, 8),
        (ApiKey::OffsetDelete, 0, 0),
        (ApiKey::TxnOffsetCommit, 0, 3),
        (ApiKey::DescribeProducers, 0, 0),
        (ApiKey::DescribeGroups, 0, 5),
        (ApiKey::ListGroups, 0, 5),
        (ApiKey::DeleteGroups, 0, 2),
        (ApiKey::DescribeAcls, 0, 3),
        (ApiKey::CreateAcls, 0, 3),
        (ApiKey::DeleteAcls, 0, 3),
        (ApiKey::ElectLeaders, 0, 2),
        (ApiKey::DescribeLogDirs, 0, 4),
        (ApiKey::DescribeQuorum, 0, 2),
        (ApiKey::AddRaftVoter, 0, 0),
        (ApiKey::RemoveRaftVoter, 0, 0),
        (ApiKey::DescribeTopicPartitions, 0, 0),
        (ApiKey::AlterPartitionReassignments, 0, 0),
        (ApiKey::ListPartitionReassignments, 0, 0),
        (ApiKey::UnregisterBroker, 0, 0),
        (ApiKey::SaslHandshake, 0, 1),
        (ApiKey::SaslAuthenticate, 0, 2),
        (ApiKey::DescribeUserScramCredentials, 0, 0),
        (ApiKey::AlterUserScramCredentials, 0, 0),
        (ApiKey::AddPartitionsToTxn, 0, 4),
        (ApiKey::AddOffsetsToTxn, 0, 3),
        (ApiKey::EndTxn, 0, 3),
        (ApiKey::DescribeTransactions, 0, 0),
        (ApiKey::ListTransactions, 0, 1),
    ];

    #[test]
    fn the_advertised_table_is_the_one_before_the_macro() {
        let now: Vec<(ApiKey, i16, i16)> = APIS.iter().map(|s| (s.key, s.min, s.max)).collect();
        assert_eq!(now, BEFORE_THE_MACRO);
    }

    #[test]
    fn the_unsupported_version_answer_is_byte_identical() {
        // The v0 ApiVersions body (UNSUPPORTED_VERSION + table), as the pre-macro table gave it.
        let expected = {
            use kafka_protocol::messages::api_versions_response::ApiVersion;
            let body = ApiVersionsResponse::default()
                .with_error_code(kafka_protocol::ResponseError::UnsupportedVersion.code())
                .with_api_keys(
                    BEFORE_THE_MACRO
                        .iter()
                        .map(|(k, min, max)| {
                            ApiVersion::default()
                                .with_api_key(*k as i16)
                                .with_min_version(*min)
                                .with_max_version(*max)
                        })
                        .collect(),
                );
            crate::protocol::response::encode_with_header_version(7, 0, 0, &body).unwrap()
        };
        assert_eq!(api_versions::unsupported(7).unwrap(), expected);
    }
}
