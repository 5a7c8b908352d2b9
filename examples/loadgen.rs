//! Load generator for raftka built on librdkafka (through the `rdkafka` crate), an independent
//! Kafka client, so the figures it prints are what a real client sees.
//!
//! ```text
//! loadgen wait-ready   --bootstrap B [--timeout-s 30]
//! loadgen create-topic --bootstrap B --topic T --partitions P [--replication-factor R]
//! loadgen produce      --bootstrap B --topic T --records N [--size 1024] [--acks all] [--linger-ms 5]
//! loadgen latency      --bootstrap B --topic T [--rate 2000] [--seconds 10] [--size 1024] [--acks all] [--linger-ms 0]
//! loadgen consume      --bootstrap B --topic T --records N [--timeout-s 60]
//! loadgen txn-produce  --bootstrap B --topic T --records N --per-txn K [--size 1024] [--linger-ms 5]
//! ```
//!
//! `produce` takes `--idempotence true` for an idempotent producer (the baseline of
//! `txn-produce`, which is a transactional producer: K records per transaction, each committed
//! before the next begins; it prints throughput and the commit_transaction latency).
//!
//! Every subcommand prints its results as `name=value` pairs on one line (stdout), so scripts
//! can pick them out with grep; diagnostics go to stderr. Optional on every subcommand:
//! `--compression none|gzip|snappy|lz4` (producers) and `--debug CONTEXTS` (librdkafka `debug`).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Parsed `--name value` / `--name=value` flags after the subcommand.
struct Flags {
    values: HashMap<String, String>,
}

impl Flags {
    fn parse(args: &[String]) -> Result<Flags, String> {
        let mut values = HashMap::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => {
                    let v = it
                        .next()
                        .ok_or_else(|| format!("flag --{name} needs a value"))?;
                    (name.to_string(), v.clone())
                }
            };
            values.insert(name, value);
        }
        Ok(Flags { values })
    }

    fn str(&self, name: &str, default: Option<&str>) -> Result<String, String> {
        match (self.values.get(name), default) {
            (Some(v), _) => Ok(v.clone()),
            (None, Some(d)) => Ok(d.to_string()),
            (None, None) => Err(format!("missing required flag --{name}")),
        }
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: Option<T>) -> Result<T, String> {
        match (self.values.get(name), default) {
            (Some(v), _) => v
                .parse()
                .map_err(|_| format!("flag --{name}: cannot parse {v:?}")),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("missing required flag --{name}")),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("usage: loadgen <wait-ready|create-topic|produce|latency|consume> --bootstrap B --topic T ...");
        return ExitCode::from(2);
    };
    let result = Flags::parse(rest).and_then(|flags| match cmd.as_str() {
        "wait-ready" => wait_ready(&flags),
        "create-topic" => create_topic(&flags),
        "produce" => produce(&flags),
        "latency" => latency(&flags),
        "consume" => consume(&flags),
        "txn-produce" => txn_produce(&flags),
        other => Err(format!("unknown subcommand {other:?}")),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen {cmd}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn base_config(flags: &Flags) -> Result<ClientConfig, String> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", flags.str("bootstrap", None)?)
        .set("client.id", "raftka-loadgen");
    if let Some(debug) = flags.values.get("debug") {
        cfg.set("debug", debug);
        // The rdkafka crate otherwise takes the level from the `log` crate (off here).
        cfg.set_log_level(RDKafkaLogLevel::Debug);
    }
    Ok(cfg)
}

/// Polls Metadata until the broker answers with at least one broker, or the timeout passes.
fn wait_ready(flags: &Flags) -> Result<(), String> {
    let timeout = Duration::from_secs(flags.num("timeout-s", Some(30))?);
    let client: BaseConsumer = base_config(flags)?
        .set("group.id", "raftka-loadgen")
        .create()
        .map_err(|e| format!("client: {e}"))?;
    let start = Instant::now();
    loop {
        match client.fetch_metadata(None, Duration::from_millis(500)) {
            Ok(md) if !md.brokers().is_empty() => {
                println!("ready_after_s={:.3}", start.elapsed().as_secs_f64());
                return Ok(());
            }
            Ok(_) => {}
            Err(e) if start.elapsed() >= timeout => {
                return Err(format!("no Metadata answer within {timeout:?}: {e}"))
            }
            Err(_) => {}
        }
        if start.elapsed() >= timeout {
            return Err(format!("Metadata listed no broker within {timeout:?}"));
        }
        // Connection refused fails at once: back off briefly between polls.
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn create_topic(flags: &Flags) -> Result<(), String> {
    let topic = flags.str("topic", None)?;
    let partitions: i32 = flags.num("partitions", Some(1))?;
    let rf: i32 = flags.num("replication-factor", Some(1))?;
    let admin: AdminClient<DefaultClientContext> = base_config(flags)?
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let new_topic = NewTopic::new(&topic, partitions, TopicReplication::Fixed(rf));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = rt
        .block_on(admin.create_topics([&new_topic], &opts))
        .map_err(|e| format!("CreateTopics request failed: {e}"))?;
    for r in results {
        match r {
            Ok(name) => println!("created_topic={name} partitions={partitions}"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                println!("created_topic={name} already_exists=true")
            }
            Err((name, code)) => return Err(format!("CreateTopics {name}: {code:?}")),
        }
    }
    Ok(())
}

/// Producer context shared by `produce` and `latency`: counts deliveries and, for `latency`,
/// records the send-to-delivery-report time of every record. The delivery opaque is the
/// record's send time in nanoseconds since `start`.
struct Ctx {
    start: Instant,
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    latencies_ns: Mutex<Vec<u64>>,
    record_latency: bool,
}

impl ClientContext for Ctx {
    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("librdkafka error: {error}: {reason}");
    }

    /// librdkafka's log lines (`--debug`) on stderr with a wall-clock timestamp in
    /// microseconds, so they line up with broker logs.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        eprintln!("{} {level:?} {fac} {log_message}", wall_clock());
    }
}

/// Waits until every record handed to `producer` is delivered (or failed), with librdkafka's
/// own blocking `rd_kafka_flush`.
///
/// The rdkafka crate's `flush` (which its `commit_transaction` calls first) asks
/// `rd_kafka_flush` with a zero timeout and, while records are outstanding, polls the event
/// queue for `min(remaining, 100 ms)`; that poll only returns at its deadline, so every
/// `commit_transaction` with a record in flight cost a fixed ~100 ms in the client alone
/// (measured: commit p50 ~103 ms at any transaction size, while the broker answered
/// AddPartitionsToTxn, Produce and EndTxn within a few ms). librdkafka's flush with a real
/// timeout waits on the in-flight count instead (the delivery reports are served by the
/// `ThreadedProducer`'s polling thread), after which the crate's flush returns at once.
fn flush_blocking(producer: &ThreadedProducer<Ctx>, timeout: Duration) -> Result<(), String> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the pointer is the live librdkafka handle owned by `producer`, which outlives
    // this call; rd_kafka_flush is thread-safe.
    let err = unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), ms) };
    if err == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(format!("flush: {}", RDKafkaErrorCode::from(err)))
    }
}

/// Seconds since the Unix epoch with microseconds, for `--debug` timelines.
fn wall_clock() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}", now.as_secs(), now.subsec_micros())
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_ns: usize) {
        match result {
            Ok(_) => {
                if self.record_latency {
                    let now = self.start.elapsed().as_nanos() as u64;
                    let lat = now.saturating_sub(sent_at_ns as u64);
                    self.latencies_ns.lock().unwrap().push(lat);
                }
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap();
                if first.is_none() {
                    *first = Some(e.to_string());
                }
            }
        }
    }
}

fn make_producer(
    flags: &Flags,
    default_linger_ms: u32,
    record_latency: bool,
) -> Result<ThreadedProducer<Ctx>, String> {
    let acks = flags.str("acks", Some("all"))?;
    let linger: u32 = flags.num("linger-ms", Some(default_linger_ms))?;
    let compression = flags.str("compression", Some("none"))?;
    let mut cfg = base_config(flags)?;
    cfg.set("acks", &acks)
        .set("linger.ms", linger.to_string())
        .set("compression.type", &compression)
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "60000");
    if let Some(on) = flags.values.get("idempotence") {
        cfg.set("enable.idempotence", on);
    }
    if let Some(id) = flags.values.get("transactional-id") {
        cfg.set("transactional.id", id);
    }
    let ctx = Ctx {
        start: Instant::now(),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
        latencies_ns: Mutex::new(Vec::new()),
        record_latency,
    };
    cfg.create_with_context(ctx)
        .map_err(|e| format!("producer: {e}"))
}

/// Enqueues one record, waiting (bounded) while librdkafka's local queue is full.
fn send_one(
    producer: &ThreadedProducer<Ctx>,
    topic: &str,
    key: &[u8],
    payload: &[u8],
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sent_at = producer.context().start.elapsed().as_nanos() as usize;
        let rec = BaseRecord::with_opaque_to(topic, sent_at)
            .key(key)
            .payload(payload);
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                if Instant::now() > deadline {
                    return Err("local queue stayed full for 60 s: broker not answering".into());
                }
                // The background poll thread drains delivery reports; wait for room.
                std::thread::sleep(Duration::from_micros(500));
            }
            Err((e, _)) => return Err(format!("send: {e}")),
        }
    }
}

fn payload_of(size: usize) -> Vec<u8> {
    // Mildly varied bytes (not all zero) so a compression setting is not trivially ideal.
    (0..size).map(|i| (i * 31 % 251) as u8).collect()
}

fn finish(producer: &ThreadedProducer<Ctx>, expected: u64) -> Result<(), String> {
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| format!("flush: {e}"))?;
    let ctx = producer.context();
    let delivered = ctx.delivered.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    if failed > 0 || delivered != expected {
        let first = ctx.first_error.lock().unwrap().clone().unwrap_or_default();
        return Err(format!(
            "delivered {delivered} of {expected}, {failed} failed (first error: {first})"
        ));
    }
    Ok(())
}

fn produce(flags: &Flags) -> Result<(), String> {
    let topic = flags.str("topic", None)?;
    let records: u64 = flags.num("records", None)?;
    let size: usize = flags.num("size", Some(1024))?;
    let producer = make_producer(flags, 5, false)?;
    let payload = payload_of(size);
    // Fetch metadata first so the timed part does not include connection setup.
    producer
        .client()
        .fetch_metadata(Some(&topic), Duration::from_secs(30))
        .map_err(|e| format!("metadata: {e}"))?;
    let start = Instant::now();
    for i in 0..records {
        send_one(&producer, &topic, &i.to_be_bytes(), &payload)?;
    }
    finish(&producer, records)?;
    let secs = start.elapsed().as_secs_f64();
    let mb = (records as f64 * size as f64) / (1024.0 * 1024.0);
    println!(
        "produce_mb_s={:.2} produce_records_s={:.0} produce_records={} produce_seconds={:.3}",
        mb / secs,
        records as f64 / secs,
        records,
        secs
    );
    Ok(())
}

/// A transactional producer: `--records` records in transactions of `--per-txn`, each
/// committed before the next begins. Prints records/s and the commit latency percentiles.
fn txn_produce(flags: &Flags) -> Result<(), String> {
    let topic = flags.str("topic", None)?;
    let records: u64 = flags.num("records", None)?;
    let per_txn: u64 = flags.num("per-txn", Some(1000))?;
    let size: usize = flags.num("size", Some(1024))?;
    if per_txn == 0 {
        return Err("--per-txn must be > 0".into());
    }
    let mut flags_txn = Flags {
        values: flags.values.clone(),
    };
    flags_txn
        .values
        .entry("transactional-id".into())
        .or_insert_with(|| format!("raftka-loadgen-{}", std::process::id()));
    let producer = make_producer(&flags_txn, 5, false)?;
    let payload = payload_of(size);
    producer
        .init_transactions(Duration::from_secs(60))
        .map_err(|e| format!("init_transactions: {e}"))?;
    let mut commits_ns = Vec::new();
    let trace = flags.values.contains_key("debug");
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < records {
        producer
            .begin_transaction()
            .map_err(|e| format!("begin_transaction: {e}"))?;
        let n = per_txn.min(records - sent);
        for i in sent..sent + n {
            send_one(&producer, &topic, &i.to_be_bytes(), &payload)?;
        }
        sent += n;
        let t0 = Instant::now();
        if trace {
            eprintln!("{} loadgen commit_transaction called", wall_clock());
        }
        flush_blocking(&producer, Duration::from_secs(60))?;
        producer
            .commit_transaction(Duration::from_secs(60))
            .map_err(|e| format!("commit_transaction: {e}"))?;
        commits_ns.push(t0.elapsed().as_nanos() as u64);
        if trace {
            eprintln!("{} loadgen commit_transaction returned", wall_clock());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let ctx = producer.context();
    let failed = ctx.failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!("{failed} records failed"));
    }
    commits_ns.sort_unstable();
    println!(
        "txn_records_s={:.0} txn_mb_s={:.2} txns={} per_txn={} commit_p50_ms={:.2} \
         commit_p99_ms={:.2} commit_max_ms={:.2}",
        records as f64 / secs,
        (records as f64 * size as f64) / (1024.0 * 1024.0) / secs,
        commits_ns.len(),
        per_txn,
        percentile(&commits_ns, 50.0),
        percentile(&commits_ns, 99.0),
        percentile(&commits_ns, 100.0),
    );
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1e6
}

fn latency(flags: &Flags) -> Result<(), String> {
    let topic = flags.str("topic", None)?;
    let rate: u64 = flags.num("rate", Some(2000))?;
    let seconds: f64 = flags.num("seconds", Some(10.0))?;
    let size: usize = flags.num("size", Some(1024))?;
    if rate == 0 {
        return Err("--rate must be > 0".into());
    }
    let producer = make_producer(flags, 0, true)?;
    producer
        .client()
        .fetch_metadata(Some(&topic), Duration::from_secs(30))
        .map_err(|e| format!("metadata: {e}"))?;
    let payload = payload_of(size);
    let total = (rate as f64 * seconds).round() as u64;
    let interval_ns = 1e9 / rate as f64;
    let start = Instant::now();
    for i in 0..total {
        // Open-loop schedule: record i is due at start + i/rate, whatever happened before.
        let due = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        send_one(&producer, &topic, &i.to_be_bytes(), &payload)?;
    }
    let send_secs = start.elapsed().as_secs_f64();
    finish(&producer, total)?;
    let mut lats = std::mem::take(&mut *producer.context().latencies_ns.lock().unwrap());
    lats.sort_unstable();
    let mean = lats.iter().map(|&v| v as f64).sum::<f64>() / lats.len().max(1) as f64 / 1e6;
    println!(
        "latency_p50_ms={:.3} latency_p99_ms={:.3} latency_p999_ms={:.3} latency_max_ms={:.3} latency_mean_ms={:.3} latency_records={} latency_achieved_rate={:.0}",
        percentile(&lats, 50.0),
        percentile(&lats, 99.0),
        percentile(&lats, 99.9),
        lats.last().map_or(f64::NAN, |&v| v as f64 / 1e6),
        mean,
        lats.len(),
        total as f64 / send_secs
    );
    Ok(())
}

fn consume(flags: &Flags) -> Result<(), String> {
    let topic = flags.str("topic", None)?;
    let records: u64 = flags.num("records", None)?;
    let idle_timeout = Duration::from_secs(flags.num("timeout-s", Some(60))?);
    // No consumer group coordination: group.id is required by librdkafka's consumer but only
    // assign() is used and nothing is committed.
    let consumer: BaseConsumer = base_config(flags)?
        .set("group.id", "raftka-loadgen")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let md = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(30))
        .map_err(|e| format!("metadata: {e}"))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or("topic missing from metadata")?;
    if let Some(err) = t.error() {
        return Err(format!("metadata for {topic}: {err:?}"));
    }
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    let start = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut last_progress = Instant::now();
    while count < records {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                count += 1;
                bytes += m.payload_len() as u64;
                last_progress = Instant::now();
            }
            Some(Err(e)) => eprintln!("consume: {e}"),
            None => {
                if last_progress.elapsed() > idle_timeout {
                    return Err(format!(
                        "no record for {idle_timeout:?}; got {count} of {records}"
                    ));
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "consume_mb_s={:.2} consume_records_s={:.0} consume_records={} consume_seconds={:.3}",
        bytes as f64 / (1024.0 * 1024.0) / secs,
        count as f64 / secs,
        count,
        secs
    );
    Ok(())
}
