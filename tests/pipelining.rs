//! Pipelined requests on one connection (issue 12): requests sent back to back are answered in
//! request order with their own correlation ids, Produce requests append in request order (an
//! idempotent producer's five in-flight batches are all accepted, in sequence), and a client
//! that closes its side after sending still gets every answer. Raw protocol over TCP, so the
//! requests really are on the wire together. The cluster case (a Produce waiting for a paused
//! follower while later ones complete) is `tests/python/test_cluster_pipelining.py`.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{call, read_frame, BrokerProcess};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use raftka::protocol::batch_builder::BatchBuilder;

fn connect(b: &BrokerProcess) -> TcpStream {
    let s = TcpStream::connect(b.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

fn name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.into()))
}

fn create_topic(s: &mut TcpStream, topic: &str) {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(1)
            .with_replication_factor(-1)]);
    let r = call(s, 5, 1, &req).expect("create topics response");
    assert_eq!(r.topics[0].error_code, 0);
}

/// One request as a frame (size, header, body), not sent.
fn frame<R: Request>(version: i16, correlation: i32, req: &R) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("pipelining-test")))
        .encode(&mut buf, R::header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    let mut f = (buf.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(&buf);
    f
}

/// Reads one response: its correlation id and body.
fn answer<R: Request>(s: &mut TcpStream, version: i16) -> (i32, R::Response) {
    let mut body = Bytes::from(read_frame(s).expect("a response"));
    let hv = <R::Response as HeaderVersion>::header_version(version);
    let h = ResponseHeader::decode(&mut body, hv).unwrap();
    (
        h.correlation_id,
        R::Response::decode(&mut body, version).unwrap(),
    )
}

/// acks=all produce of one record to partition 0 (pid -1: not idempotent).
fn produce(topic: &str, pid: i64, seq: i32) -> ProduceRequest {
    let b = BatchBuilder::new().timestamp(1);
    let b = if pid < 0 { b } else { b.producer(pid, 0, seq) };
    let records = b.values([format!("record {seq}")].iter()).build().unwrap();
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

fn produced(r: &ProduceResponse) -> (i16, i64) {
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[test]
fn back_to_back_requests_are_answered_in_order_even_after_the_client_half_closes() {
    let b = BrokerProcess::start(&[]);
    let mut s = connect(&b);
    create_topic(&mut s, "pipelined");
    // Four produces, an ApiVersions (which runs alone, after them), two more produces, then
    // the client closes its sending side: everything must still be answered, in order.
    let mut wire = Vec::new();
    for i in 0..4 {
        wire.extend(frame(9, 100 + i, &produce("pipelined", -1, i)));
    }
    wire.extend(frame(3, 104, &ApiVersionsRequest::default()));
    for i in 4..6 {
        wire.extend(frame(9, 101 + i, &produce("pipelined", -1, i)));
    }
    s.write_all(&wire).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut offsets = Vec::new();
    for expected in 100..104 {
        let (corr, r) = answer::<ProduceRequest>(&mut s, 9);
        assert_eq!(corr, expected);
        offsets.push(produced(&r));
    }
    let (corr, v) = answer::<ApiVersionsRequest>(&mut s, 3);
    assert_eq!((corr, v.error_code), (104, 0));
    for expected in 105..107 {
        let (corr, r) = answer::<ProduceRequest>(&mut s, 9);
        assert_eq!(corr, expected);
        offsets.push(produced(&r));
    }
    // appended in request order
    assert_eq!(
        offsets,
        (0..6).map(|o| (0, o)).collect::<Vec<_>>(),
        "(error, base offset) per request"
    );
}

#[test]
fn an_idempotent_producers_in_flight_batches_append_in_sequence() {
    let b = BrokerProcess::start(&[]);
    let mut s = connect(&b);
    create_topic(&mut s, "idempotent");
    let pid = call(
        &mut s,
        1,
        2,
        &InitProducerIdRequest::default()
            .with_transaction_timeout_ms(60_000)
            .with_transactional_id(None),
    )
    .expect("InitProducerId")
    .producer_id
    .0;
    // Five batches in flight at once, sequences 0..4: appended out of order, a later one
    // would be refused with OUT_OF_ORDER_SEQUENCE_NUMBER.
    for round in 0..3 {
        let mut wire = Vec::new();
        for i in 0..5 {
            let seq = round * 5 + i;
            wire.extend(frame(9, 10 + seq, &produce("idempotent", pid, seq)));
        }
        s.write_all(&wire).unwrap();
        for i in 0..5 {
            let seq = round * 5 + i;
            let (corr, r) = answer::<ProduceRequest>(&mut s, 9);
            assert_eq!(corr, 10 + seq);
            assert_eq!(produced(&r), (0, seq as i64), "batch with sequence {seq}");
        }
    }
}
