//! An in-process harness for partition replication: three replica managers on three sled
//! logs, a fake transport that calls the leader's manager directly (and can cut a broker
//! off), and a controller that applies commands to one shared metadata image. It checks
//! that acknowledged (high-watermark) records survive a leader failure, that the deposed
//! leader's uncommitted tail is truncated, that the ISR shrinks and grows, that a
//! partition reassignment under continuous acks=all writes completes and keeps them all, and
//! that fetch sessions carry only active partitions while idle followers stay in sync.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use raftka::log::batch::split_batches;
use raftka::log::LogStore;
use raftka::metadata::{ClusterImage, MetadataCommand, MetadataError};
use raftka::protocol::batch_builder::BatchBuilder;
use raftka::replication::manager::{
    BoxFuture, IsrProposer, ReplicaManager, ReplicaTransport, ReplicationConfig,
};
use raftka::replication::{PeerError, ReplicaFetchRequest, ReplicaFetchResponse};
use tokio_util::sync::CancellationToken;

struct Net {
    managers: Mutex<HashMap<i32, Arc<ReplicaManager>>>,
    down: Mutex<HashSet<i32>>,
    /// How long a replica fetch's answer travels (network latency; 0 by default).
    latency_ms: std::sync::atomic::AtomicU64,
    /// Per topic: partitions named in fetch requests and in their answers.
    carried: Mutex<HashMap<String, (usize, usize)>>,
}

impl Net {
    fn count(&self, req: &ReplicaFetchRequest, resp: &ReplicaFetchResponse) {
        let mut carried = self.carried.lock().unwrap();
        for p in &req.partitions {
            carried.entry(p.topic.clone()).or_default().0 += 1;
        }
        for p in &resp.partitions {
            carried.entry(p.topic.clone()).or_default().1 += 1;
        }
    }

    fn carried(&self, topic: &str) -> (usize, usize) {
        self.carried
            .lock()
            .unwrap()
            .get(topic)
            .copied()
            .unwrap_or_default()
    }
}

struct Transport {
    me: i32,
    net: Arc<Net>,
}

/// A fetch over a link the test cut: what a timed-out gRPC call reports.
fn unreachable(broker: i32) -> PeerError {
    PeerError::Call {
        broker,
        call: "ReplicaFetch",
        code: 14,
        message: "unreachable (the test cut the link)".into(),
    }
}

impl ReplicaTransport for Transport {
    fn fetch(
        &self,
        leader: i32,
        req: ReplicaFetchRequest,
    ) -> BoxFuture<'_, Result<ReplicaFetchResponse, PeerError>> {
        Box::pin(async move {
            let down = self.net.down.lock().unwrap().clone();
            if down.contains(&leader) || down.contains(&self.me) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Err(unreachable(leader));
            }
            let m = self.net.managers.lock().unwrap().get(&leader).cloned();
            let named = req.clone();
            let resp = match m {
                Some(m) => m.handle_fetch(req).await,
                None => return Err(PeerError::UnknownBroker(leader)),
            };
            // The answer travels for `latency_ms`.
            let latency = self
                .net
                .latency_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            if latency > 0 {
                tokio::time::sleep(Duration::from_millis(latency)).await;
            }
            // A long poll answered after the link went down never arrives (a leader's appends
            // wake its followers' polls at once, so the answer can come while it is cut off).
            let down = self.net.down.lock().unwrap().clone();
            if down.contains(&leader) || down.contains(&self.me) {
                return Err(unreachable(leader));
            }
            self.net.count(&named, &resp);
            Ok(resp)
        })
    }
}

struct Cluster {
    net: Arc<Net>,
    image: Mutex<ClusterImage>,
    logs: HashMap<i32, Arc<LogStore>>,
    transports: HashMap<i32, Arc<dyn ReplicaTransport>>,
    shutdown: HashMap<i32, CancellationToken>,
    /// How long an ISR change takes to commit (a Raft round trip; 0 by default).
    propose_delay_ms: std::sync::atomic::AtomicU64,
    _dbs: Vec<tempfile::TempDir>,
}

struct Proposer(Arc<Cluster>);

impl IsrProposer for Proposer {
    fn propose(&self, cmd: MetadataCommand) -> BoxFuture<'_, Result<(), MetadataError>> {
        Box::pin(async move {
            let delay = self
                .0
                .propose_delay_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            self.0.submit(cmd)
        })
    }
}

impl Cluster {
    fn new() -> Arc<Self> {
        let net = Arc::new(Net {
            managers: Mutex::new(HashMap::new()),
            down: Mutex::new(HashSet::new()),
            latency_ms: Default::default(),
            carried: Mutex::new(HashMap::new()),
        });
        let mut image = ClusterImage::with_brokers(1..=3);
        let mut logs = HashMap::new();
        let mut transports: HashMap<i32, Arc<dyn ReplicaTransport>> = HashMap::new();
        let mut dbs = Vec::new();
        for id in 1..=3 {
            let dir = tempfile::tempdir().unwrap();
            logs.insert(
                id,
                Arc::new(
                    LogStore::open(
                        dir.path(),
                        &raftka::log::sled_config::SledSettings {
                            cache_bytes: 8 << 20,
                            segment_bytes: raftka::log::sled_config::DEFAULT_SEGMENT_BYTES,
                            flush_every_ms: 500,
                        },
                        u64::MAX,
                    )
                    .unwrap(),
                ),
            );
            dbs.push(dir);
            transports.insert(
                id,
                Arc::new(Transport {
                    me: id,
                    net: net.clone(),
                }),
            );
        }
        image
            .apply(&MetadataCommand::CreateTopic {
                name: "t".into(),
                assignments: vec![vec![1, 2, 3]],
                configs: Default::default(),
                id: 0,
            })
            .unwrap();
        let cfg = ReplicationConfig {
            lag_time_max_ms: 400,
            fetch_wait_max_ms: 100,
            fetch_max_bytes: 1 << 20,
            fetch_backoff_ms: 20,
            ..ReplicationConfig::default()
        };
        let shutdown: HashMap<i32, CancellationToken> =
            (1..=3).map(|id| (id, CancellationToken::new())).collect();
        for id in 1..=3 {
            let m = ReplicaManager::new(id, cfg, logs[&id].clone());
            net.managers.lock().unwrap().insert(id, m);
        }
        let c = Arc::new(Self {
            net,
            image: Mutex::new(image),
            logs,
            transports,
            shutdown,
            propose_delay_ms: Default::default(),
            _dbs: dbs,
        });
        for id in 1..=3 {
            let m = c.manager(id);
            tokio::spawn(m.clone().isr_loop(
                Arc::new(Proposer(c.clone())),
                Duration::from_millis(50),
                c.shutdown[&id].clone(),
            ));
        }
        c.publish();
        c
    }

    fn manager(&self, id: i32) -> Arc<ReplicaManager> {
        self.net.managers.lock().unwrap()[&id].clone()
    }

    fn publish(&self) {
        let image = self.image.lock().unwrap().clone();
        for id in 1..=3 {
            if self.net.down.lock().unwrap().contains(&id) {
                continue;
            }
            self.manager(id)
                .on_metadata(&image, &self.transports[&id], &self.shutdown[&id])
                .unwrap();
        }
    }

    fn submit(&self, cmd: MetadataCommand) -> Result<(), MetadataError> {
        self.image.lock().unwrap().apply(&cmd)?;
        self.publish();
        Ok(())
    }

    fn partition(&self) -> raftka::metadata::PartitionMeta {
        self.image.lock().unwrap().topics["t"].partitions[0].clone()
    }

    /// Appends as the current leader and waits (bounded) until the high watermark covers it:
    /// an acks=all acknowledgement.
    async fn produce_acked(&self, values: &[&str]) -> i64 {
        let leader = self.partition().leader;
        let p = self.partition();
        let log = self.logs[&leader].partition("t", 0).unwrap();
        let out = log
            .append_as_leader(&[batch(values)], p.leader_epoch, false)
            .unwrap();
        self.manager(leader).after_leader_append("t", 0).unwrap();
        let mut hw = log.watch_high_watermark();
        tokio::time::timeout(Duration::from_secs(10), hw.wait_for(|h| *h >= out.log_end))
            .await
            .expect("acks=all within 10 s")
            .unwrap();
        out.log_end
    }
}

fn batch(values: &[&str]) -> Bytes {
    BatchBuilder::new()
        .timestamp(1)
        .values(values)
        .build()
        .unwrap()
}

fn values(logs: &LogStore) -> Vec<String> {
    let log = logs.partition("t", 0).unwrap();
    let r = log.read(0, 1 << 30, true).unwrap();
    let mut out = Vec::new();
    for b in split_batches(&r.records, usize::MAX).unwrap_or_default() {
        let mut b = b.clone();
        for rec in kafka_protocol::records::RecordBatchDecoder::decode(&mut b)
            .unwrap()
            .records
        {
            out.push(String::from_utf8(rec.value.unwrap().to_vec()).unwrap());
        }
    }
    out
}

fn hw(c: &Cluster, id: i32) -> i64 {
    c.logs[&id]
        .partition("t", 0)
        .unwrap()
        .offsets()
        .high_watermark
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_leader_failure_and_the_old_tail_is_truncated() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_test_writer()
        .try_init();
    let c = Cluster::new();
    eprintln!("cluster up");
    assert_eq!(c.partition().leader, 1);
    c.produce_acked(&["a", "b"]).await;
    c.produce_acked(&["c"]).await;

    // The leader is cut off; it appends a record nobody can replicate (never acknowledged).
    c.net.down.lock().unwrap().insert(1);
    let p = c.partition();
    let l1 = c.logs[&1].partition("t", 0).unwrap();
    l1.append_as_leader(&[batch(&["lost"])], p.leader_epoch, false)
        .unwrap();

    // The controller fences it: a new leader from the ISR, epoch + 1.
    c.submit(MetadataCommand::FenceBroker { id: 1 }).unwrap();
    let p2 = c.partition();
    assert!(p2.leader == 2 || p2.leader == 3);
    assert_eq!(p2.leader_epoch, p.leader_epoch + 1);
    c.produce_acked(&["d"]).await;

    // Broker 1 comes back as a follower: it truncates "lost" and converges.
    c.net.down.lock().unwrap().remove(&1);
    c.submit(MetadataCommand::UnfenceBroker {
        id: 1,
        incarnation: 0,
    })
    .unwrap();
    let expected = vec!["a", "b", "c", "d"];
    // Followers learn the high watermark on their next fetch.
    for id in 1..=3 {
        wait_until("every broker sees the high watermark", || hw(&c, id) == 4).await;
    }
    for id in 1..=3 {
        assert_eq!(values(&c.logs[&id]), expected, "broker {id}");
    }
    // And it rejoins the ISR.
    wait_until("broker 1 back in the ISR", || {
        c.partition().isr.contains(&1)
    })
    .await;
    for id in 1..=3 {
        c.shutdown[&id].cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_follower_leaves_the_isr_so_writes_continue() {
    let c = Cluster::new();
    c.produce_acked(&["a"]).await;
    c.net.down.lock().unwrap().insert(3);
    // Without ISR shrink this would block forever; with it, the write is acknowledged once
    // broker 3 is dropped after replica.lag.time.max.ms (400 ms here).
    c.produce_acked(&["b"]).await;
    assert!(!c.partition().isr.contains(&3));
    c.net.down.lock().unwrap().remove(&3);
    wait_until("broker 3 rejoins", || c.partition().isr.contains(&3)).await;
    wait_until("broker 3 sees the high watermark", || hw(&c, 3) == 2).await;
    assert_eq!(values(&c.logs[&3]), vec!["a", "b"]);
    for id in 1..=3 {
        c.shutdown[&id].cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_partitions_are_not_carried_by_fetches_and_stay_in_sync() {
    let c = Cluster::new();
    c.submit(MetadataCommand::CreateTopic {
        name: "idle".into(),
        assignments: vec![vec![1, 2, 3]; 50],
        configs: Default::default(),
        id: 0,
    })
    .unwrap();
    c.produce_acked(&["a"]).await;
    // Fetch sessions are open once the followers have learnt the high watermark.
    wait_until("followers see the high watermark", || {
        hw(&c, 2) == 1 && hw(&c, 3) == 1
    })
    .await;
    let before = c.net.carried("idle");
    let t_before = c.net.carried("t");
    for i in 0..20 {
        c.produce_acked(&[&format!("v{i}")]).await;
    }
    // Longer than replica.lag.time.max.ms (400 ms) with nothing written to "idle".
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    // 20 acks=all writes to "t" took fetches of "t" only: the 50 idle partitions were
    // neither named nor answered (sessionless, every fetch carries all 51 both ways) ...
    assert_eq!(c.net.carried("idle"), before);
    let t = c.net.carried("t");
    assert!(t.0 - t_before.0 >= 20 && t.1 - t_before.1 >= 20, "{t:?}");
    // ... and their followers still count as caught up: nobody left their ISR.
    let image = c.image.lock().unwrap().clone();
    for p in &image.topics["idle"].partitions {
        assert_eq!(p.isr.len(), 3, "partition {} isr {:?}", p.index, p.isr);
    }
    assert_eq!(c.partition().isr.len(), 3);
    for id in 1..=3 {
        c.shutdown[&id].cancel();
    }
}

/// One acks=all write to whoever leads now: true when the high watermark covered it within
/// half a second (a write that lands on a broker losing its leadership is never acknowledged).
async fn try_produce(c: &Cluster, v: &str) -> bool {
    let p = c.partition();
    if p.leader < 0 || !c.manager(p.leader).is_leading("t", 0, p.leader_epoch) {
        return false;
    }
    let Some(log) = c.logs[&p.leader].partition("t", 0) else {
        return false;
    };
    let Ok(out) = log.append_as_leader(&[batch(&[v])], p.leader_epoch, false) else {
        return false;
    };
    c.manager(p.leader).after_leader_append("t", 0).unwrap();
    let mut hw = log.watch_high_watermark();
    let covered = tokio::time::timeout(
        Duration::from_millis(500),
        hw.wait_for(|h| *h >= out.log_end),
    )
    .await;
    matches!(covered, Ok(Ok(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_under_continuous_writes_completes_and_keeps_every_acknowledged_record() {
    let c = Cluster::new();
    // ISR changes commit 30 ms after the leader decided them, while writes go on: the joining
    // replica must hold the high watermark from its deciding fetch on, or the leader would
    // acknowledge records it lacks before it takes over.
    c.propose_delay_ms
        .store(30, std::sync::atomic::Ordering::Relaxed);
    // And a fetch answer travels 5 ms, about half the time between two writes (10 ms), so a
    // commit often lands while the follower still lacks the newest acknowledged record.
    c.net
        .latency_ms
        .store(5, std::sync::atomic::Ordering::Relaxed);
    c.produce_acked(&["a"]).await;
    // Down to one replica on broker 1: a removal only, complete at once.
    c.submit(MetadataCommand::AlterReassignment {
        topic: "t".into(),
        partition: 0,
        target: Some(vec![1]),
    })
    .unwrap();
    assert_eq!(c.partition().replicas, vec![1]);
    // A writer acknowledges record after record (the leader alone is the ISR) while broker 2
    // is added, catches up, joins the ISR and takes over.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(vec!["a".to_string()]));
    let writer = {
        let (c, stop, acked) = (c.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let v = format!("v{i}");
                i += 1;
                if try_produce(&c, &v).await {
                    acked.lock().unwrap().push(v);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    wait_until("writes before the move", || {
        acked.lock().unwrap().len() > 50
    })
    .await;
    c.submit(MetadataCommand::AlterReassignment {
        topic: "t".into(),
        partition: 0,
        target: Some(vec![2]),
    })
    .unwrap();
    assert_eq!(c.partition().adding, vec![2]);
    wait_until("the move completes", || {
        let p = c.partition();
        p.replicas == vec![2] && p.leader == 2
    })
    .await;
    let n = acked.lock().unwrap().len();
    wait_until("writes acknowledged by the new leader", || {
        acked.lock().unwrap().len() > n + 20
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    // Every acknowledged record is in the new leader's log, in order.
    let log = values(&c.logs[&2]);
    let acked = acked.lock().unwrap().clone();
    let mut pos = log.iter();
    for v in &acked {
        assert!(
            pos.any(|l| l == v),
            "acknowledged {v} missing from broker 2 (or out of order): {} acked, log {:?}",
            acked.len(),
            &log[log.len().saturating_sub(20)..]
        );
    }
    for id in 1..=3 {
        c.shutdown[&id].cancel();
    }
}

/// The image follower deletes the log of a replica moved off this broker, but it walks an
/// image that may be older than the one a role sync (an API handler's) already took up: a
/// replica moved away and straight back is then open, followed — and in the ISR. Deleting it
/// on the older image's word would wipe a replica the leader counts as holding every
/// acknowledged record. `delete_unassigned` asks the newest image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_image_never_deletes_a_replica_moved_back_here() {
    let c = Cluster::new();
    c.produce_acked(&["a", "b"]).await;
    // Broker 3 leaves the partition; the image saying so is the one the follower walks late.
    c.submit(MetadataCommand::AlterReassignment {
        topic: "t".into(),
        partition: 0,
        target: Some(vec![1, 2]),
    })
    .unwrap();
    let stale = Arc::new(c.image.lock().unwrap().clone());
    // Its data goes (the newest image agrees)...
    assert!(c
        .manager(3)
        .delete_unassigned("t", 0, || stale.clone())
        .unwrap());
    assert!(c.logs[&3].partition("t", 0).is_none());
    // ...then it comes back, catches up and joins the ISR.
    c.submit(MetadataCommand::AlterReassignment {
        topic: "t".into(),
        partition: 0,
        target: Some(vec![1, 2, 3]),
    })
    .unwrap();
    wait_until("broker 3 back in the ISR", || {
        let p = c.partition();
        p.isr.contains(&3) && p.adding.is_empty()
    })
    .await;
    let acked = c.produce_acked(&["c"]).await;
    wait_until("broker 3 holds every acknowledged record", || {
        c.logs[&3]
            .partition("t", 0)
            .is_some_and(|l| l.offsets().high_watermark >= acked)
    })
    .await;
    // The late walk of the stale image: the newest image keeps the replica.
    let latest = Arc::new(c.image.lock().unwrap().clone());
    assert!(!c
        .manager(3)
        .delete_unassigned("t", 0, || latest.clone())
        .unwrap());
    assert_eq!(values(&c.logs[&3]), vec!["a", "b", "c"]);
    for id in 1..=3 {
        c.shutdown[&id].cancel();
    }
}

/// The same for the logs of an older topic of the same name: a topic deleted and re-created
/// (a new id) while the image follower still walks an image of the old one. Judged by that
/// image, the re-created topic's log (recorded with the new id) looks like the older topic's
/// and would go; `delete_older_topic_log` asks the newest image, which names the new id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_image_never_deletes_a_recreated_topics_log() {
    let c = Cluster::new();
    c.produce_acked(&["old"]).await;
    c.submit(MetadataCommand::DeleteTopic { name: "t".into() })
        .unwrap();
    for id in 1..=3 {
        c.logs[&id].delete_partition("t", 0).unwrap();
    }
    c.submit(MetadataCommand::CreateTopic {
        name: "t".into(),
        assignments: vec![vec![1, 2, 3]],
        configs: Default::default(),
        id: 77,
    })
    .unwrap();
    c.produce_acked(&["new"]).await;
    wait_until("broker 3 holds the new topic's record", || {
        c.logs[&3]
            .partition("t", 0)
            .is_some_and(|l| l.offsets().high_watermark >= 1)
    })
    .await;
    let latest = Arc::new(c.image.lock().unwrap().clone());
    assert_eq!(
        c.manager(3)
            .delete_older_topic_log("t", 0, || latest.clone())
            .unwrap(),
        None
    );
    assert_eq!(values(&c.logs[&3]), vec!["new"]);
    for id in 1..=3 {
        c.shutdown[&id].cancel();
    }
}
