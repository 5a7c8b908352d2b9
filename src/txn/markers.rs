//! Transaction markers (Kafka's WriteTxnMarkers): the coordinator's request that the leader
//! of a partition append a commit or abort control batch for a producer.
//!
//! - [`write_local`]: the partition leader's side. Each marker is appended through
//!   [`PartitionWriter::write_txn_marker`] in the partition's current leader epoch, then
//!   awaited like an acks=all Produce (durable, then below the high watermark in that epoch).
//!   A partition this broker does not lead answers [`MarkerOutcome::NotLeader`]: the
//!   coordinator looks the leader up again and retries there.
//! - [`MarkerTransport`]: how the coordinator reaches another broker's [`write_local`] (the
//!   `Cluster` gRPC service's `WriteTxnMarkers`, see `rpc::cluster`), and how a partition
//!   leader asks a coordinator to verify a transaction's partitions ([`VerifyTxn`], KIP-890).
//!
//! May depend on: `log` (the marker), `writer`, `metadata` (the image). Not on `api` or the
//! network.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::log::{LogError, TxnMarker};
use crate::metadata::ClusterImage;
use crate::replication::manager::BoxFuture;
use crate::replication::PeerError;
use crate::writer::{PartitionWriter, WriteError};

/// One marker for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerWrite {
    pub topic: String,
    pub partition: i32,
    pub marker: TxnMarker,
}

/// What became of one [`MarkerWrite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerOutcome {
    /// Appended and committed.
    Written,
    /// This broker does not lead the partition (any more): retry at its leader.
    NotLeader,
    /// No such partition (its topic was deleted): nothing to mark.
    UnknownPartition,
    /// The partition has seen a newer producer epoch or coordinator epoch: the transaction was
    /// ended there by a newer producer or coordinator; nothing to mark (Kafka stops sending).
    Superseded(String),
    /// Anything else (storage, timeout, a stale epoch): retried later.
    Failed(String),
}

/// Sends markers to the broker leading their partitions.
pub trait MarkerTransport: Send + Sync + 'static {
    /// Asks `broker` to write `writes`; one outcome per write, in order.
    fn write_markers(
        &self,
        broker: i32,
        coordinator: i32,
        writes: Vec<MarkerWrite>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<MarkerOutcome>, PeerError>>;

    /// Asks coordinator `broker` whether `parts` are in the ongoing transaction of
    /// `check.transactional_id` (KIP-890); one Kafka error code per partition.
    fn verify(
        &self,
        broker: i32,
        sender: i32,
        check: VerifyTxn,
    ) -> BoxFuture<'_, Result<Vec<i16>, PeerError>>;
}

/// A partition leader's question to a transaction coordinator (KIP-890 part 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<(String, i32)>,
}

/// Writes `writes` on this broker (`node_id`) as the leader of their partitions and waits
/// until each is committed, `timeout` at most. The returned outcomes are in order.
pub async fn write_local(
    writer: &Arc<PartitionWriter>,
    image: &ClusterImage,
    node_id: i32,
    writes: &[MarkerWrite],
    timeout: Duration,
) -> Vec<MarkerOutcome> {
    let deadline = Instant::now() + timeout;
    let mut outcomes = Vec::with_capacity(writes.len());
    let mut pending = HashMap::new();
    for (i, w) in writes.iter().enumerate() {
        let Some(p) = image.topics.get(&w.topic).and_then(|t| {
            usize::try_from(w.partition)
                .ok()
                .and_then(|i| t.partitions.get(i))
        }) else {
            outcomes.push(MarkerOutcome::UnknownPartition);
            continue;
        };
        if p.leader != node_id {
            outcomes.push(MarkerOutcome::NotLeader);
            continue;
        }
        match writer.write_txn_marker(&w.topic, w.partition, p.leader_epoch, w.marker) {
            Ok(appended) => {
                pending.insert(i, appended.commit);
                outcomes.push(MarkerOutcome::Written);
            }
            Err(e) => outcomes.push(outcome_of(e)),
        }
    }
    if pending.is_empty() {
        return outcomes;
    }
    if let Err(e) = writer.make_durable().await {
        let failed = outcome_of(e);
        for i in pending.keys() {
            outcomes[*i] = failed.clone();
        }
        return outcomes;
    }
    for (i, commit) in pending {
        if let Err(e) = writer.wait_committed(&commit, deadline).await {
            outcomes[i] = outcome_of(e);
        }
    }
    outcomes
}

fn outcome_of(e: WriteError) -> MarkerOutcome {
    match e {
        WriteError::NotLeader { .. } | WriteError::LeadershipLost { .. } => {
            MarkerOutcome::NotLeader
        }
        e @ WriteError::Log(
            LogError::InvalidProducerEpoch { .. } | LogError::CoordinatorFenced { .. },
        ) => MarkerOutcome::Superseded(e.to_string()),
        other => MarkerOutcome::Failed(other.to_string()),
    }
}
