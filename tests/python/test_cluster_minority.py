"""Three-broker cluster split by SIGSTOP: the single broker left running (a minority of one)
must not acknowledge acks=all writes, must not expose unreplicated records to consumers, and
once the others resume every write is either acknowledged once or failed — never duplicated.

`replica.lag.time.max.ms` is 2 s here, so during the 5 s window the lone leader also tries to
shrink its ISR; that needs the (unreachable) quorum and must not let writes through either.
"""

import time

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from kafka.protocol.producer import ProduceRequest
from kafka.record.default_records import DefaultRecordBatchBuilder

from helpers import admin, consume_to_end, consumer, topic_name, wait_until

CLUSTER_ENV = {"RAFTKA_REPLICA_LAG_TIME_MAX_MS": "2000"}
WINDOW = 5.0  # how long the minority must fail to acknowledge
REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS, NOT_ENOUGH_REPLICAS_AFTER_APPEND = 7, 19, 20


def _raw_produce(cluster, broker_id, topic, partition, value, timeout_ms):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)
    b.append(0, timestamp=int(time.time() * 1000), key=None, value=value, headers=[])
    req = ProduceRequest(
        transactional_id=None, acks=-1, timeout_ms=timeout_ms,
        topic_data=[ProduceRequest.TopicProduceData(name=topic, partition_data=[
            ProduceRequest.TopicProduceData.PartitionProduceData(index=partition, records=bytes(b.build()))])],
    )
    resp = cluster.request(broker_id, req, 9, timeout=timeout_ms / 1000 + 10).to_dict()
    [p] = resp["responses"][0]["partition_responses"]
    return p["error_code"], p["base_offset"]


def _high_watermark(address, topic, partition):
    c = consumer(address)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    finally:
        c.close()


def test_minority_cannot_acknowledge_and_nothing_duplicates(cluster3):
    c = cluster3
    name = topic_name("minority")
    a = admin(c.address(1))
    a.create_topics([NewTopic(name, num_partitions=3, replication_factor=3,
                              config={"min.insync.replicas": "2"})], operation_timeout=15)[name].result(30)
    view = c.wait_settled(name, via=c.ids())

    # the lone survivor: not the controller, so the paused side holds the quorum leader too
    ctl = c.controller()
    lone = next(b for b in (3, 2, 1) if b != ctl)
    [part] = [p for p, v in view.items() if v[0] == lone]
    others = [b for b in c.ids() if b != lone]
    lone_addr = c.address(lone)

    # some committed records first
    prod = Producer({"bootstrap.servers": lone_addr, "enable.idempotence": True, "acks": "all",
                     "linger.ms": 5, "message.timeout.ms": 20000, "request.timeout.ms": 15000})
    delivered, failed = {}, {}

    def cb(err, msg):
        seq = int(msg.value().decode())
        if err is None:
            delivered[seq] = msg.offset()
        else:
            failed[seq] = err

    for seq in range(20):
        prod.produce(name, value=f"{seq:06d}".encode(), partition=part, on_delivery=cb)
    assert prod.flush(30) == 0 and len(delivered) == 20 and not failed
    hw_before = _high_watermark(lone_addr, name, part)
    assert hw_before == 20

    for b in others:
        c.pause(b)
    try:
        t0 = time.monotonic()
        for seq in range(20, 40):
            prod.produce(name, value=f"{seq:06d}".encode(), partition=part, on_delivery=cb)
        # raw acks=all Produce through kafka-python's protocol classes: answered with an error
        code, _ = _raw_produce(c, lone, name, part, b"raw-minority", timeout_ms=3000)
        assert code in (REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS, NOT_ENOUGH_REPLICAS_AFTER_APPEND), code

        while time.monotonic() - t0 < WINDOW:
            prod.poll(0.1)
        assert not [s for s in delivered if s >= 20], f"minority acknowledged {sorted(delivered)}"

        # consumers read only below the high watermark: nothing new is visible on the leader
        assert _high_watermark(lone_addr, name, part) == hw_before
        cons = consumer(lone_addr)
        try:
            cons.assign([TopicPartition(name, part, hw_before)])
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                m = cons.poll(0.2)
                assert m is None or m.error() is not None, f"read unreplicated record {m.value()!r}"
        finally:
            cons.close()
        # the lone broker could not shrink the ISR on its own (that needs the quorum)
        assert set(c.partitions(lone, name)[part][3]) == {1, 2, 3}
    finally:
        for b in others:
            c.resume(b)

    # every pending write resolves: acknowledged or failed, nothing left in flight
    assert prod.flush(60) == 0
    for seq in range(20, 40):
        assert (seq in delivered) != (seq in failed), seq
    print(f"\nafter resume: {len([s for s in delivered if s >= 20])} of 20 minority-time writes "
          f"acknowledged, {len(failed)} failed ({set(str(e) for e in failed.values())})")

    c.wait_settled(name, via=c.ids(), timeout=45)
    got = consume_to_end(c.bootstrap, name, [part], timeout=30)[part]
    values = [m.value().decode() for m in got]
    raw = values.count("raw-minority")
    assert raw <= 1, f"raw record appears {raw} times"
    seqs = [int(v) for v in values if v != "raw-minority"]
    assert len(seqs) == len(set(seqs)), f"duplicates: {sorted(s for s in set(seqs) if seqs.count(s) > 1)}"
    assert seqs == sorted(seqs), "out of order"
    read = {int(m.value().decode()): m.offset() for m in got if m.value() != b"raw-minority"}
    for seq, off in delivered.items():
        assert read.get(seq) == off, f"acknowledged record {seq} at offset {off}, read {read.get(seq)}"
    # nothing that failed is readable twice, and only what was produced is there
    assert set(read) <= set(range(40))
    wait_until(lambda: c.wait_settled(name, via=c.ids()), timeout=30, what="settled")
