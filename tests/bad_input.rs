//! Bad input from clients: each case gets Kafka's error or a closed connection, and
//! neither other connections nor stored data are harmed.

mod common;

use std::io::Write;
use std::net::TcpStream;

use bytes::{Bytes, BytesMut};
use common::{api_versions_frame, call, is_closed, read_frame, BrokerProcess};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use raftka::protocol::batch_builder::BatchBuilder;

fn connect(b: &BrokerProcess) -> TcpStream {
    let s = TcpStream::connect(b.addr()).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s
}

fn batch(values: &[&[u8]]) -> Bytes {
    BatchBuilder::new()
        .timestamp(1)
        .values(values)
        .build()
        .unwrap()
}

fn produce(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

fn produce_error(s: &mut TcpStream, topic: &str, records: Bytes) -> (i16, i64) {
    let r = call(s, 9, 1, &produce(topic, records)).expect("produce response");
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch_values(s: &mut TcpStream, topic: &str) -> Vec<Bytes> {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let r = call(s, 11, 2, &req).expect("fetch response");
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let mut records = p.records.clone().unwrap_or_default();
    let mut out = Vec::new();
    while !records.is_empty() {
        for rec in RecordBatchDecoder::decode(&mut records).unwrap().records {
            out.push(rec.value.unwrap());
        }
    }
    out
}

#[test]
fn bad_frames_close_only_their_connection_and_bad_records_get_kafka_errors() {
    let b = BrokerProcess::start(&["--message.max.bytes", "2000"]);
    let mut good = connect(&b);
    assert_eq!(
        produce_error(&mut good, "t", batch(&[b"one", b"two"])),
        (0, 0)
    );

    // Unsupported ApiVersions version: v0 answer with UNSUPPORTED_VERSION and the table.
    good.write_all(&api_versions_frame(99, 5)).unwrap();
    let resp = read_frame(&mut good).expect("ApiVersions fallback answer");
    let mut body = Bytes::from(resp);
    let h = ResponseHeader::decode_v0(&mut body);
    assert_eq!(h, 5);
    let av =
        <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut body, 0).unwrap();
    assert_eq!(av.error_code, 35);
    assert!(av.api_keys.iter().any(|k| k.api_key == 0));

    // Frames that cannot be parsed: each closes its own connection.
    let cases: Vec<Vec<u8>> = vec![
        (-1i32).to_be_bytes().to_vec(),                   // negative size
        i32::MAX.to_be_bytes().to_vec(),                  // beyond socket.request.max.bytes
        [&10i32.to_be_bytes()[..], &[0xff; 10]].concat(), // unknown API key -1
        [
            &12i32.to_be_bytes()[..],
            &[0, 3, 0, 99, 0, 0, 0, 1, 0xff, 0xff, 0, 0][..],
        ]
        .concat(), // Metadata v99
        [
            &14i32.to_be_bytes()[..],
            &[0, 0, 0, 9, 0, 0, 0, 1, 0, 200, 1, 2, 3, 4][..],
        ]
        .concat(), // truncated header
        [
            &12i32.to_be_bytes()[..],
            &[0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff][..],
        ]
        .concat(), // truncated body
        // Metadata v1 declaring 2^31-1 topics in 4 bytes: the codec would reserve ~150 GB.
        [
            &12i32.to_be_bytes()[..],
            &[0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff][..],
        ]
        .concat()[..]
            .to_vec(),
        // Metadata v12 (flexible) declaring 2^32-2 topics as a compact array.
        [
            &16i32.to_be_bytes()[..],
            &[
                0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0xff, 0x0f,
            ][..],
        ]
        .concat(),
    ];
    for (i, frame) in cases.iter().enumerate() {
        let mut s = connect(&b);
        s.write_all(frame).unwrap();
        assert!(is_closed(&mut s), "case {i}: connection should be closed");
    }

    // Records the broker must refuse, with Kafka's error codes.
    let mut corrupt = BytesMut::from(&batch(&[b"x"])[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    assert_eq!(
        produce_error(&mut good, "t", corrupt.freeze()).0,
        2,
        "CORRUPT_MESSAGE"
    );
    let big = vec![7u8; 3000];
    assert_eq!(
        produce_error(&mut good, "t", batch(&[&big])).0,
        10,
        "MESSAGE_TOO_LARGE"
    );
    let truncated = batch(&[b"y"]).slice(..30);
    assert_eq!(
        produce_error(&mut good, "t", truncated).0,
        2,
        "CORRUPT_MESSAGE"
    );
    assert_eq!(
        produce_error(&mut good, "bad name!", batch(&[b"z"])).0,
        17,
        "INVALID_TOPIC_EXCEPTION"
    );
    let mut acks = produce("t", batch(&[b"q"]));
    acks.acks = 5;
    let r = call(&mut good, 9, 3, &acks).unwrap();
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 21,
        "INVALID_REQUIRED_ACKS"
    );

    // Topic admin errors.
    let create = |name: &str, n: i32| {
        CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(n)
            .with_replication_factor(-1)])
    };
    for (name, n, code) in [
        ("..", 1, 17),
        ("zero", 0, 37),
        ("neg", -5, 37),
        ("t", 1, 36),
    ] {
        let r = call(&mut good, 5, 4, &create(name, n)).unwrap();
        assert_eq!(r.topics[0].error_code, code, "create {name} {n}");
        assert!(r.topics[0].error_message.is_some());
    }

    // The connection that behaved still works, and the data is intact.
    let values = fetch_values(&mut good, "t");
    assert_eq!(values, vec![Bytes::from("one"), Bytes::from("two")]);
}

/// A v2 batch header (from a real encoder) around `records`, declaring `count` records,
/// with `codec` in the attributes and a correct CRC: only the record walk can refuse it.
fn with_records(records: &[u8], count: i32, codec: i16) -> Bytes {
    let mut b = BytesMut::from(&batch(&[b"x"])[..61]);
    b.extend_from_slice(records);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b[21..23].copy_from_slice(&codec.to_be_bytes());
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// A zstd frame of `len` zero bytes made of RLE blocks: 4 bytes per 128 KiB inflated.
fn zstd_zeros(len: usize) -> Vec<u8> {
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38];
    let mut left = len;
    while left > 0 {
        let n = left.min(128 << 10);
        left -= n;
        let h = (left == 0) as u32 | (1 << 1) | ((n as u32) << 3);
        f.extend_from_slice(&h.to_le_bytes()[..3]);
        f.push(0);
    }
    f
}

/// Produces with request version `version`; returns the error code, base offset and message.
fn produce_v(
    s: &mut TcpStream,
    version: i16,
    topic: &str,
    records: Bytes,
) -> (i16, i64, Option<String>) {
    let r = call(s, version, 1, &produce(topic, records)).expect("produce response");
    let p = &r.responses[0].partition_responses[0];
    (
        p.error_code,
        p.base_offset,
        p.error_message.as_ref().map(|m| m.to_string()),
    )
}

#[test]
fn invalid_record_batches_are_refused_and_the_log_is_untouched() {
    let b = BrokerProcess::start(&[]);
    let mut s = connect(&b);
    let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("compacted")))
        .with_num_partitions(1)
        .with_replication_factor(-1)
        .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("cleanup.policy"))
            .with_value(Some(StrBytes::from_static_str("compact")))])]);
    assert_eq!(call(&mut s, 5, 2, &create).unwrap().topics[0].error_code, 0);
    assert_eq!(produce_error(&mut s, "v", batch(&[b"one", b"two"])), (0, 0));

    // A well-formed record: length 7, attributes, deltas 0, null key, value "v", no headers.
    let good = [14u8, 0, 0, 0, 1, 2, b'v', 0];
    let garbage: Vec<u8> = [&[0x20][..], &[0xee; 16], &[0x01; 15]].concat();
    let bomb = zstd_zeros(300 << 20); // 300 MiB of zeros in ~9 KiB
    assert!(bomb.len() < 10 << 10);
    let mut magic1 = BytesMut::from(&batch(&[b"old"])[..]);
    magic1[16] = 1;
    let magic1 = magic1.freeze();
    let cases: Vec<(&str, i16, &str, Bytes, i16, &str)> = vec![
        (
            "garbage record bytes",
            9,
            "v",
            with_records(&garbage, 1, 0),
            87,
            "record 0",
        ),
        (
            "negative key length",
            9,
            "v",
            with_records(&[12, 0, 0, 0, 9, 1, 0], 1, 0),
            87,
            "negative key length -5",
        ),
        (
            "negative record length",
            9,
            "v",
            with_records(&[5, 0, 0, 0, 1, 2, b'v', 0], 1, 0),
            87,
            "negative record length -3",
        ),
        (
            "count 10^9 with one record",
            9,
            "v",
            with_records(&good, 1_000_000_000, 0),
            87,
            "declares 1000000000 records",
        ),
        (
            "codec id 7",
            9,
            "v",
            with_records(&good, 1, 7),
            87,
            "compression codec id 7",
        ),
        (
            "zstd bomb",
            9,
            "v",
            with_records(&bomb, 1, 4),
            87,
            "compression bomb",
        ),
        (
            "zstd bomb on a compacted topic",
            9,
            "compacted",
            with_records(&bomb, 1, 4),
            87,
            "compression bomb",
        ),
        (
            "zstd before produce v7",
            6,
            "v",
            with_records(&zstd_zeros(7), 1, 4),
            76,
            "",
        ),
        (
            "magic 1 in produce v9",
            9,
            "v",
            magic1.clone(),
            87,
            "magic 1",
        ),
        // Produce v0-v2 may carry message format v0/v1, which raftka does not store.
        ("magic 1 in produce v2", 2, "v", magic1, 43, ""),
    ];
    for (name, version, topic, records, code, message) in cases {
        let (err, base, msg) = produce_v(&mut s, version, topic, records);
        assert_eq!((err, base), (code, -1), "{name}: {msg:?}");
        if version >= 8 {
            let msg = msg.unwrap_or_default();
            assert!(msg.contains(message), "{name}: {msg}");
        }
    }

    // The broker is up, the refused batches left no trace, and the log end did not move.
    assert_eq!(
        fetch_values(&mut s, "v"),
        vec![Bytes::from("one"), Bytes::from("two")]
    );
    assert_eq!(
        produce_error(&mut s, "v", with_records(&good, 1, 0)),
        (0, 2)
    );
    let mut fresh = connect(&b);
    assert_eq!(produce_error(&mut fresh, "v", batch(&[b"z"])), (0, 3));
}

/// Reads the correlation id of a v0 response header.
trait DecodeV0 {
    fn decode_v0(b: &mut Bytes) -> i32;
}

impl DecodeV0 for ResponseHeader {
    fn decode_v0(b: &mut Bytes) -> i32 {
        <ResponseHeader as kafka_protocol::protocol::Decodable>::decode(b, 0)
            .unwrap()
            .correlation_id
    }
}

#[test]
fn acknowledged_records_survive_sigkill_with_flush_per_produce() {
    let mut b = BrokerProcess::start(&["--log.flush.interval.messages", "1"]);
    let mut s = connect(&b);
    for i in 0..20u8 {
        let (err, base) = produce_error(&mut s, "durable", batch(&[&[i]]));
        assert_eq!((err, base), (0, i as i64));
    }
    b.kill_and_restart();
    let mut s = connect(&b);
    let values = fetch_values(&mut s, "durable");
    assert_eq!(values.len(), 20);
    assert!(values.iter().enumerate().all(|(i, v)| v[..] == [i as u8]));
    // New appends continue after the recovered log end, never reusing offsets.
    assert_eq!(produce_error(&mut s, "durable", batch(&[b"next"])), (0, 20));
}
