//! End-to-end tests with librdkafka (through the `rdkafka` crate) as an independent client.
//!
//! Each test starts its own `raftka` binary on a free loopback port with a temporary
//! `log.dirs`, waits until it answers a Metadata request, and kills it when dropped. When a
//! test fails, the broker's stderr is printed. `RDKAFKA_DEBUG=protocol,msg,...` passes a
//! `debug` setting to every librdkafka client for diagnosis.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders, Timestamp};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(30);

/// A broker process owned by one test.
struct Broker {
    child: Child,
    port: u16,
    log_path: PathBuf,
    _dir: TempDir,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let log_path = dir.path().join("broker.log");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_raftka"))
            .arg("--listeners")
            .arg(format!("PLAINTEXT://127.0.0.1:{port}"))
            // Kafka port + 2 (the default) may belong to another test's ephemeral socket.
            .args(["--http.listener", "127.0.0.1:0"])
            .arg("--log.dirs")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(File::create(dir.path().join("broker.out")).expect("stdout file"))
            .stderr(File::create(&log_path).expect("log file"))
            .spawn()
            .expect("spawn raftka");
        let mut broker = Broker {
            child,
            port,
            log_path,
            _dir: dir,
        };
        broker.wait_ready();
        broker
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Polls Metadata until the broker answers (or exits, or `WAIT` passes).
    fn wait_ready(&mut self) {
        let client: BaseConsumer = client_config(&self.bootstrap())
            .set("group.id", "raftka-readiness")
            .create()
            .expect("client");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("raftka exited before ready: {status}\n{}", self.log());
            }
            match client.fetch_metadata(None, Duration::from_millis(500)) {
                Ok(md) if !md.brokers().is_empty() => return,
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    // Connection refused returns at once: back off briefly between polls.
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => panic!(
                    "raftka not answering Metadata after {WAIT:?}: {other:?}\n{}",
                    self.log()
                ),
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- raftka log ({}) ----\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("client.id", "raftka-rdkafka-test");
    if let Ok(debug) = std::env::var("RDKAFKA_DEBUG") {
        cfg.set("debug", debug);
    }
    cfg
}

fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> Result<String, String> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new()
        .request_timeout(Some(WAIT))
        .operation_timeout(Some(WAIT));
    let mut results = rt
        .block_on(admin.create_topics([&topic], &opts))
        .map_err(|e| format!("CreateTopics failed: {e}"))?;
    assert_eq!(results.len(), 1, "one result per topic");
    results
        .pop()
        .unwrap()
        .map_err(|(n, code)| format!("{n}: {code:?}"))
}

fn partitions_in_metadata(bootstrap: &str, topic: &str) -> Vec<(i32, i32)> {
    let c: BaseConsumer = client_config(bootstrap)
        .set("group.id", "raftka-md")
        .create()
        .expect("client");
    let md = c.fetch_metadata(Some(topic), WAIT).expect("metadata");
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .expect("topic in metadata");
    assert_eq!(t.error(), None, "metadata error for {topic}");
    let mut parts: Vec<(i32, i32)> = t
        .partitions()
        .iter()
        .map(|p| (p.id(), p.leader()))
        .collect();
    parts.sort_unstable();
    parts
}

#[derive(Clone, Debug, PartialEq)]
struct Rec {
    partition: i32,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: i64,
}

/// A varied record set: small and large (compressible) values, empty and null values,
/// records with no headers, with empty and null header values, and binary header values.
fn records(codec: &str, range: std::ops::Range<usize>) -> Vec<Rec> {
    range
        .map(|i| {
            let value = match i {
                13 => None,
                _ if i % 10 == 0 => Some(format!("{codec} large {i} ").repeat(4096).into_bytes()),
                _ if i % 7 == 3 => Some(Vec::new()),
                _ => Some(format!("value {i} for {codec}: {}", "x".repeat(i)).into_bytes()),
            };
            let headers = if i % 4 == 0 {
                Vec::new()
            } else {
                vec![
                    ("index".to_string(), Some(i.to_string().into_bytes())),
                    ("empty".to_string(), Some(Vec::new())),
                    ("null".to_string(), None),
                    ("bin".to_string(), Some((0..=255u8).rev().collect())),
                    ("index".to_string(), Some(b"duplicate key".to_vec())),
                ]
            };
            Rec {
                partition: (i % 3) as i32,
                key: format!("key-{codec}-{i}").into_bytes(),
                value,
                headers,
                timestamp: 1_700_000_000_000 + i as i64,
            }
        })
        .collect()
}

/// A delivery report: the record's `(partition, offset)`, or the error.
type Report = Result<(i32, i64), String>;

/// Collects each record's delivery report, indexed by the opaque (the record's index), and
/// librdkafka's "Produce MessageSet" debug lines, which name the codec each batch went out with.
struct DeliveryLog {
    reports: Mutex<BTreeMap<usize, Report>>,
    produce_lines: Mutex<Vec<String>>,
}

impl ClientContext for DeliveryLog {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        if msg.contains("Produce MessageSet") || msg.contains("not compressing") {
            self.produce_lines.lock().unwrap().push(msg.to_string());
        }
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32)
            || std::env::var_os("RDKAFKA_DEBUG").is_some()
        {
            eprintln!("librdkafka producer {level:?} {fac}: {msg}");
        }
    }
}

impl ProducerContext for DeliveryLog {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, idx: usize) {
        let r = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.to_string()),
        };
        assert!(
            self.reports.lock().unwrap().insert(idx, r).is_none(),
            "two delivery reports for record {idx}"
        );
    }
}

fn idempotent_producer(bootstrap: &str, codec: &str) -> BaseProducer<DeliveryLog> {
    let debug = match std::env::var("RDKAFKA_DEBUG") {
        Ok(d) => format!("{d},msg"),
        Err(_) => "msg".to_string(),
    };
    client_config(bootstrap)
        // librdkafka drops debug lines below this level (the crate derives it from the `log`
        // crate's level, which is off here).
        .set_log_level(RDKafkaLogLevel::Debug)
        .set("debug", debug)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", codec)
        // Long enough that each partition's records share a (compressed) batch.
        .set("linger.ms", "20")
        .set("message.timeout.ms", "30000")
        .create_with_context(DeliveryLog {
            reports: Mutex::new(BTreeMap::new()),
            produce_lines: Mutex::new(Vec::new()),
        })
        .expect("producer")
}

/// Sends `recs` (opaque = position in `recs` + `first_idx`) and waits for every report.
fn produce(producer: &BaseProducer<DeliveryLog>, topic: &str, recs: &[Rec], first_idx: usize) {
    for (n, r) in recs.iter().enumerate() {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        let mut rec = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, first_idx + n)
            .partition(r.partition)
            .key(r.key.as_slice())
            .timestamp(r.timestamp)
            .headers(headers);
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        producer.send(rec).map_err(|(e, _)| e).expect("enqueue");
    }
    producer.flush(WAIT).expect("flush: all records delivered");
}

fn received(m: &rdkafka::message::BorrowedMessage<'_>) -> (i64, Rec) {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    let timestamp = match m.timestamp() {
        Timestamp::CreateTime(t) => t,
        other => panic!(
            "expected CreateTime, got {other:?} at offset {}",
            m.offset()
        ),
    };
    let rec = Rec {
        partition: m.partition(),
        key: m.key().expect("every record has a key").to_vec(),
        value: m.payload().map(<[u8]>::to_vec),
        headers,
        timestamp,
    };
    (m.offset(), rec)
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    client_config(bootstrap)
        .set("group.id", "raftka-rdkafka-test")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "error")
        // Verify the CRC-32C of every batch the broker returns.
        .set("check.crcs", "true")
        .create()
        .expect("consumer")
}

/// Assigns `(partition, start)` pairs of `topic` and polls until `count` records arrived.
fn consume(bootstrap: &str, topic: &str, from: &[(i32, Offset)], count: usize) -> Vec<(i64, Rec)> {
    let c = consumer(bootstrap);
    let mut tpl = TopicPartitionList::new();
    for &(p, off) in from {
        tpl.add_partition_offset(topic, p, off).unwrap();
    }
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "got {} of {count} records from {topic} within {WAIT:?}",
            out.len()
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(received(&m)),
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    // Nothing beyond what was produced: a short extra poll must return no record.
    match c.poll(Duration::from_millis(300)) {
        Some(Ok(m)) => panic!("unexpected extra record at offset {}", m.offset()),
        Some(Err(e)) => panic!("consume error: {e}"),
        None => {}
    }
    out
}

/// Expected `(offset, record)` per partition, in send order.
fn expected_by_partition(recs: &[Rec]) -> BTreeMap<i32, Vec<(i64, Rec)>> {
    let mut by: BTreeMap<i32, Vec<(i64, Rec)>> = BTreeMap::new();
    for r in recs {
        let v = by.entry(r.partition).or_default();
        v.push((v.len() as i64, r.clone()));
    }
    by
}

fn roundtrip(codec: &str) {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = format!("roundtrip-{codec}");
    assert_eq!(create_topic(&bs, &topic, 3), Ok(topic.clone()));
    assert_eq!(
        partitions_in_metadata(&bs, &topic),
        vec![(0, 1), (1, 1), (2, 1)]
    );

    // Two rounds, so each partition holds more than one batch.
    let all = records(codec, 0..60);
    let producer = idempotent_producer(&bs, codec);
    produce(&producer, &topic, &all[..30], 0);
    produce(&producer, &topic, &all[30..], 30);

    // Delivery reports: every record acknowledged at the next offset of its partition.
    // Every batch went out with the codec under test (librdkafka falls back to uncompressed
    // when the broker's ApiVersions do not allow it).
    // librdkafka decides per broker from its ApiVersions (e.g. lz4 needs FindCoordinator
    // listed), logging "Broker does not support compression type ...: not compressing batch".
    let lines = producer.context().produce_lines.lock().unwrap().clone();
    let refused: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("not compressing"))
        .collect();
    assert!(
        refused.is_empty(),
        "librdkafka refused {codec}: {refused:#?}"
    );
    assert!(!lines.is_empty(), "no Produce MessageSet debug line seen");
    let codec_tag = match codec {
        "none" => "uncompressed)".to_string(),
        c => format!(", {c})"),
    };
    for l in &lines {
        assert!(l.ends_with(&codec_tag), "batch not sent with {codec}: {l}");
    }

    let reports = producer.context().reports.lock().unwrap().clone();
    assert_eq!(reports.len(), all.len(), "one delivery report per record");
    let expected = expected_by_partition(&all);
    let mut next = BTreeMap::<i32, i64>::new();
    for (idx, r) in &reports {
        let p = all[*idx].partition;
        let off = next.entry(p).or_insert(0);
        assert_eq!(r, &Ok((p, *off)), "delivery report of record {idx}");
        *off += 1;
    }

    let c = consumer(&bs);
    for (p, recs) in &expected {
        let wm = c.fetch_watermarks(&topic, *p, WAIT).expect("watermarks");
        assert_eq!(wm, (0, recs.len() as i64), "watermarks of partition {p}");
    }

    // Everything from the beginning of all three partitions.
    let got = consume(
        &bs,
        &topic,
        &[
            (0, Offset::Beginning),
            (1, Offset::Beginning),
            (2, Offset::Beginning),
        ],
        all.len(),
    );
    let mut got_by: BTreeMap<i32, Vec<(i64, Rec)>> = BTreeMap::new();
    for (off, r) in got {
        got_by.entry(r.partition).or_default().push((off, r));
    }
    for (p, want) in &expected {
        let have = got_by.get(p).cloned().unwrap_or_default();
        assert_eq!(have.len(), want.len(), "record count of partition {p}");
        for (h, w) in have.iter().zip(want) {
            assert_eq!(h, w, "partition {p}");
        }
    }

    // From the middle of a batch: offsets before the requested one must not be returned.
    let want_p1: Vec<(i64, Rec)> = expected[&1][7..].to_vec();
    let got_p1 = consume(&bs, &topic, &[(1, Offset::Offset(7))], want_p1.len());
    assert_eq!(got_p1, want_p1);
}

#[test]
fn roundtrip_uncompressed() {
    roundtrip("none");
}

#[test]
fn roundtrip_gzip() {
    roundtrip("gzip");
}

/// snappy is built into librdkafka itself (no extra crate feature).
#[test]
fn roundtrip_snappy() {
    roundtrip("snappy");
}

/// lz4 is built into librdkafka itself (no extra crate feature).
#[test]
fn roundtrip_lz4() {
    roundtrip("lz4");
}

#[test]
fn create_topic_then_duplicate_is_rejected() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    assert_eq!(create_topic(&bs, "created", 3), Ok("created".to_string()));
    assert_eq!(
        partitions_in_metadata(&bs, "created"),
        vec![(0, 1), (1, 1), (2, 1)]
    );
    let err = create_topic(&bs, "created", 3).expect_err("second create must fail");
    assert!(
        err.contains(&format!("{:?}", RDKafkaErrorCode::TopicAlreadyExists)),
        "unexpected error: {err}"
    );
    let c = consumer(&bs);
    for p in 0..3 {
        assert_eq!(
            c.fetch_watermarks("created", p, WAIT).expect("watermarks"),
            (0, 0)
        );
    }
}

/// The values `isolation` reads from partition 0 of `topic` from the start until its position
/// passes `end` (markers take offsets but are no records).
fn read_values(bootstrap: &str, topic: &str, isolation: &str, end: i64) -> Vec<Vec<u8>> {
    let c: BaseConsumer = client_config(bootstrap)
        .set("group.id", "raftka-rdkafka-txn")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    loop {
        let pos = c.position().expect("position");
        let at = pos.elements()[0].offset();
        if matches!(at, Offset::Offset(o) if o >= end) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{isolation}: at {at:?} of {end}, read {out:?}"
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(m.payload().unwrap_or_default().to_vec()),
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
}

/// librdkafka's transactional producer through the rdkafka crate: a committed transaction is
/// read by read_committed, an aborted one only by read_uncommitted.
#[test]
fn transactions_commit_and_abort() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    create_topic(&bs, "txn", 1).expect("create");
    let p: BaseProducer = client_config(&bs)
        .set("transactional.id", "rdkafka-txn")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    p.init_transactions(WAIT).expect("init_transactions");
    for (values, commit) in [(&["c1", "c2", "c3"][..], true), (&["a1", "a2"][..], false)] {
        p.begin_transaction().expect("begin");
        for v in values {
            p.send(BaseRecord::<(), str>::to("txn").partition(0).payload(*v))
                .expect("send");
        }
        p.flush(WAIT).expect("flush");
        if commit {
            p.commit_transaction(WAIT).expect("commit");
        } else {
            p.abort_transaction(WAIT).expect("abort");
        }
    }
    // 5 records and 2 markers.
    let c = consumer(&bs);
    let end = c.fetch_watermarks("txn", 0, WAIT).expect("watermarks").1;
    assert_eq!(end, 7, "broker log:\n{}", broker.log());
    let committed: Vec<Vec<u8>> = ["c1", "c2", "c3"]
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    assert_eq!(read_values(&bs, "txn", "read_committed", end), committed);
    let all: Vec<Vec<u8>> = ["c1", "c2", "c3", "a1", "a2"]
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    assert_eq!(read_values(&bs, "txn", "read_uncommitted", end), all);
}
