"""Pipelined Produce requests (issue 12): a connection starts the next Produce requests while
earlier ones wait for replication, answers strictly in request order, appends in request order,
and runs any other request only after everything before it was answered.

The slow request is an acks=all produce to an RF=3 partition one of whose followers is paused
(SIGSTOP): it stays in the ISR (replica.lag.time.max.ms and the broker session are raised far
above the test's length), so the high watermark cannot pass the append until it resumes.
"""

import select
import socket
import struct
import time

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from kafka.protocol.metadata import MetadataRequest, MetadataResponse
from kafka.protocol.producer import ProduceRequest, ProduceResponse
from kafka.record.default_records import DefaultRecordBatchBuilder

from helpers import admin, consume_to_end, consumer, topic_name, wait_until

CLUSTER_ENV = {
    "RAFTKA_REPLICA_LAG_TIME_MAX_MS": "120000",
    "RAFTKA_BROKER_SESSION_TIMEOUT_MS": "120000",
}
PRODUCE_V = 7
METADATA_V = 9


def _batch(value):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)
    b.append(0, timestamp=int(time.time() * 1000), key=None, value=value, headers=[])
    return bytes(b.build())


def _frame(req, corr, version):
    req.with_header(correlation_id=corr, client_id="pipelining-test")
    return req.encode(version=version, header=True, framed=True)


def _recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "the broker closed the connection"
        out += chunk
    return out


def _read_response(s):
    size = struct.unpack(">i", _recv_exact(s, 4))[0]
    return _recv_exact(s, size)


def _answered(s):
    """True when the broker sent anything on the socket (no waiting)."""
    return bool(select.select([s], [], [], 0)[0])


def _high_watermark(bootstrap, topic, partition):
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    finally:
        c.close()


def _produce_req(topic, partition, value):
    return ProduceRequest(
        transactional_id=None, acks=-1, timeout_ms=60000,
        topic_data=[ProduceRequest.TopicProduceData(name=topic, partition_data=[
            ProduceRequest.TopicProduceData.PartitionProduceData(index=partition,
                                                                 records=_batch(value))])],
    )


def test_produce_requests_overlap_and_are_answered_in_request_order(cluster3):
    c = cluster3
    slow, fast = topic_name("pipe-slow"), topic_name("pipe-fast")
    a = admin(c.address(1))
    fs = a.create_topics([NewTopic(slow, 1, 3), NewTopic(fast, 6, 1)], operation_timeout=15)
    for f in fs.values():
        f.result(30)
    view = c.wait_settled(slow, via=c.ids())
    leader = view[0][0]
    fast_view = c.wait_settled(fast, via=c.ids())
    led = sorted(p for p, (l, *_r) in fast_view.items() if l == leader)
    assert len(led) >= 2, f"broker {leader} leads {led} of {fast}: need two partitions"
    fp, fp2 = led[0], led[1]
    # a follower of the slow partition, not the metadata controller if there is a choice
    ctl = c.controller()
    followers = sorted(view[0][2], key=lambda b: b == ctl)
    follower = next(b for b in followers if b != leader)

    c.pause(follower)
    try:
        host, port = c.address(leader).rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=30)
        with s:
            # Back to back on one connection: the slow produce, two fast ones to one partition
            # (their appends must keep request order), another fast one, then Metadata.
            s.sendall(_frame(_produce_req(slow, 0, b"slow"), 11, PRODUCE_V)
                      + _frame(_produce_req(fast, fp, b"first"), 12, PRODUCE_V)
                      + _frame(_produce_req(fast, fp, b"second"), 13, PRODUCE_V)
                      + _frame(_produce_req(fast, fp2, b"other"), 14, PRODUCE_V)
                      + _frame(MetadataRequest(topics=None, allow_auto_topic_creation=False),
                               15, METADATA_V))
            # The later produces were started, appended and committed (RF=1) while the first
            # still waits for the paused follower: without pipelining nothing behind the first
            # request starts before it is answered.
            wait_until(lambda: _high_watermark(c.address(leader), fast, fp) == 2
                       and _high_watermark(c.address(leader), fast, fp2) == 1,
                       timeout=20, what="the pipelined produces committed")
            assert not _answered(s), "an answer overtook the waiting acks=all produce"
            c.resume(follower)
            answers = [_read_response(s) for _ in range(5)]
        corrs = [struct.unpack(">i", r[:4])[0] for r in answers]
        assert corrs == [11, 12, 13, 14, 15], corrs
        produced = [ProduceResponse.decode(r, version=PRODUCE_V, header=True).to_dict()
                    for r in answers[:4]]
        parts = [p["responses"][0]["partition_responses"][0] for p in produced]
        assert [p["error_code"] for p in parts] == [0, 0, 0, 0], parts
        # appended in request order: "first" before "second" in the same partition
        assert [p["base_offset"] for p in parts] == [0, 0, 1, 0], parts
        md = MetadataResponse.decode(answers[4], version=METADATA_V, header=True).to_dict()
        assert slow in [t["name"] for t in md["topics"]]
    finally:
        c.resume(follower)


def test_an_idempotent_client_with_five_in_flight_keeps_order_and_loses_nothing(cluster3):
    """confluent-kafka with enable.idempotence and 5 requests in flight per connection, acks=all
    on RF=3: the broker runs its produce requests concurrently; every record arrives once and
    each partition holds a producer's records in the order they were produced."""
    c = cluster3
    name = topic_name("pipe-idem")
    a = admin(c.address(1))
    a.create_topics([NewTopic(name, 3, 3, config={"min.insync.replicas": "2"})],
                    operation_timeout=15)[name].result(30)
    c.wait_settled(name, via=c.ids())
    n = 6000
    p = Producer({"bootstrap.servers": c.bootstrap, "enable.idempotence": True, "acks": "all",
                  "max.in.flight.requests.per.connection": 5, "linger.ms": 0,
                  "batch.num.messages": 50})
    delivered = []

    def cb(err, msg):
        assert err is None, err
        delivered.append(msg.partition())

    for i in range(n):
        while True:
            try:
                p.produce(name, value=b"%08d" % i, partition=i % 3, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0
    assert len(delivered) == n
    got = consume_to_end(c.bootstrap, name, [0, 1, 2])
    for part, msgs in got.items():
        values = [int(m.value()) for m in msgs]
        assert values == list(range(part, n, 3)), f"partition {part}: order or count wrong"
