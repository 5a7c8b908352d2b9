//! KIP-890 part 1 on Produce: before a producer's first transactional batch in a partition
//! (no transaction of that producer open there yet), the partition leader asks the
//! transactional id's coordinator whether the partition was added to the producer's ongoing
//! transaction (`TxnCoordinator::verify`, over gRPC when the coordinator is another broker),
//! and refuses the batch otherwise: a late or misdirected write can no longer open a
//! transaction that no coordinator will ever end (a "hanging" transaction).
//!
//! As Kafka: not in the transaction → INVALID_TXN_STATE; a fenced producer → its coordinator's
//! error (PRODUCER_FENCED as INVALID_PRODUCER_EPOCH, which Produce knows); a coordinator that
//! cannot answer (moving, loading, busy) → NOT_ENOUGH_REPLICAS, which the producer retries.
//!
//! As Kafka's verification guard: the partition log hands out a guard before the question
//! ([`PartitionLog::start_txn_verification`]); a marker of the producer written meanwhile (its
//! transaction ended, e.g. aborted on timeout) invalidates it, and the append — which checks
//! the guard under the partition's lock — then refuses the batch with INVALID_TXN_STATE. A
//! batch that found the producer's transaction open here (so was not verified) is refused the
//! same way if that transaction ended before the append.
//!
//! [`PartitionLog::start_txn_verification`]: crate::log::PartitionLog::start_txn_verification

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::log::batch::BatchHeader;
use crate::log::txn::VerificationGuard;
use crate::txn::markers::VerifyTxn;

/// A partition to verify: its job's index, topic, partition and the guard its log handed out.
type Ask = (usize, String, i32, Option<VerificationGuard>);

/// The outcome of verifying a Produce request's partitions.
#[derive(Debug, Default)]
pub struct Verified {
    /// The indexes (in the jobs' order) of the partitions to refuse, with their error code and
    /// message.
    pub refused: HashMap<usize, (i16, String)>,
    /// The guards of the partitions the coordinator confirmed, by job index, for the append.
    pub guards: HashMap<usize, VerificationGuard>,
}

/// Verifies `jobs` — (topic, partition, batches) about to be appended by a Produce request of
/// transactional id `txn_id` — with the coordinator where the producer's transaction is not
/// open in the partition yet.
pub async fn verify<'a>(
    broker: &Broker,
    txn_id: &str,
    jobs: impl Iterator<Item = (&'a str, i32, &'a [Bytes])>,
) -> Verified {
    // (producer id, epoch) → the job indexes to verify with their partitions.
    let mut asks: BTreeMap<(i64, i16), Vec<Ask>> = BTreeMap::new();
    for (i, (topic, partition, batches)) in jobs.enumerate() {
        let Some(h) = batches
            .iter()
            .filter_map(|b| BatchHeader::read(b).ok())
            .find(|h| h.is_transactional())
        else {
            continue;
        };
        let guard = match broker.logs.partition(topic, partition) {
            Some(log) => match log.start_txn_verification(h.producer_id) {
                Some(g) => Some(g),
                None => continue, // the transaction is open here already
            },
            None => None,
        };
        asks.entry((h.producer_id, h.producer_epoch))
            .or_default()
            .push((i, topic.to_string(), partition, guard));
    }
    let mut out = Verified::default();
    for ((producer_id, producer_epoch), parts) in asks {
        let codes = broker
            .txns
            .verify(VerifyTxn {
                transactional_id: txn_id.to_string(),
                producer_id,
                producer_epoch,
                partitions: parts.iter().map(|(_, t, p, _)| (t.clone(), *p)).collect(),
            })
            .await;
        for ((i, topic, partition, guard), c) in parts.into_iter().zip(codes) {
            if c == 0 {
                if let Some(g) = guard {
                    out.guards.insert(i, g);
                }
                continue;
            }
            if let (Some(g), Some(log)) = (guard, broker.logs.partition(&topic, partition)) {
                log.drop_txn_verification(g);
            }
            let (code, why) = produce_error(c);
            out.refused.insert(
                i,
                (
                    code,
                    format!("{topic}-{partition} is not part of the producer's transaction: {why}"),
                ),
            );
        }
    }
    out
}

/// The Produce error for a coordinator's verification answer.
fn produce_error(c: i16) -> (i16, String) {
    let e = ResponseError::try_from_code(c);
    let code = match e {
        Some(ResponseError::InvalidTxnState) => c,
        Some(ResponseError::ProducerFenced) => ResponseError::InvalidProducerEpoch.code(),
        Some(ResponseError::InvalidProducerIdMapping | ResponseError::InvalidProducerEpoch) => c,
        _ => ResponseError::NotEnoughReplicas.code(),
    };
    (
        code,
        e.map_or_else(|| format!("error {c}"), |e| format!("{e:?}")),
    )
}
