//! The coordinator on one broker's real logs: a full transaction, fencing, the timeout
//! reaper, and a new coordinator finishing a transaction it finds half-ended in the log.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::host::TxnHost;
use super::loader::TxnLoader;
use super::state::{encode_key, encode_value, TxnMeta, TxnState};
use super::{TxnCoordinator, TxnError, TxnSettings, TXN_TOPIC};
use crate::lease::SelfLease;
use crate::log::{LogStore, TxnMarker};
use crate::metadata::ClusterImage;
use crate::replication::manager::{
    NoPeers, ReplicaManager, ReplicaTransport, ReplicationConfig, RoleListener,
};
use crate::writer::PartitionWriter;

struct Host {
    image: Mutex<Arc<ClusterImage>>,
}

impl TxnHost for Host {
    fn image(&self) -> Arc<ClusterImage> {
        self.image.lock().unwrap().clone()
    }
    fn offsets_marker_without_topic(&self, _partition: i32, _marker: TxnMarker) -> bool {
        true
    }
}

struct Setup {
    logs: Arc<LogStore>,
    writer: Arc<PartitionWriter>,
    host: Arc<Host>,
    shutdown: CancellationToken,
    epoch: i32,
    _db: sled::Db,
}

/// Broker 1 alone leads `__transaction_state` (one partition) and t-0, t-1.
fn setup() -> Setup {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let logs = Arc::new(LogStore::with_db(db.clone(), u64::MAX));
    let mut image = ClusterImage::with_brokers([1]);
    for (name, parts) in [(TXN_TOPIC, 1), ("t", 2)] {
        image = image.with_topic(name, vec![vec![1]; parts]).unwrap();
        for p in 0..parts {
            logs.open_partition(name, p as i32).unwrap();
        }
    }
    let replication = ReplicaManager::new(1, ReplicationConfig::default(), logs.clone());
    let transport: Arc<dyn ReplicaTransport> = Arc::new(NoPeers);
    let shutdown = CancellationToken::new();
    replication
        .on_metadata(&image, &transport, &shutdown)
        .unwrap();
    let epoch = image.topics[TXN_TOPIC].partitions[0].leader_epoch;
    Setup {
        writer: Arc::new(PartitionWriter::new(logs.clone(), replication)),
        logs,
        host: Arc::new(Host {
            image: Mutex::new(Arc::new(image)),
        }),
        shutdown,
        epoch,
        _db: db,
    }
}

fn settings() -> TxnSettings {
    TxnSettings {
        max_timeout_ms: 60_000,
        write_timeout: Duration::from_secs(10),
        // The tests call the reaper themselves.
        abort_interval: Duration::from_secs(3600),
        id_expiration_ms: 60_000,
        cluster: false,
    }
}

/// A coordinator that has loaded the partition.
async fn coordinator(s: &Setup) -> Arc<TxnCoordinator> {
    coordinator_with(s, settings(), Arc::new(SelfLease::new(1000))).await
}

/// A coordinator with these settings and self-lease that has loaded the partition.
async fn coordinator_with(
    s: &Setup,
    settings: TxnSettings,
    lease: Arc<SelfLease>,
) -> Arc<TxnCoordinator> {
    let c = TxnCoordinator::new(1, settings, s.logs.clone(), s.writer.clone(), lease);
    let host: Arc<dyn TxnHost> = s.host.clone();
    c.start(Arc::downgrade(&host), s.shutdown.clone());
    TxnLoader {
        coordinator: Arc::downgrade(&c),
    }
    .roles_changed(&[(TXN_TOPIC.to_string(), 0, s.epoch)], &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while c.describe("probe") == Err(TxnError::LoadInProgress) {
        assert!(
            std::time::Instant::now() < deadline,
            "loading never finished"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c
}

async fn wait_state(c: &TxnCoordinator, id: &str, state: TxnState) -> TxnMeta {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(m) = c.describe(id) {
            if m.state == state {
                return m;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never reached {state:?}: {:?}",
            c.describe(id)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn log_end(s: &Setup, topic: &str, p: i32) -> i64 {
    s.logs.partition(topic, p).unwrap().offsets().log_end
}

static ALLOC: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1000);

fn alloc() -> Result<i64, String> {
    Ok(ALLOC.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}

const WAIT: Duration = Duration::from_secs(10);

fn tp(t: &str, p: i32) -> (String, i32) {
    (t.to_string(), p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_transaction_marks_every_partition_and_completes() {
    let s = setup();
    let c = coordinator(&s).await;
    let (pid, epoch) = c
        .init_producer_id("a", 30_000, None, &alloc, WAIT)
        .await
        .unwrap();
    assert_eq!(epoch, 0);
    assert_eq!(c.describe("a").unwrap().state, TxnState::Empty);
    c.add_partitions("a", pid, epoch, &[tp("t", 0), tp("t", 1)])
        .await
        .unwrap();
    // Adding a partition already in the transaction writes nothing new.
    let state_end = log_end(&s, TXN_TOPIC, 0);
    c.add_partitions("a", pid, epoch, &[tp("t", 1)])
        .await
        .unwrap();
    assert_eq!(log_end(&s, TXN_TOPIC, 0), state_end);
    let m = c.describe("a").unwrap();
    assert_eq!(m.state, TxnState::Ongoing);
    assert_eq!(m.partitions, BTreeSet::from([tp("t", 0), tp("t", 1)]));
    assert!(c.verify_partition("a", pid, epoch, "t", 1).unwrap());
    let (e0, e1) = (log_end(&s, "t", 0), log_end(&s, "t", 1));
    c.end_txn("a", pid, epoch, true).await.unwrap();
    let done = wait_state(&c, "a", TxnState::CompleteCommit).await;
    assert!(done.partitions.is_empty());
    // One marker in each partition.
    assert_eq!(log_end(&s, "t", 0), e0 + 1);
    assert_eq!(log_end(&s, "t", 1), e1 + 1);
    // A retried EndTxn is answered again; the opposite one is refused.
    c.end_txn("a", pid, epoch, true).await.unwrap();
    assert!(matches!(
        c.end_txn("a", pid, epoch, false).await,
        Err(TxnError::InvalidState(_))
    ));
    // Unknown producers and ids.
    assert_eq!(
        c.end_txn("a", pid + 1, epoch, true).await,
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        c.add_partitions("nobody", pid, epoch, &[tp("t", 0)]).await,
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(c.describe("nobody"), Err(TxnError::NotFound));
    let long = "x".repeat(40_000);
    assert_eq!(
        c.init_producer_id(&long, 30_000, None, &alloc, WAIT).await,
        Err(TxnError::IdTooLong)
    );
    s.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_producer_aborts_the_open_transaction_and_fences_the_old_one() {
    let s = setup();
    let c = coordinator(&s).await;
    let (pid, e0) = c
        .init_producer_id("z", 30_000, None, &alloc, WAIT)
        .await
        .unwrap();
    c.add_partitions("z", pid, e0, &[tp("t", 0)]).await.unwrap();
    let end = log_end(&s, "t", 0);
    let (pid2, e2) = c
        .init_producer_id("z", 30_000, None, &alloc, WAIT)
        .await
        .unwrap();
    assert_eq!(pid2, pid);
    // One bump for the abort that fences the old producer, one for the new producer.
    assert_eq!(e2, e0 + 2);
    assert_eq!(log_end(&s, "t", 0), end + 1, "the abort marker");
    assert_eq!(c.describe("z").unwrap().state, TxnState::Empty);
    assert_eq!(
        c.add_partitions("z", pid, e0, &[tp("t", 1)]).await,
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        c.end_txn("z", pid, e0, true).await,
        Err(TxnError::ProducerFenced)
    );
    // KIP-360: naming a stale epoch is fenced too; naming the current one bumps it.
    assert_eq!(
        c.init_producer_id("z", 30_000, Some((pid, e0)), &alloc, WAIT)
            .await,
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        c.init_producer_id("z", 30_000, Some((pid, e2)), &alloc, WAIT)
            .await,
        Ok((pid, e2 + 1))
    );
    assert_eq!(
        c.init_producer_id("z", 0, None, &alloc, WAIT).await,
        Err(TxnError::InvalidTimeout(60_000))
    );
    assert_eq!(
        c.init_producer_id("z", 60_001, None, &alloc, WAIT).await,
        Err(TxnError::InvalidTimeout(60_000))
    );
    s.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_aborts_an_expired_transaction_with_a_bumped_epoch() {
    let s = setup();
    let c = coordinator(&s).await;
    let (pid, e) = c
        .init_producer_id("slow", 1, None, &alloc, WAIT)
        .await
        .unwrap();
    c.add_partitions("slow", pid, e, &[tp("t", 1)])
        .await
        .unwrap();
    let (fast_pid, fast_e) = c
        .init_producer_id("fast", 60_000, None, &alloc, WAIT)
        .await
        .unwrap();
    c.add_partitions("fast", fast_pid, fast_e, &[tp("t", 0)])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while c.describe("slow").unwrap().state == TxnState::Ongoing {
        assert!(std::time::Instant::now() < deadline);
        c.abort_timed_out().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let m = wait_state(&c, "slow", TxnState::CompleteAbort).await;
    assert_eq!((m.producer_id, m.producer_epoch), (pid, e + 1));
    assert_eq!(
        c.end_txn("slow", pid, e, true).await,
        Err(TxnError::ProducerFenced)
    );
    // The transaction within its timeout is left alone.
    assert_eq!(c.describe("fast").unwrap().state, TxnState::Ongoing);
    s.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_coordinator_completes_a_prepared_commit_it_loads() {
    let s = setup();
    // What a coordinator that died after persisting PrepareCommit left in the log.
    let meta = TxnMeta {
        producer_id: 77,
        producer_epoch: 3,
        last_producer_id: -1,
        last_producer_epoch: -1,
        timeout_ms: 60_000,
        state: TxnState::PrepareCommit,
        partitions: BTreeSet::from([tp("t", 0), tp("t", 1)]),
        start_ms: 1,
        update_ms: 2,
    };
    let ongoing = TxnMeta {
        producer_id: 78,
        state: TxnState::Ongoing,
        partitions: BTreeSet::from([tp("t", 1)]),
        start_ms: super::coordinator::now_ms(),
        ..meta.clone()
    };
    let batch = crate::offsets_topic::build_batch(
        &[
            (encode_key("p"), Some(encode_value(&meta))),
            (encode_key("o"), Some(encode_value(&ongoing))),
            (encode_key("gone"), Some(encode_value(&ongoing))),
            (encode_key("gone"), None),
        ],
        1,
    );
    s.writer.append(TXN_TOPIC, 0, s.epoch, &[batch]).unwrap();
    let (e0, e1) = (log_end(&s, "t", 0), log_end(&s, "t", 1));
    let c = coordinator(&s).await;
    let m = wait_state(&c, "p", TxnState::CompleteCommit).await;
    assert_eq!((m.producer_id, m.producer_epoch), (77, 3));
    assert_eq!((log_end(&s, "t", 0), log_end(&s, "t", 1)), (e0 + 1, e1 + 1));
    // The ongoing transaction goes on; the forgotten id is gone.
    assert_eq!(c.describe("o").unwrap(), ongoing);
    assert_eq!(c.describe("gone"), Err(TxnError::NotFound));
    // Losing the partition: NOT_COORDINATOR from then on.
    TxnLoader {
        coordinator: Arc::downgrade(&c),
    }
    .roles_changed(&[], &[(TXN_TOPIC.to_string(), 0)]);
    assert_eq!(c.describe("o"), Err(TxnError::NotCoordinator));
    assert_eq!(
        c.add_partitions("o", 78, 3, &[tp("t", 0)]).await,
        Err(TxnError::NotCoordinator)
    );
    s.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_ids_expire_and_stay_forgotten_after_a_reload() {
    let s = setup();
    let c = coordinator(&s).await;
    let (idle_pid, _) = c
        .init_producer_id("idle", 30_000, None, &alloc, WAIT)
        .await
        .unwrap();
    let (pid, e) = c
        .init_producer_id("busy", 30_000, None, &alloc, WAIT)
        .await
        .unwrap();
    c.add_partitions("busy", pid, e, &[tp("t", 0)])
        .await
        .unwrap();
    // Not yet idle long enough.
    c.expire_ids(super::coordinator::now_ms()).await;
    assert!(c.describe("idle").is_ok());
    // transactional.id.expiration.ms (60 s here) later: the idle id goes, the one with an
    // ongoing transaction stays.
    c.expire_ids(super::coordinator::now_ms() + 61_000).await;
    assert_eq!(c.describe("idle"), Err(TxnError::NotFound));
    assert_eq!(c.describe("busy").unwrap().state, TxnState::Ongoing);
    // A new coordinator replaying the log forgets it too; the id starts anew.
    TxnLoader {
        coordinator: Arc::downgrade(&c),
    }
    .roles_changed(&[], &[(TXN_TOPIC.to_string(), 0)]);
    let c2 = coordinator(&s).await;
    assert_eq!(c2.describe("idle"), Err(TxnError::NotFound));
    assert_eq!(c2.describe("busy").unwrap().state, TxnState::Ongoing);
    let (pid2, e2) = c2
        .init_producer_id("idle", 30_000, None, &alloc, WAIT)
        .await
        .unwrap();
    assert_ne!(pid2, idle_pid);
    assert_eq!(e2, 0);
    s.shutdown.cancel();
}

/// In a cluster, a coordinator whose lease holds but whose metadata image already names
/// another leader of its `__transaction_state` partition (the loader has not dropped the slot
/// yet: a broker that just resumed from a pause) answers NOT_COORDINATOR, not from its state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_the_image_moved_away_answers_not_coordinator() {
    let s = setup();
    let lease = Arc::new(SelfLease::new(60_000));
    lease.renew(lease.now_ms());
    let c = coordinator_with(
        &s,
        TxnSettings {
            cluster: true,
            ..settings()
        },
        lease,
    )
    .await;
    c.init_producer_id("a", 30_000, None, &alloc, WAIT)
        .await
        .unwrap();
    assert_eq!(c.describe("a").unwrap().state, TxnState::Empty);
    {
        let mut image = s.host.image.lock().unwrap();
        let mut moved = (**image).clone();
        let part = &mut moved.topics.get_mut(TXN_TOPIC).unwrap().partitions[0];
        part.leader = 2;
        part.leader_epoch += 1;
        *image = Arc::new(moved);
    }
    assert_eq!(c.describe("a"), Err(TxnError::NotCoordinator));
    assert_eq!(
        c.init_producer_id("a", 30_000, None, &alloc, WAIT).await,
        Err(TxnError::NotCoordinator)
    );
    s.shutdown.cancel();
}
