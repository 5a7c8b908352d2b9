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
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

fn connect(b: &BrokerProcess) -> TcpStream {
    let s = TcpStream::connect(b.addr()).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s
}

fn batch(values: &[&[u8]]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1, // one batch, base sequence -1
            timestamp: 1,
            key: None,
            value: Some(Bytes::copy_from_slice(v)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
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
