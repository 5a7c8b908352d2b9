//! `raftka topic create|list|describe|delete|produce|consume`.
//!
//! Produce and consume go to each partition's leader (from Metadata) and refresh Metadata
//! when a broker answers NOT_LEADER_OR_FOLLOWER or similar, as a Kafka client does.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, FetchRequest, ListOffsetsRequest,
    MetadataResponse, ProduceRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::client::{error_name, topic_name, Client};
use super::records::{self, Consumed, Outgoing, OutputFormat};
use super::table::{id_list, Table};
use super::Format;

const CREATE_TOPICS_VERSION: i16 = 5;
const DELETE_TOPICS_VERSION: i16 = 4;
const PRODUCE_VERSION: i16 = 8;
const FETCH_VERSION: i16 = 11;
const LIST_OFFSETS_VERSION: i16 = 5;
/// How often a produce or fetch is retried after a leadership change before giving up.
const RETRIES: usize = 20;
const RETRY_BACKOFF: Duration = Duration::from_millis(250);
/// Records sent in one produce request at most.
const MAX_BATCH_RECORDS: usize = 500;

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create topics.
    Create(CreateArgs),
    /// List topics with their partition counts and replication factors.
    List(ListArgs),
    /// Partitions of a topic: leader, epoch, replicas, ISR and offsets.
    Describe(DescribeArgs),
    /// Delete topics.
    Delete(DeleteArgs),
    /// Produce one record per line of standard input.
    Produce(ProduceArgs),
    /// Print records of a topic.
    Consume(ConsumeArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(required = true)]
    pub topics: Vec<String>,
    /// Partitions per topic (-1: the broker's num.partitions).
    #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
    pub partitions: i32,
    /// Replication factor (-1: the broker's default.replication.factor).
    #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
    pub replicas: i16,
    /// Topic config as key=value (repeatable), e.g. -c cleanup.policy=compact.
    #[arg(short = 'c', long = "topic-config")]
    pub configs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Include internal topics (__consumer_offsets).
    #[arg(short, long)]
    pub all: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    pub topic: String,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[arg(required = true)]
    pub topics: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Split each line into key and value at the first occurrence of this string.
    #[arg(short = 'k', long)]
    pub key_separator: Option<String>,
    /// A header for every record, key=value (repeatable).
    #[arg(short = 'H', long = "header", value_parser = parse_header_arg)]
    pub headers: Vec<(String, Bytes)>,
    /// Produce to this partition (default: by key like Kafka's Java client, round-robin
    /// without a key).
    #[arg(short, long)]
    pub partition: Option<i32>,
    /// Acknowledgements: -1 (all in-sync replicas), 1 (the leader) or 0 (none).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub acks: i16,
}

fn parse_header_arg(s: &str) -> Result<(String, Bytes), String> {
    records::parse_header(s)
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Start at the first retained record of every partition (default: only new records).
    #[arg(long)]
    pub from_beginning: bool,
    /// Start at this offset in every consumed partition (overrides --from-beginning).
    #[arg(short, long)]
    pub offset: Option<i64>,
    /// Consume only these partitions (repeatable).
    #[arg(short, long)]
    pub partition: Vec<i32>,
    /// Exit after printing this many records.
    #[arg(short, long)]
    pub num: Option<u64>,
    /// Exit once every partition is read up to its high watermark.
    #[arg(short, long)]
    pub exit_at_end: bool,
    /// `json`, or a template: %t topic, %p partition, %o offset, %k key, %v value, %h headers
    /// (k=v,…), %T timestamp in ms; \n and \t escapes.
    #[arg(short, long, default_value = "%v\\n")]
    pub format: String,
}

pub async fn run(client: &mut Client, cmd: TopicCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TopicCommand::Create(a) => create(client, a).await,
        TopicCommand::List(a) => list(client, a).await,
        TopicCommand::Describe(a) => describe(client, a).await,
        TopicCommand::Delete(a) => delete(client, a).await,
        TopicCommand::Produce(a) => produce(client, a).await,
        TopicCommand::Consume(a) => consume(client, a).await,
    }
}

async fn create(client: &mut Client, a: CreateArgs) -> anyhow::Result<ExitCode> {
    let mut configs = Vec::new();
    for c in &a.configs {
        let (k, v) = c
            .split_once('=')
            .ok_or_else(|| anyhow!("topic config `{c}`: expected key=value"))?;
        configs.push(
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.to_string()))),
        );
    }
    let req = CreateTopicsRequest::default()
        .with_topics(
            a.topics
                .iter()
                .map(|t| {
                    CreatableTopic::default()
                        .with_name(topic_name(t))
                        .with_num_partitions(a.partitions)
                        .with_replication_factor(a.replicas)
                        .with_configs(configs.clone())
                })
                .collect(),
        )
        .with_timeout_ms(30_000);
    let resp = client.send_any(&req, CREATE_TOPICS_VERSION).await?;
    let mut t = Table::new(&["TOPIC", "STATUS"]);
    let mut failed = false;
    for r in &resp.topics {
        let status = if r.error_code == 0 {
            "OK".to_string()
        } else {
            failed = true;
            match &r.error_message {
                Some(m) => format!("{}: {}", error_name(r.error_code), m.as_str()),
                None => error_name(r.error_code),
            }
        };
        t.row(vec![r.name.to_string(), status]);
    }
    print!("{}", t.render());
    Ok(exit(failed))
}

async fn delete(client: &mut Client, a: DeleteArgs) -> anyhow::Result<ExitCode> {
    let req = DeleteTopicsRequest::default()
        .with_topic_names(a.topics.iter().map(|t| topic_name(t)).collect())
        .with_timeout_ms(30_000);
    let resp = client.send_any(&req, DELETE_TOPICS_VERSION).await?;
    let mut t = Table::new(&["TOPIC", "STATUS"]);
    let mut failed = false;
    for r in &resp.responses {
        let status = if r.error_code == 0 {
            "OK".to_string()
        } else {
            failed = true;
            error_name(r.error_code)
        };
        let name = r.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        t.row(vec![name, status]);
    }
    print!("{}", t.render());
    Ok(exit(failed))
}

fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn list(client: &mut Client, a: ListArgs) -> anyhow::Result<ExitCode> {
    let md = client.metadata(None).await?;
    let mut topics: Vec<_> = md
        .topics
        .iter()
        .filter(|t| a.all || !t.is_internal)
        .map(|t| {
            let name = t.name.as_deref().map(|s| s.to_string()).unwrap_or_default();
            let rf = t.partitions.first().map_or(0, |p| p.replica_nodes.len());
            (name, t.partitions.len(), rf, t.is_internal)
        })
        .collect();
    topics.sort();
    match a.format {
        Format::Json => {
            let v: Vec<_> = topics
                .iter()
                .map(|(n, p, r, i)| json!({"name": n, "partitions": p, "replicas": r, "internal": i}))
                .collect();
            println!("{}", serde_json::Value::Array(v));
        }
        Format::Text => {
            let mut t = Table::new(&["NAME", "PARTITIONS", "REPLICAS"]);
            for (n, p, r, _) in &topics {
                t.row(vec![n.clone(), p.to_string(), r.to_string()]);
            }
            print!("{}", t.render());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One partition as Metadata reports it.
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub leader: i32,
    pub epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// The partitions of `topic` in a Metadata answer, or the topic's error.
pub fn partitions_of(
    md: &MetadataResponse,
    topic: &str,
) -> anyhow::Result<BTreeMap<i32, PartitionInfo>> {
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_deref().map(|s| s.as_str()) == Some(topic))
        .ok_or_else(|| anyhow!("topic `{topic}` is not in the Metadata answer"))?;
    if t.error_code != 0 {
        bail!("topic `{topic}`: {}", error_name(t.error_code));
    }
    Ok(t.partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                PartitionInfo {
                    leader: p.leader_id.0,
                    epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|r| r.0).collect(),
                    isr: p.isr_nodes.iter().map(|r| r.0).collect(),
                },
            )
        })
        .collect())
}

/// Offsets of `(topic, partition)`s at `timestamp` (-1: high watermark, -2: log start),
/// each asked of its leader; a partition whose leader fails is missing from the answer.
pub async fn list_offsets(
    client: &mut Client,
    leaders: &BTreeMap<(String, i32), i32>,
    timestamp: i64,
) -> BTreeMap<(String, i32), i64> {
    let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for ((t, p), leader) in leaders {
        by_leader
            .entry(*leader)
            .or_default()
            .entry(t.clone())
            .or_default()
            .push(*p);
    }
    let mut out = BTreeMap::new();
    for (leader, topics) in by_leader {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(
                topics
                    .iter()
                    .map(|(t, ps)| {
                        ListOffsetsTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(
                                ps.iter()
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(*p)
                                            .with_current_leader_epoch(-1)
                                            .with_timestamp(timestamp)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let Ok(resp) = client
            .send_to(leader, &req, LIST_OFFSETS_VERSION, Duration::ZERO)
            .await
        else {
            continue;
        };
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code == 0 {
                    out.insert((t.name.to_string(), p.partition_index), p.offset);
                }
            }
        }
    }
    out
}

async fn describe(client: &mut Client, a: DescribeArgs) -> anyhow::Result<ExitCode> {
    let md = client
        .metadata(Some(std::slice::from_ref(&a.topic)))
        .await?;
    let parts = partitions_of(&md, &a.topic)?;
    let leaders: BTreeMap<(String, i32), i32> = parts
        .iter()
        .map(|(p, i)| ((a.topic.clone(), *p), i.leader))
        .collect();
    let starts = list_offsets(client, &leaders, -2).await;
    let ends = list_offsets(client, &leaders, -1).await;
    let offset = |m: &BTreeMap<(String, i32), i64>, p: i32| m.get(&(a.topic.clone(), p)).copied();
    match a.format {
        Format::Json => {
            let ps: Vec<_> = parts
                .iter()
                .map(|(p, i)| {
                    json!({
                        "partition": p, "leader": i.leader, "leader_epoch": i.epoch,
                        "replicas": i.replicas, "isr": i.isr,
                        "log_start_offset": offset(&starts, *p),
                        "high_watermark": offset(&ends, *p),
                    })
                })
                .collect();
            println!("{}", json!({"name": a.topic, "partitions": ps}));
        }
        Format::Text => {
            println!("NAME        {}", a.topic);
            println!("PARTITIONS  {}\n", parts.len());
            let mut t = Table::new(&[
                "PARTITION",
                "LEADER",
                "EPOCH",
                "REPLICAS",
                "ISR",
                "LOG-START-OFFSET",
                "HIGH-WATERMARK",
            ]);
            let show = |o: Option<i64>| o.map_or_else(|| "-".to_string(), |o| o.to_string());
            for (p, i) in &parts {
                t.row(vec![
                    p.to_string(),
                    i.leader.to_string(),
                    i.epoch.to_string(),
                    id_list(&i.replicas),
                    id_list(&i.isr),
                    show(offset(&starts, *p)),
                    show(offset(&ends, *p)),
                ]);
            }
            print!("{}", t.render());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// True for the errors after which a client refreshes Metadata and retries.
fn retriable(code: i16) -> bool {
    matches!(
        kafka_protocol::ResponseError::try_from_code(code),
        Some(e) if e.is_retriable()
    )
}

/// The partitions of `topic`, waiting (with retries) until every one has a leader; asks
/// Metadata to create the topic when `create` (as a producer does).
async fn leaders_of(
    client: &mut Client,
    topic: &str,
    create: bool,
) -> anyhow::Result<BTreeMap<i32, PartitionInfo>> {
    let topics = [topic.to_string()];
    let mut last = None;
    for _ in 0..RETRIES {
        let req =
            super::client::metadata_request(Some(&topics)).with_allow_auto_topic_creation(create);
        let md = client
            .send_any(&req, super::client::METADATA_VERSION)
            .await?;
        client.remember(&md);
        match partitions_of(&md, topic) {
            Ok(p) if !p.is_empty() && p.values().all(|i| i.leader >= 0) => return Ok(p),
            Ok(_) => last = Some(anyhow!("topic `{topic}` has partitions without a leader")),
            Err(e) => {
                let t = md.topics.first().map_or(0, |t| t.error_code);
                if !retriable(t) {
                    return Err(e);
                }
                last = Some(e)
            }
        }
        tokio::time::sleep(RETRY_BACKOFF).await;
    }
    Err(last.unwrap_or_else(|| anyhow!("topic `{topic}`: no leaders")))
}

async fn produce(client: &mut Client, a: ProduceArgs) -> anyhow::Result<ExitCode> {
    let mut parts = leaders_of(client, &a.topic, true).await?;
    let count = parts.len() as i32;
    if let Some(p) = a.partition {
        if !parts.contains_key(&p) {
            bail!("topic `{}` has no partition {p} (it has {count})", a.topic);
        }
    }
    let mut lines = stdin_lines();
    let mut next_partition = 0i32;
    let mut sent = 0u64;
    loop {
        // Wait for one line, then take whatever else is already read, into one request.
        let first = match lines.recv().await {
            None => break,
            Some(l) => l.context("reading standard input")?,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_RECORDS {
            match lines.try_recv() {
                Ok(l) => batch.push(l.context("reading standard input")?),
                Err(_) => break,
            }
        }
        let mut by_partition: BTreeMap<i32, Vec<Outgoing>> = BTreeMap::new();
        for line in batch {
            let rec = records::parse_line(&line, a.key_separator.as_deref(), &a.headers);
            let p = match (a.partition, &rec.key) {
                (Some(p), _) => p,
                (None, Some(k)) => records::partition_for_key(k, count),
                (None, None) => {
                    next_partition = (next_partition + 1) % count;
                    next_partition
                }
            };
            by_partition.entry(p).or_default().push(rec);
        }
        for (p, recs) in by_partition {
            send_batch(client, &a, &mut parts, p, &recs).await?;
            sent += recs.len() as u64;
        }
    }
    eprintln!("raftka: produced {sent} records to {}", a.topic);
    Ok(ExitCode::SUCCESS)
}

/// Lines of standard input, read on a thread of their own (blocking reads) and handed over
/// through a channel; the channel closes at end of input.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4 * MAX_BATCH_RECORDS);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let stop = line.is_err();
            if tx.blocking_send(line).is_err() || stop {
                break;
            }
        }
    });
    rx
}

/// Sends one partition's records to its leader, refreshing leaders and retrying on
/// retriable errors.
async fn send_batch(
    client: &mut Client,
    a: &ProduceArgs,
    parts: &mut BTreeMap<i32, PartitionInfo>,
    partition: i32,
    recs: &[Outgoing],
) -> anyhow::Result<()> {
    let now = crate::clock::unix_ms();
    let batch = records::encode_batch(recs, now).map_err(|e| anyhow!("encoding records: {e}"))?;
    let req = ProduceRequest::default()
        .with_acks(a.acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(&a.topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let mut last = String::new();
    for _ in 0..RETRIES {
        let leader = parts.get(&partition).map_or(-1, |i| i.leader);
        if a.acks == 0 {
            // acks=0: the broker sends no response; write the request and move on.
            client
                .broker(leader)
                .await?
                .send_no_reply(&req, PRODUCE_VERSION)
                .await?;
            return Ok(());
        }
        match client
            .send_to(leader, &req, PRODUCE_VERSION, Duration::from_secs(30))
            .await
        {
            Ok(resp) => {
                let code = resp
                    .responses
                    .iter()
                    .flat_map(|t| &t.partition_responses)
                    .find(|p| p.index == partition)
                    .map_or(-1, |p| p.error_code);
                if code == 0 {
                    return Ok(());
                }
                if !retriable(code) {
                    bail!("producing to {}/{partition}: {}", a.topic, error_name(code));
                }
                last = error_name(code);
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(RETRY_BACKOFF).await;
        *parts = leaders_of(client, &a.topic, false).await?;
    }
    bail!(
        "producing to {}/{partition}: gave up after retries: {last}",
        a.topic
    )
}

async fn consume(client: &mut Client, a: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let format = OutputFormat::parse(&a.format);
    let mut parts = leaders_of(client, &a.topic, false).await?;
    let chosen: Vec<i32> = if a.partition.is_empty() {
        parts.keys().copied().collect()
    } else {
        for p in &a.partition {
            if !parts.contains_key(p) {
                bail!("topic `{}` has no partition {p}", a.topic);
            }
        }
        a.partition.clone()
    };
    let leaders = |parts: &BTreeMap<i32, PartitionInfo>| -> BTreeMap<(String, i32), i32> {
        chosen
            .iter()
            .filter_map(|p| parts.get(p).map(|i| ((a.topic.clone(), *p), i.leader)))
            .collect()
    };
    // Where each partition starts.
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for _ in 0..RETRIES {
        let ts = if a.from_beginning { -2 } else { -1 };
        let offs = match a.offset {
            Some(_) => BTreeMap::new(),
            None => list_offsets(client, &leaders(&parts), ts).await,
        };
        for p in &chosen {
            if let Some(o) = a
                .offset
                .or_else(|| offs.get(&(a.topic.clone(), *p)).copied())
            {
                next.insert(*p, o);
            }
        }
        if next.len() == chosen.len() {
            break;
        }
        tokio::time::sleep(RETRY_BACKOFF).await;
        parts = leaders_of(client, &a.topic, false).await?;
    }
    if next.len() != chosen.len() {
        bail!(
            "cannot find start offsets of {} (leaders unavailable)",
            a.topic
        );
    }
    let mut printed = 0u64;
    let mut high_watermarks: BTreeMap<i32, i64> = BTreeMap::new();
    let mut out = std::io::stdout().lock();
    loop {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in &chosen {
            by_leader
                .entry(parts.get(p).map_or(-1, |i| i.leader))
                .or_default()
                .push(*p);
        }
        let mut refresh = false;
        let wait = if by_leader.len() > 1 { 100 } else { 500 };
        for (leader, ps) in by_leader {
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(wait)
                .with_min_bytes(1)
                .with_max_bytes(16 * 1024 * 1024)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(&a.topic))
                    .with_partitions(
                        ps.iter()
                            .map(|p| {
                                FetchPartition::default()
                                    .with_partition(*p)
                                    .with_current_leader_epoch(-1)
                                    .with_fetch_offset(next[p])
                                    .with_log_start_offset(-1)
                                    .with_partition_max_bytes(1024 * 1024)
                            })
                            .collect(),
                    )]);
            let resp = match client
                .send_to(
                    leader,
                    &req,
                    FETCH_VERSION,
                    Duration::from_millis(wait as u64),
                )
                .await
            {
                Ok(r) => r,
                Err(_) => {
                    refresh = true;
                    continue;
                }
            };
            for t in resp.responses {
                for pd in t.partitions {
                    let p = pd.partition_index;
                    if pd.error_code != 0 {
                        if pd.error_code == 1 {
                            // OFFSET_OUT_OF_RANGE: the records were deleted; restart at the
                            // log start (or the end when starting from the end).
                            let ts = if a.from_beginning { -2 } else { -1 };
                            let one = BTreeMap::from([((a.topic.clone(), p), leader)]);
                            if let Some(o) = list_offsets(client, &one, ts).await.values().next() {
                                next.insert(p, *o);
                            }
                        } else {
                            refresh = true;
                        }
                        continue;
                    }
                    high_watermarks.insert(p, pd.high_watermark);
                    let Some(data) = pd.records else { continue };
                    let (recs, after) = records::parse_batches(&data)
                        .map_err(|e| anyhow!("{}/{p}: cannot decode records: {e}", a.topic))?;
                    let from = next[&p];
                    for r in recs.into_iter().filter(|r| r.offset >= from) {
                        let c = Consumed {
                            topic: a.topic.clone(),
                            partition: p,
                            offset: r.offset,
                            timestamp: r.timestamp,
                            key: r.key,
                            value: r.value,
                            headers: r
                                .headers
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), v))
                                .collect(),
                        };
                        out.write_all(format.render(&c).as_bytes())?;
                        printed += 1;
                        if a.num.is_some_and(|n| printed >= n) {
                            out.flush()?;
                            return Ok(ExitCode::SUCCESS);
                        }
                    }
                    if let Some(after) = after {
                        next.insert(p, after.max(from));
                    }
                }
            }
        }
        out.flush()?;
        if a.exit_at_end
            && chosen
                .iter()
                .all(|p| high_watermarks.get(p).is_some_and(|hw| next[p] >= *hw))
        {
            return Ok(ExitCode::SUCCESS);
        }
        if refresh {
            tokio::time::sleep(RETRY_BACKOFF).await;
            parts = leaders_of(client, &a.topic, false).await?;
        }
    }
}
