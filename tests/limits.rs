//! Broker limits against hostile or careless clients (issue 10, items 4-8): oversized
//! CreateTopics/CreatePartitions, `fetch.max.bytes`, connection limits and idle timeouts, a
//! full disk, and the expiry of idempotent-producer state. Raw protocol over TCP, so each
//! case sends exactly the request a client could.
//!
//! The `#[ignore]`d tests at the end print memory figures (run them with `--ignored
//! --nocapture`); they assert bounds, but are slow.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{api_versions_frame, call, is_closed, read_frame, BrokerProcess};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use raftka::protocol::batch_builder::BatchBuilder;

const POLICY_VIOLATION: i16 = 44;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const KAFKA_STORAGE_ERROR: i16 = 56;

fn connect(b: &BrokerProcess) -> TcpStream {
    let s = TcpStream::connect(b.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

fn name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.into()))
}

/// A batch of `count` records of `size` bytes, from producer `pid` starting at `seq`
/// (pid -1: not idempotent).
fn batch(count: usize, size: usize, pid: i64, seq: i32) -> Bytes {
    let value = vec![b'v'; size];
    let b = BatchBuilder::new().timestamp(1);
    let b = if pid < 0 { b } else { b.producer(pid, 0, seq) };
    b.values((0..count).map(|_| &value)).build().unwrap()
}

/// Produces one batch with acks=all; returns (error code, base offset).
fn produce(s: &mut TcpStream, topic: &str, records: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let r = call(s, 9, 1, &req).expect("produce response");
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn create_topic(s: &mut TcpStream, topic: &str, partitions: i32) -> i16 {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)]);
    call(s, 5, 1, &req).expect("create topics response").topics[0].error_code
}

/// One fetch of partition 0 from `offset`: (error, record bytes, next offset, high watermark,
/// records).
fn fetch(
    s: &mut TcpStream,
    topic: &str,
    offset: i64,
    max_bytes: i32,
) -> (i16, usize, i64, i64, usize) {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(max_bytes)])]);
    let r = call(s, 11, 2, &req).expect("fetch response");
    let p = &r.responses[0].partitions[0];
    let mut records = p.records.clone().unwrap_or_default();
    let size = records.len();
    let mut next = offset;
    let mut count = 0;
    while !records.is_empty() {
        for rec in RecordBatchDecoder::decode(&mut records).unwrap().records {
            if rec.offset >= offset {
                count += 1;
                next = rec.offset + 1;
            }
        }
    }
    (p.error_code, size, next, p.high_watermark, count)
}

/// Reads the whole partition with `max_bytes` fetches; returns the records read.
fn read_all(s: &mut TcpStream, topic: &str, max_bytes: i32) -> usize {
    let mut offset = 0;
    let mut total = 0;
    loop {
        let (err, _, next, hw, count) = fetch(s, topic, offset, max_bytes);
        assert_eq!(err, 0, "fetch error");
        total += count;
        offset = next;
        if offset >= hw {
            return total;
        }
        assert!(
            count > 0,
            "a fetch below the high watermark returned nothing"
        );
    }
}

#[test]
fn create_requests_over_the_record_limit_are_refused_before_placement() {
    let b = BrokerProcess::start(&["--max.records.per.user.op", "100"]);
    let mut s = connect(&b);
    let topic = |n: &str, partitions: i32, rf: i16| {
        CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
    };
    for validate_only in [true, false] {
        // 2^31-1 partitions: Kafka's POLICY_VIOLATION at once, for validate_only too.
        let started = Instant::now();
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_validate_only(validate_only)
            .with_topics(vec![topic("huge", i32::MAX, 1)]);
        let r = call(&mut s, 5, 1, &req).expect("answer to 2^31-1 partitions");
        assert_eq!(r.topics[0].error_code, POLICY_VIOLATION);
        assert_eq!(
            r.topics[0].error_message.as_deref(),
            Some("Unable to perform excessively large batch operation.")
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        // The limit counts the whole request: two topics of 60 are refused together.
        let req = CreateTopicsRequest::default()
            .with_validate_only(validate_only)
            .with_topics(vec![topic("a", 60, 1), topic("b", 60, 1)]);
        let r = call(&mut s, 5, 2, &req).unwrap();
        assert_eq!(
            r.topics.iter().map(|t| t.error_code).collect::<Vec<_>>(),
            [POLICY_VIOLATION, POLICY_VIOLATION]
        );
        // An absurd replication factor is refused before placement as well.
        let req = CreateTopicsRequest::default()
            .with_validate_only(validate_only)
            .with_topics(vec![topic("rf", 1, i16::MAX)]);
        let r = call(&mut s, 5, 3, &req).unwrap();
        assert_eq!(r.topics[0].error_code, INVALID_REPLICATION_FACTOR);
    }
    // Within the limit all is well.
    assert_eq!(create_topic(&mut s, "ok", 50), 0);
    // CreatePartitions: growing beyond the limit in one request is refused the same way.
    for validate_only in [true, false] {
        for count in [i32::MAX, 151] {
            let req = CreatePartitionsRequest::default()
                .with_timeout_ms(10_000)
                .with_validate_only(validate_only)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(name("ok"))
                    .with_count(count)]);
            let r = call(&mut s, 1, 4, &req).expect("create partitions response");
            assert_eq!(r.results[0].error_code, POLICY_VIOLATION, "count {count}");
        }
    }
    let req = CreatePartitionsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(name("ok"))
            .with_count(150)]);
    assert_eq!(call(&mut s, 1, 5, &req).unwrap().results[0].error_code, 0);
    // The broker is still up and holds nothing it refused.
    let md = call(&mut s, 1, 6, &MetadataRequest::default().with_topics(None)).unwrap();
    let names: Vec<String> = md
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    assert_eq!(names, ["ok"]);
    assert_eq!(md.topics[0].partitions.len(), 150);
}

#[test]
fn fetch_max_bytes_caps_every_response_and_consumers_still_read_everything() {
    const CAP: usize = 200_000;
    let b = BrokerProcess::start(&["--fetch.max.bytes", &CAP.to_string()]);
    let mut s = connect(&b);
    assert_eq!(create_topic(&mut s, "big", 1), 0);
    // 3 MB in 30 KB batches.
    let mut produced = 0;
    for _ in 0..100 {
        assert_eq!(produce(&mut s, "big", batch(3, 10_000, -1, -1)).0, 0);
        produced += 3;
    }
    // Eight concurrent fetches asking for 2^31-1 bytes each.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let mut s = connect(&b);
            std::thread::spawn(move || fetch(&mut s, "big", 0, i32::MAX))
        })
        .collect();
    for t in threads {
        let (err, size, _, _, count) = t.join().unwrap();
        assert_eq!(err, 0);
        assert!(
            size <= CAP,
            "response of {size} bytes above fetch.max.bytes {CAP}"
        );
        assert!(count > 0);
    }
    // A consumer asking for everything at once still reads it all, in capped steps.
    assert_eq!(read_all(&mut s, "big", i32::MAX), produced);
    // A batch larger than the cap is still returned whole (consumers make progress).
    assert_eq!(create_topic(&mut s, "huge-batch", 1), 0);
    assert_eq!(
        produce(&mut s, "huge-batch", batch(1, 300_000, -1, -1)).0,
        0
    );
    assert_eq!(produce(&mut s, "huge-batch", batch(1, 10, -1, -1)).0, 0);
    let (err, size, next, _, count) = fetch(&mut s, "huge-batch", 0, i32::MAX);
    assert_eq!((err, count, next), (0, 1, 1));
    assert!(size > CAP && size < 2 * CAP);
    assert_eq!(read_all(&mut s, "huge-batch", i32::MAX), 2);
}

/// True when a fresh connection gets an ApiVersions answer.
fn answers(b: &BrokerProcess) -> Option<TcpStream> {
    let mut s = connect(b);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&api_versions_frame(0, 1)).ok()?;
    read_frame(&mut s).map(|_| s)
}

#[test]
fn connections_over_the_per_ip_limit_are_closed() {
    let b = BrokerProcess::start(&["--max.connections.per.ip", "3"]);
    let mut open: Vec<TcpStream> = (0..3)
        .map(|i| answers(&b).unwrap_or_else(|| panic!("connection {i} refused")))
        .collect();
    let mut fourth = connect(&b);
    assert!(is_closed(&mut fourth), "the 4th connection must be closed");
    // A slot given back is usable again (the broker notices the close asynchronously).
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        if let Some(s) = answers(&b) {
            break s;
        }
        assert!(Instant::now() < deadline, "slot never given back");
    };
    drop(again);
    // The override of an address wins.
    let b = BrokerProcess::start(&[
        "--max.connections.per.ip",
        "1",
        "--max.connections.per.ip.overrides",
        "127.0.0.1:2",
    ]);
    let _one = answers(&b).expect("first");
    let _two = answers(&b).expect("second (override)");
    assert!(is_closed(&mut connect(&b)));
}

#[test]
fn idle_and_slowloris_connections_are_closed() {
    let b = BrokerProcess::start(&["--connections.max.idle.ms", "1000"]);
    let mut idle = connect(&b);
    let mut slow = connect(&b);
    // A frame declaring 100 MB, sent in part, then a byte now and then: never a request.
    slow.write_all(&(100i32 << 20).to_be_bytes()).unwrap();
    slow.write_all(&[0, 18]).unwrap();
    let started = Instant::now();
    let mut busy = connect(&b);
    // A connection that keeps completing requests stays open past the timeout.
    while started.elapsed() < Duration::from_millis(2500) {
        busy.write_all(&api_versions_frame(0, 1)).unwrap();
        assert!(
            read_frame(&mut busy).is_some(),
            "a busy connection was closed"
        );
        let _ = slow.write_all(&[0]);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(is_closed(&mut idle), "idle connection still open");
    assert!(is_closed(&mut slow), "slowloris connection still open");
    busy.write_all(&api_versions_frame(0, 1)).unwrap();
    assert!(read_frame(&mut busy).is_some());
}

/// Unmounts a file system on drop and removes its mount point.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A broker whose data directory is a fresh tmpfs of `mb` MiB; `None` when this process may
/// not mount (not root).
fn broker_on_tmpfs(mb: u32, extra: &[&str]) -> Option<(Unmount, BrokerProcess)> {
    let dir = tempfile::tempdir().ok()?;
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        return None;
    }
    let unmount = Unmount(dir.path().to_path_buf());
    let port = common::free_port();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_raftka"))
        .arg("--listeners")
        .arg(format!("PLAINTEXT://127.0.0.1:{port}"))
        .arg("--log.dirs")
        .arg(dir.path())
        .args(&extra)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start raftka");
    let b = BrokerProcess {
        child,
        port,
        dir,
        extra,
    };
    b.wait_ready();
    Some((unmount, b))
}

#[test]
fn a_full_disk_refuses_appends_at_once_serves_reads_and_recovers_after_delete() {
    let Some((_unmount, mut b)) = broker_on_tmpfs(
        96,
        &[
            "--log.dir.min.free.bytes",
            "41943040",
            "--log.flush.interval.messages",
            "1",
        ],
    ) else {
        eprintln!("SKIPPED: cannot mount a tmpfs (needs root)");
        return;
    };
    let mut s = connect(&b);
    assert_eq!(create_topic(&mut s, "keep", 1), 0);
    assert_eq!(create_topic(&mut s, "filler", 1), 0);
    let mut kept = 0;
    for _ in 0..20 {
        assert_eq!(produce(&mut s, "keep", batch(1, 2000, -1, -1)).0, 0);
        kept += 1;
    }
    // Fill the disk; every answer comes at once, and the first refusal is STORAGE_ERROR.
    let mut refused = false;
    for _ in 0..3000 {
        let started = Instant::now();
        let (err, _) = produce(&mut s, "filler", batch(20, 5000, -1, -1));
        assert!(started.elapsed() < Duration::from_secs(5), "produce hung");
        if err != 0 {
            assert_eq!(err, KAFKA_STORAGE_ERROR);
            refused = true;
            break;
        }
    }
    assert!(refused, "the disk never filled");
    assert_eq!(
        produce(&mut s, "keep", batch(1, 10, -1, -1)).0,
        KAFKA_STORAGE_ERROR
    );
    // Reads and metadata go on.
    assert_eq!(read_all(&mut s, "keep", 1 << 20), kept);
    assert!(call(&mut s, 1, 7, &MetadataRequest::default().with_topics(None)).is_some());
    // Deleting a topic works while full and gives the space back: appends resume.
    let del = DeleteTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topic_names(vec![name("filler")]);
    let r = call(&mut s, 4, 8, &del).expect("DeleteTopics answered while full");
    assert_eq!(r.responses[0].error_code, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match produce(&mut s, "keep", batch(1, 10, -1, -1)).0 {
            0 => break,
            KAFKA_STORAGE_ERROR => assert!(Instant::now() < deadline, "appends never resumed"),
            e => panic!("unexpected error {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    kept += 1;
    assert_eq!(read_all(&mut s, "keep", 1 << 20), kept);
    // Nothing acknowledged is lost, across a SIGKILL too.
    drop(s);
    b.kill_and_restart();
    let mut s = connect(&b);
    assert_eq!(read_all(&mut s, "keep", 1 << 20), kept);
}

/// InitProducerId for an idempotent producer: its id.
fn producer_id(s: &mut TcpStream) -> i64 {
    let r = call(
        s,
        1,
        3,
        &InitProducerIdRequest::default()
            .with_transaction_timeout_ms(60_000)
            .with_transactional_id(None),
    )
    .expect("InitProducerId");
    assert_eq!(r.error_code, 0);
    r.producer_id.0
}

#[test]
fn idle_producer_ids_expire_from_memory_and_disk() {
    let mut b = BrokerProcess::start(&[
        "--producer.id.expiration.ms",
        "1000",
        "--producer.id.expiration.check.interval.ms",
        "200",
    ]);
    let mut s = connect(&b);
    assert_eq!(create_topic(&mut s, "a", 1), 0);
    assert_eq!(create_topic(&mut s, "canary", 1), 0);
    let (pa, pc) = (producer_id(&mut s), producer_id(&mut s));
    assert_eq!(produce(&mut s, "a", batch(1, 10, pa, 0)), (0, 0));
    // While the state is there a retry is answered as a duplicate.
    assert_eq!(produce(&mut s, "a", batch(1, 10, pa, 0)), (0, 0));
    assert_eq!(produce(&mut s, "canary", batch(1, 10, pc, 0)), (0, 0));
    // Once the canary's state is gone (its retry is appended anew), so is the older one of
    // producer `pa`: it wrote before the canary.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut canary_offset = 0;
    while canary_offset == 0 {
        assert!(Instant::now() < deadline, "producer state never expired");
        std::thread::sleep(Duration::from_millis(100));
        let (err, offset) = produce(&mut s, "canary", batch(1, 10, pc, 0));
        assert_eq!(err, 0);
        canary_offset = offset;
    }
    // Restarted without expiry: `pa`'s state must be gone from disk too, so its retry is new
    // data now (as in Kafka, a producer without state may continue at any sequence).
    drop(s);
    b.extra = vec![];
    b.kill_and_restart();
    let mut s = connect(&b);
    assert_eq!(produce(&mut s, "a", batch(1, 10, pa, 0)), (0, 1));
    assert_eq!(produce(&mut s, "a", batch(1, 10, pa, 1)), (0, 2));
    // And the new state works: a retry is a duplicate again.
    assert_eq!(produce(&mut s, "a", batch(1, 10, pa, 1)), (0, 2));
}

/// Resident set size of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
#[ignore = "memory figure: 8 concurrent max-size fetches of a 190 MiB partition"]
fn rss_under_concurrent_max_size_fetches() {
    let b = BrokerProcess::start(&[]);
    let mut s = connect(&b);
    assert_eq!(create_topic(&mut s, "big", 1), 0);
    for _ in 0..190 {
        assert_eq!(produce(&mut s, "big", batch(100, 10_000, -1, -1)).0, 0);
    }
    let before = rss_kib(b.child.id());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let mut s = connect(&b);
            std::thread::spawn(move || fetch(&mut s, "big", 0, i32::MAX).1)
        })
        .collect();
    let mut peak = before;
    let sizes: Vec<usize> = loop {
        peak = peak.max(rss_kib(b.child.id()));
        if threads.iter().all(|t| t.is_finished()) {
            break threads.into_iter().map(|t| t.join().unwrap()).collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!(
        "RSS before {} MiB, peak during 8 fetches {} MiB; response sizes {:?}",
        before / 1024,
        peak / 1024,
        sizes
    );
    assert!(sizes.iter().all(|s| *s <= 57_671_680));
}

#[test]
#[ignore = "memory figure: 5,000 idle connections (raise ulimit -n)"]
fn rss_with_five_thousand_idle_connections() {
    let b = BrokerProcess::start(&["--max.connections.per.ip", "6000"]);
    let before = rss_kib(b.child.id());
    let mut conns = Vec::new();
    for _ in 0..5000 {
        let mut s = TcpStream::connect(b.addr()).unwrap();
        // 12 bytes declaring a 100 MB frame, never completed.
        s.write_all(&(100i32 << 20).to_be_bytes()).unwrap();
        s.write_all(&[0, 18, 0, 0, 0, 0, 0, 1]).unwrap();
        conns.push(s);
    }
    assert!(answers(&b).is_some());
    let after = rss_kib(b.child.id());
    println!(
        "RSS before {} MiB, with 5,000 idle connections each declaring a 100 MB frame {} MiB",
        before / 1024,
        after / 1024
    );
    assert!(after - before < 512 * 1024);
}

#[test]
#[ignore = "memory figure: 100,000 producer ids before and after expiry"]
fn rss_with_a_hundred_thousand_producer_ids() {
    let b = BrokerProcess::start(&[
        "--producer.id.expiration.ms",
        "30000",
        "--producer.id.expiration.check.interval.ms",
        "1000",
    ]);
    let mut s = connect(&b);
    assert_eq!(create_topic(&mut s, "p", 1), 0);
    println!("RSS at start {} MiB", rss_kib(b.child.id()) / 1024);
    // Three rounds of 100,000 new producer ids, waiting for expiry after each: without
    // expiry every round would add its state.
    for round in 0..3i64 {
        let first = 1_000_000 + round * 100_000;
        let started = Instant::now();
        let mut base = 0;
        // 100 requests of 1,000 batches, each batch from its own producer.
        for r in 0..100i64 {
            let mut records = BytesMut::new();
            for i in 0..1000 {
                records.extend_from_slice(&batch(1, 10, first + r * 1000 + i, 0));
            }
            let (err, offset) = produce(&mut s, "p", records.freeze());
            assert_eq!(err, 0);
            base = offset + 999;
        }
        println!(
            "round {round}: RSS with 100,000 more producer ids {} MiB (produced in {:?})",
            rss_kib(b.child.id()) / 1024,
            started.elapsed()
        );
        // Expired once a retry of the round's last producer is appended anew.
        let last = first + 99_999;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (_, offset) = produce(&mut s, "p", batch(1, 10, last, 0));
            if offset != base {
                break;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(500));
        }
        // Let the pass that expired it finish trimming the heap.
        std::thread::sleep(Duration::from_millis(1500));
        println!(
            "round {round}: RSS after expiry {} MiB",
            rss_kib(b.child.id()) / 1024
        );
    }
}

/// Sends `GET /health` on a kept-alive HTTP/1.1 connection; true when a 200 came back.
fn http_health(s: &mut TcpStream) -> bool {
    let req = b"GET /health HTTP/1.1\r\nHost: broker\r\n\r\n";
    if s.write_all(req).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(n) if n > 0 => buf[..n].starts_with(b"HTTP/1.1 200"),
        _ => false,
    }
}

#[test]
fn http_admin_connections_share_the_limits_and_idle_timeout() {
    let http = common::free_port();
    let http_addr = format!("127.0.0.1:{http}");
    let b = BrokerProcess::start(&[
        "--http.listener",
        &http_addr,
        "--max.connections.per.ip",
        "3",
        "--connections.max.idle.ms",
        "1500",
    ]);
    let connect_http = || {
        let s = TcpStream::connect(&http_addr).expect("connect http");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    // Two HTTP connections and one Kafka connection fill the per-IP limit of 3.
    let mut h1 = connect_http();
    let mut h2 = connect_http();
    assert!(http_health(&mut h1) && http_health(&mut h2));
    let _kafka = answers(&b).expect("a Kafka connection within the limit");
    let mut over = connect_http();
    assert!(
        is_closed(&mut over),
        "a 4th connection (HTTP) must be closed"
    );
    assert!(
        is_closed(&mut connect(&b)),
        "a 4th connection (Kafka) must be closed"
    );
    // A connection that keeps asking stays open; one that asks nothing is closed.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3000) {
        assert!(http_health(&mut h1), "a busy HTTP connection was closed");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(is_closed(&mut h2), "idle HTTP connection still open");
    // Its slot is free again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = connect_http();
        if http_health(&mut s) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle connection's slot never came back"
        );
    }
}
