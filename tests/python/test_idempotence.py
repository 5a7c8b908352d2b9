"""Idempotent producer under retries: the broker is paused (SIGSTOP) while Produce requests are
in flight, librdkafka times them out and sends them again with the same producer id, epoch and
sequence numbers after the broker resumes. The broker must then append each batch once:
everything acked is read back exactly once, in produce order. (The same run with a plain
producer, enable.idempotence=false, stores duplicates; librdkafka's statistics confirm that
requests really timed out and were sent again.)"""

import json
import threading
import time

from confluent_kafka import Producer

from helpers import consume_to_end, create_topic, topic_name, wait_until


def run_with_pause(cluster, idempotent, partitions=2, total=3000):
    b = cluster.bootstrap
    topic = create_topic(b, topic_name("idem-retry" if idempotent else "plain-retry"), partitions)
    conf = {
        "bootstrap.servers": b,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 20,
        "max.in.flight.requests.per.connection": 5,
        # time requests out quickly so the pause forces retries of in-flight requests
        "request.timeout.ms": 500,
        "socket.timeout.ms": 1000,
        "message.timeout.ms": 60000,
        "retry.backoff.ms": 50,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 200,
        "enable.idempotence": idempotent,
    }
    if not idempotent:
        conf["retries"] = 1000
    retries = [0]

    def on_stats(raw):
        stats = json.loads(raw)
        n = sum(br.get("txretries", 0) + br.get("req_timeouts", 0) for br in stats.get("brokers", {}).values())
        retries[0] = max(retries[0], n)

    conf["statistics.interval.ms"] = 100
    conf["stats_cb"] = on_stats
    p = Producer(conf)
    acked = []
    errors = []

    def cb(err, msg):
        if err is None:
            acked.append((msg.partition(), msg.offset(), msg.value()))
        else:
            errors.append(err)

    sent = []
    stop = threading.Event()

    def produce_loop():
        for i in range(total):
            if stop.is_set():
                break
            v = f"m-{i}".encode()
            while True:
                try:
                    p.produce(topic, value=v, partition=i % partitions, on_delivery=cb)
                    break
                except BufferError:
                    p.poll(0.01)
            sent.append((i % partitions, v))
            p.poll(0)
            if i % 10 == 0:
                p.poll(0.01)  # about 1000 records/s: the pause lands in the middle of the run
        while not stop.is_set():  # keep serving delivery callbacks
            p.poll(0.05)

    t = threading.Thread(target=produce_loop, daemon=True)
    t.start()
    try:
        wait_until(lambda: len(acked) >= 300, timeout=30, what="acks before the pause")
        cluster.pause(1)
        time.sleep(2.5)  # the pause itself is the fault being injected, not a wait for a condition
        cluster.resume(1)
        wait_until(lambda: len(sent) == total, timeout=60, what="all records handed to the producer")
    finally:
        stop.set()
        t.join(60)
    assert p.flush(60) == 0
    wait_until(lambda: p.poll(0.1) is not None and retries[0] > 0, timeout=3, what="librdkafka to report request timeouts or retries")
    got = consume_to_end(b, topic, list(range(partitions)), timeout=60)
    return sent, acked, errors, got


def test_idempotent_producer_no_duplicates_after_request_timeouts(cluster):
    sent, acked, errors, got = run_with_pause(cluster, idempotent=True)
    assert not errors, f"{len(errors)} deliveries failed, e.g. {errors[:3]}"
    partitions = sorted(got)
    for part in partitions:
        values = [m.value() for m in got[part]]
        expected = [v for p, v in sent if p == part]
        dups = len(values) - len(set(values))
        assert dups == 0, f"partition {part}: {dups} duplicated records"
        assert values == expected, f"partition {part}: content or order differs from what was produced"
        assert [m.offset() for m in got[part]] == list(range(len(values)))
    stored = {(m.partition(), m.offset()): m.value() for msgs in got.values() for m in msgs}
    assert all(stored.get((p, o)) == v for p, o, v in acked), "an ack named the wrong offset"


def test_idempotent_producer_across_broker_restart(cluster):
    """An idempotent producer keeps producing while the broker is stopped and started again
    (clean SIGTERM restart): its producer id and sequence state must survive, so nothing is
    duplicated or lost and the producer hits no fatal error."""
    b = cluster.bootstrap
    partitions = 2
    topic = create_topic(b, topic_name("idem-restart"), partitions)
    fatal = []
    p = Producer({
        "bootstrap.servers": b,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 60000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 200,
        "error_cb": lambda err: fatal.append(err) if err.fatal() else None,
    })
    acked, errors, sent = [], [], []

    def cb(err, msg):
        (errors.append(err) if err else acked.append((msg.partition(), msg.offset(), msg.value())))

    total = 2000
    stop = threading.Event()

    def produce_loop():
        for i in range(total):
            v = f"r-{i}".encode()
            while True:
                try:
                    p.produce(topic, value=v, partition=i % partitions, on_delivery=cb)
                    break
                except BufferError:
                    p.poll(0.01)
            sent.append((i % partitions, v))
            p.poll(0)
            if i % 10 == 0:
                p.poll(0.01)
        while not stop.is_set():
            p.poll(0.05)

    t = threading.Thread(target=produce_loop, daemon=True)
    t.start()
    try:
        wait_until(lambda: len(acked) >= 300, timeout=30, what="acks before the restart")
        cluster.stop(1)
        cluster.start(1)
        wait_until(lambda: len(sent) == total, timeout=60, what="all records handed to the producer")
    finally:
        stop.set()
        t.join(60)
    remaining = p.flush(60)
    assert not fatal, f"fatal producer error: {fatal}"
    assert remaining == 0 and not errors, f"{remaining} undelivered, {len(errors)} failed, e.g. {errors[:3]}"
    got = consume_to_end(b, topic, list(range(partitions)), timeout=60)
    for part in range(partitions):
        values = [m.value() for m in got[part]]
        expected = [v for q, v in sent if q == part]
        assert len(values) == len(set(values)), f"partition {part}: {len(values) - len(set(values))} duplicates"
        assert values == expected, f"partition {part}: content or order differs"
