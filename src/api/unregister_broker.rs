//! UnregisterBroker (key 64, `kafka-cluster.sh unregister`): removes a broker's registration
//! from the metadata, so clients (Metadata, DescribeCluster) no longer see it and it gets no
//! new replicas. BROKER_ID_NOT_REGISTERED for an unknown id, as Kafka.
//!
//! Deliberate difference from Kafka: raftka refuses (INVALID_REQUEST, naming a partition) to
//! unregister a broker that is still a replica of any partition — reassign its replicas first
//! (`raftka admin decommission` does both). Like Kafka, a live broker may be unregistered: it
//! then takes no partition roles, and registers again when restarted. Quorum membership (the
//! broker as a Raft voter or learner) is not changed. Needs ALTER on the cluster.

use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::{code, metadata_code};
use super::{authz, RequestContext};
use crate::metadata::{MetadataCommand, MetadataError};
use crate::metadata_source::MetadataSource;
use crate::security::acl::Operation;

pub async fn handle(
    metadata: &MetadataSource,
    ctx: &RequestContext,
    req: UnregisterBrokerRequest,
) -> UnregisterBrokerResponse {
    if !authz::cluster(ctx, Operation::Alter) {
        return UnregisterBrokerResponse::default()
            .with_error_code(code(ResponseError::ClusterAuthorizationFailed));
    }
    let id = req.broker_id.0;
    let outcome = metadata
        .submit(&MetadataCommand::UnregisterBroker { id })
        .await;
    match outcome {
        Ok(_) => {
            tracing::info!(broker = id, "broker unregistered");
            UnregisterBrokerResponse::default()
        }
        Err(e) => {
            let error = match &e {
                MetadataError::UnknownBroker(_) => code(ResponseError::BrokerIdNotRegistered),
                other => metadata_code(other),
            };
            UnregisterBrokerResponse::default()
                .with_error_code(error)
                .with_error_message(Some(StrBytes::from_string(e.to_string())))
        }
    }
}
