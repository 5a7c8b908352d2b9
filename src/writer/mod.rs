//! The one leader append/commit path (Kafka's `appendRecords` + `DelayedProduce`), used by
//! Produce and by the replicated offsets store.
//!
//! [`PartitionWriter::append`] appends batches as the partition's leader in a given leader
//! epoch and moves the high watermark as far as the ISR allows (all the way on a lone
//! replica). The append itself publishes the partition's new log end, which wakes exactly the
//! followers' long polls that read this partition; a high-watermark move wakes its consumers'
//! long polls and its acks=all waiters.
//!
//! [`PartitionWriter::make_durable`] waits until the appends are on disk as configured (a
//! group-commit flush by default, see `log::commit`); every acknowledged write awaits it.
//!
//! [`PartitionWriter::wait_committed`] waits, without polling, on two watches of the
//! partition: its high watermark (committed once it passes the appended records) and the term
//! of this broker's leadership in the append's epoch (cancelled by the replica manager the
//! moment that leadership ends: the waiter answers at once instead of at its timeout, and a
//! high watermark reached in another epoch never counts — the records at those offsets may be
//! another leader's).
//!
//! [`policy::TopicPolicy`] is a topic's write configuration, resolved once per request.
//!
//! May depend on: `log`, `replication` (leadership terms, high-watermark advance). Not on the
//! network, the request codec or `broker`.

pub mod policy;

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::log::{LogError, LogStore, PartitionLog, TxnMarker};
use crate::replication::manager::ReplicaManager;

pub use policy::TopicPolicy;

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("this broker does not lead {topic}-{partition} in leader epoch {leader_epoch}")]
    NotLeader {
        topic: String,
        partition: i32,
        leader_epoch: i32,
    },
    #[error(
        "leadership of {topic}-{partition} moved before the write was committed; retry on the \
         new leader"
    )]
    LeadershipLost { topic: String, partition: i32 },
    #[error("the in-sync replicas of {topic}-{partition} did not confirm the write in time")]
    Timeout { topic: String, partition: i32 },
    #[error(transparent)]
    Log(#[from] LogError),
}

/// An appended write waiting for its commit.
#[derive(Debug, Clone)]
pub struct PendingCommit {
    topic: String,
    partition: i32,
    log: Arc<PartitionLog>,
    /// The high watermark that commits the write.
    end: i64,
    /// This broker's leadership in the epoch of the append.
    term: CancellationToken,
}

/// The outcome of an append.
#[derive(Debug, Clone)]
pub struct Appended {
    /// Offset of the first appended record (or of the original, for a retried batch).
    pub base_offset: i64,
    pub log_start: i64,
    /// The log end after the append.
    pub log_end: i64,
    /// Every batch was a retry already in the log (nothing written).
    pub duplicate: bool,
    /// Waits for the commit (a retried batch is committed once everything up to the current
    /// log end is).
    pub commit: PendingCommit,
}

/// Told about every transaction marker this broker writes as a leader (the offsets store
/// applies or drops the producer's pending transactional offsets of `__consumer_offsets`).
pub trait MarkerListener: Send + Sync {
    /// `marker` was appended to `topic`-`partition` at `offset` (not yet committed: the
    /// listener waits for the high watermark as for any write).
    fn marker_written(&self, topic: &str, partition: i32, offset: i64, marker: &TxnMarker);
}

/// See the module documentation.
pub struct PartitionWriter {
    logs: Arc<LogStore>,
    replication: Arc<ReplicaManager>,
    markers: std::sync::RwLock<Option<Arc<dyn MarkerListener>>>,
}

impl PartitionWriter {
    pub fn new(logs: Arc<LogStore>, replication: Arc<ReplicaManager>) -> Self {
        Self {
            logs,
            replication,
            markers: std::sync::RwLock::new(None),
        }
    }

    /// Sets who is told about written transaction markers.
    pub fn set_marker_listener(&self, listener: Arc<dyn MarkerListener>) {
        *self.markers.write().unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    /// Appends the transaction marker `marker` as the leader of the partition in
    /// `leader_epoch` (Kafka's control batch; see `log::txn`), ending the producer's
    /// transaction in the partition, and moves the high watermark as far as the ISR allows.
    /// The caller then awaits [`Self::make_durable`] and [`Self::wait_committed`] as Produce
    /// does. A marker of an older producer epoch answers `LogError::InvalidProducerEpoch`, one
    /// from an older coordinator epoch `LogError::CoordinatorFenced`. On `__consumer_offsets`
    /// the marker listener applies (commit) or drops (abort) the producer's pending
    /// transactional offsets. Blocking (a sled write).
    pub fn write_txn_marker(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        marker: TxnMarker,
    ) -> Result<Appended, WriteError> {
        let (log, term) = self.leading(topic, partition, leader_epoch)?;
        let out = log.append_txn_marker(marker, leader_epoch, false)?;
        if let Some(l) = self
            .markers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            l.marker_written(topic, partition, out.base_offset, &marker);
        }
        self.replication.after_leader_append(topic, partition)?;
        Ok(Appended {
            base_offset: out.base_offset,
            log_start: out.log_start,
            log_end: out.log_end,
            duplicate: false,
            commit: PendingCommit {
                topic: topic.to_string(),
                partition,
                log,
                end: out.log_end,
                term,
            },
        })
    }

    /// The log of a partition this broker leads in `leader_epoch`, with the term of that
    /// leadership.
    fn leading(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
    ) -> Result<(Arc<PartitionLog>, CancellationToken), WriteError> {
        let not_leader = || WriteError::NotLeader {
            topic: topic.to_string(),
            partition,
            leader_epoch,
        };
        let term = self
            .replication
            .leader_term(topic, partition, leader_epoch)
            .ok_or_else(not_leader)?;
        let log = self
            .logs
            .partition(topic, partition)
            .ok_or_else(not_leader)?;
        Ok((log, term))
    }

    /// Appends validated batches as the leader of the partition in `leader_epoch` and moves
    /// the high watermark as far as the ISR allows. Blocking (a sled write).
    pub fn append(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        batches: &[Bytes],
    ) -> Result<Appended, WriteError> {
        self.append_verified(topic, partition, leader_epoch, batches, None)
    }

    /// [`Self::append`] for a Produce with a transactional id: `verified` holds the KIP-890
    /// guards its verification took (see [`PartitionLog::append_as_leader_verified`]).
    pub fn append_verified(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        batches: &[Bytes],
        verified: Option<&[crate::log::txn::VerificationGuard]>,
    ) -> Result<Appended, WriteError> {
        let (log, term) = self.leading(topic, partition, leader_epoch)?;
        let out = log.append_as_leader_verified(batches, leader_epoch, false, verified)?;
        self.replication.after_leader_append(topic, partition)?;
        Ok(Appended {
            base_offset: out.base_offset,
            log_start: out.log_start,
            log_end: out.log_end,
            duplicate: out.duplicate,
            commit: PendingCommit {
                topic: topic.to_string(),
                partition,
                log,
                end: out.log_end,
                term,
            },
        })
    }

    /// A commit wait for offsets up to `end` of a partition this broker leads in
    /// `leader_epoch` (for callers that appended earlier and wait later).
    pub fn pending(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        end: i64,
    ) -> Result<PendingCommit, WriteError> {
        let (log, term) = self.leading(topic, partition, leader_epoch)?;
        Ok(PendingCommit {
            topic: topic.to_string(),
            partition,
            log,
            end,
            term,
        })
    }

    /// Waits until everything appended so far is as durable as configured (a group-commit
    /// flush by default). Awaited before any write is acknowledged.
    pub async fn make_durable(&self) -> Result<(), WriteError> {
        Ok(self.logs.after_append().await?)
    }

    /// Waits until the high watermark passes the write while this broker still leads in the
    /// epoch of the append, until `deadline` at the latest.
    pub async fn wait_committed(
        &self,
        c: &PendingCommit,
        deadline: Instant,
    ) -> Result<(), WriteError> {
        let lost = || WriteError::LeadershipLost {
            topic: c.topic.clone(),
            partition: c.partition,
        };
        let mut hw = c.log.watch_high_watermark();
        tokio::select! {
            biased;
            _ = c.term.cancelled() => Err(lost()),
            r = hw.wait_for(|h| *h >= c.end) => match r {
                // Checked again: a leader change and the high watermark may race.
                Ok(_) if !c.term.is_cancelled() => Ok(()),
                // The term ended, or the partition's log was deleted.
                _ => Err(lost()),
            },
            _ = tokio::time::sleep_until(deadline) => Err(WriteError::Timeout {
                topic: c.topic.clone(),
                partition: c.partition,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;
    use crate::metadata::ClusterImage;
    use crate::replication::manager::{NoPeers, ReplicaTransport, ReplicationConfig};
    use crate::replication::{PartitionFetch, ReplicaFetchRequest};
    use std::time::Duration;

    struct Setup {
        writer: PartitionWriter,
        replication: Arc<ReplicaManager>,
        image: ClusterImage,
        transport: Arc<dyn ReplicaTransport>,
        shutdown: CancellationToken,
        _db: sled::Db,
    }

    /// Broker 1 leads t-0 with broker 2 in the ISR.
    fn setup() -> Setup {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let logs = Arc::new(LogStore::with_db(db.clone(), u64::MAX));
        let image = ClusterImage::with_brokers([1, 2])
            .with_topic("t", vec![vec![1, 2]])
            .unwrap();
        let replication = ReplicaManager::new(1, ReplicationConfig::default(), logs.clone());
        let transport: Arc<dyn ReplicaTransport> = Arc::new(NoPeers);
        let shutdown = CancellationToken::new();
        replication
            .on_metadata(&image, &transport, &shutdown)
            .unwrap();
        Setup {
            writer: PartitionWriter::new(logs, replication.clone()),
            replication,
            image,
            transport,
            shutdown,
            _db: db,
        }
    }

    fn epoch(image: &ClusterImage) -> i32 {
        image.topics["t"].partitions[0].leader_epoch
    }

    #[tokio::test]
    async fn the_followers_fetch_commits_and_wakes_the_waiter() {
        let s = setup();
        let e = epoch(&s.image);
        let a = s
            .writer
            .append("t", 0, e, &[make_batch(3, -1, -1)])
            .unwrap();
        assert_eq!((a.base_offset, a.log_end), (0, 3));
        let far = Instant::now() + Duration::from_secs(60);
        let started = Instant::now();
        let writer = &s.writer;
        let wait = writer.wait_committed(&a.commit, far);
        let follow = async {
            // The follower fetches from the new log end: it has the records.
            s.replication
                .handle_fetch(ReplicaFetchRequest {
                    replica_id: 2,
                    max_wait_ms: 0,
                    max_bytes: 1 << 20,
                    partition_max_bytes: 1 << 20,
                    partitions: vec![PartitionFetch {
                        topic: "t".into(),
                        partition: 0,
                        leader_epoch: e,
                        fetch_offset: 3,
                        last_fetched_epoch: e,
                        topic_id: 0,
                    }],
                    session: Default::default(),
                })
                .await;
        };
        let (r, ()) = tokio::join!(wait, follow);
        r.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        s.shutdown.cancel();
    }

    #[tokio::test]
    async fn losing_leadership_answers_at_once_not_at_the_timeout() {
        let mut s = setup();
        let e = epoch(&s.image);
        let a = s
            .writer
            .append("t", 0, e, &[make_batch(2, -1, -1)])
            .unwrap();
        let far = Instant::now() + Duration::from_secs(60);
        let started = Instant::now();
        let waiter = s.writer.wait_committed(&a.commit, far);
        let move_leadership = async {
            tokio::task::yield_now().await;
            let p = &mut s.image.topics.get_mut("t").unwrap().partitions[0];
            p.leader = 2;
            p.leader_epoch += 1;
            s.replication
                .on_metadata(&s.image, &s.transport, &s.shutdown)
                .unwrap();
        };
        let (r, ()) = tokio::join!(waiter, move_leadership);
        assert!(matches!(r, Err(WriteError::LeadershipLost { .. })), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // The old epoch is refused from now on.
        assert!(matches!(
            s.writer.append("t", 0, e, &[make_batch(1, -1, -1)]),
            Err(WriteError::NotLeader { .. })
        ));
        s.shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn an_uncommitted_write_times_out_at_its_deadline() {
        let s = setup();
        let e = epoch(&s.image);
        let a = s
            .writer
            .append("t", 0, e, &[make_batch(1, -1, -1)])
            .unwrap();
        let r = s
            .writer
            .wait_committed(&a.commit, Instant::now() + Duration::from_millis(300))
            .await;
        assert!(matches!(r, Err(WriteError::Timeout { .. })), "{r:?}");
        s.shutdown.cancel();
    }
}
