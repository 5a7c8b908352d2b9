//! What a cluster member answers on the `Cluster` gRPC service (`rpc::cluster`): heartbeats
//! as the controller (through the controller's leases, `cluster`), follower fetches,
//! metadata-quorum admin requests forwarded by other brokers, transaction markers and
//! KIP-890 verifications.
//!
//! May depend on: `broker`, `cluster`, `rpc::cluster`, `api::quorum_admin`, `replication`,
//! `txn`.

use std::sync::Arc;
use std::time::Duration;

use crate::broker::Broker;
use crate::cluster::ControllerLeases;
use crate::replication::manager::BoxFuture;
use crate::replication::{
    FetchRefusal, PartitionFetchResult, ReplicaFetchRequest, ReplicaFetchResponse,
};
use crate::rpc::cluster::{
    BrokerHeartbeat, ClusterHandler, ForwardedRequestError, HeartbeatAnswer, HeartbeatRefusal,
};

/// The `Cluster` service's handler of a built broker.
pub(super) struct Handler {
    pub broker: Arc<Broker>,
    /// The controller's leases, which heartbeats renew while this broker is the controller.
    pub leases: Arc<ControllerLeases>,
}

impl ClusterHandler for Handler {
    fn quorum_admin(
        &self,
        api_key: i16,
        api_version: i16,
        request: bytes::Bytes,
    ) -> BoxFuture<'_, Result<bytes::Bytes, ForwardedRequestError>> {
        Box::pin(crate::api::quorum_admin::answer_forwarded(
            &self.broker,
            api_key,
            api_version,
            request,
        ))
    }

    fn heartbeat(&self, hb: &BrokerHeartbeat) -> Result<HeartbeatAnswer, HeartbeatRefusal> {
        self.leases.answer_heartbeat(&self.broker, hb)
    }

    fn replica_fetch(&self, req: ReplicaFetchRequest) -> BoxFuture<'_, ReplicaFetchResponse> {
        // Only replicas of a partition may fetch it: anything else is answered without data
        // (and never counts as the follower's progress).
        let image = self.broker.metadata.image();
        let (mine, refused): (Vec<_>, Vec<_>) = req.partitions.iter().cloned().partition(|p| {
            image
                .topics
                .get(&p.topic)
                .and_then(|t| t.partitions.get(usize::try_from(p.partition).ok()?))
                .is_some_and(|m| m.replicas.contains(&req.replica_id))
        });
        let req = ReplicaFetchRequest {
            partitions: mine,
            ..req
        };
        Box::pin(async move {
            let sessionless = !req.session.open && req.session.id == 0;
            let mut resp = if req.partitions.is_empty() && sessionless {
                ReplicaFetchResponse {
                    partitions: Vec::new(),
                    session: Default::default(),
                }
            } else {
                self.broker.replication.handle_fetch(req).await
            };
            resp.partitions
                .extend(refused.into_iter().map(|p| PartitionFetchResult {
                    topic: p.topic,
                    partition: p.partition,
                    refusal: Some(FetchRefusal::UnknownPartition),
                    high_watermark: -1,
                    log_start: -1,
                    diverging: None,
                    records: Default::default(),
                    topic_id: 0,
                }));
            resp
        })
    }

    /// The markers written as partition leader.
    fn write_txn_markers(
        &self,
        writes: Vec<crate::txn::markers::MarkerWrite>,
        timeout: Duration,
    ) -> BoxFuture<'_, Vec<crate::txn::markers::MarkerOutcome>> {
        Box::pin(async move {
            let image = self.broker.metadata.image();
            crate::txn::markers::write_local(
                &self.broker.writer,
                &image,
                self.broker.config.node_id,
                &writes,
                timeout,
            )
            .await
        })
    }

    fn verify_txn_partitions(&self, check: crate::txn::markers::VerifyTxn) -> Vec<i16> {
        self.broker.txns.verify_local(&check)
    }
}
