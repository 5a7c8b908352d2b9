"""Client helpers shared by the test modules (confluent-kafka, kafka-python, kcat)."""

import subprocess
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from raftkit import clients, kafkameta
from raftkit.wait import wait_until as _wait_until

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
WAIT = 20.0


def topic_name(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(pred, timeout=WAIT, interval=0.05, what="condition"):
    """Polls pred() until it returns something truthy; returns that value (raftkit.wait)."""
    return _wait_until(pred, timeout, what, interval=interval)


# ------------------------------------------------------------------------------------------------
# confluent-kafka


def admin(bootstrap, **conf):
    return AdminClient(clients.admin_conf(bootstrap, **conf))


def create_topic(bootstrap, name, partitions=1, config=None, replication_factor=1):
    """Creates a topic through confluent-kafka's AdminClient and waits until Metadata lists
    every partition with a leader."""
    a = admin(bootstrap)
    fut = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor, config=config or {})],
        operation_timeout=10,
    )[name]
    fut.result(timeout=WAIT)
    wait_for_topic(bootstrap, name, partitions if partitions > 0 else None)
    return name


def wait_for_topic(bootstrap, name, partitions=None):
    a = admin(bootstrap)

    def ready():
        md = a.list_topics(topic=name, timeout=5)
        t = md.topics.get(name)
        if t is None or t.error is not None:
            return None
        if partitions is not None and len(t.partitions) != partitions:
            return None
        if not t.partitions or any(p.leader < 0 for p in t.partitions.values()):
            return None
        return t

    return wait_until(ready, what=f"topic {name} in metadata")


def producer(bootstrap, **conf):
    return Producer(clients.producer_conf(bootstrap, **conf))


def produce_all(p, topic, records, timeout=WAIT):
    """Produces records (dicts with value and optional key, headers, partition, timestamp) and
    waits for every delivery report. Returns the delivered messages' (partition, offset) in
    produce order; raises if any delivery failed."""
    results = [None] * len(records)

    def cb_for(i):
        def cb(err, msg):
            results[i] = (err, msg)

        return cb

    for i, r in enumerate(records):
        kwargs = {"value": r.get("value"), "key": r.get("key"), "on_delivery": cb_for(i)}
        if r.get("headers") is not None:
            kwargs["headers"] = r["headers"]
        if r.get("partition") is not None:
            kwargs["partition"] = r["partition"]
        if r.get("timestamp") is not None:
            kwargs["timestamp"] = r["timestamp"]
        while True:
            try:
                p.produce(topic, **kwargs)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout}s"
    errors = [(i, res[0]) for i, res in enumerate(results) if res is None or res[0] is not None]
    assert not errors, f"{len(errors)} deliveries failed, first: {errors[:3]}"
    return [(msg.partition(), msg.offset()) for _, msg in results]


def consumer(bootstrap, **conf):
    # confluent-kafka refuses to create a consumer without group.id; it is never used:
    # partitions are assign()ed and nothing is committed.
    return Consumer(clients.consumer_conf(bootstrap, f"unused-{uuid.uuid4().hex[:8]}", **conf))


def high_watermarks(bootstrap, topic, partitions):
    c = consumer(bootstrap)
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        c.close()


def consume_to_end(bootstrap, topic, partitions, timeout=WAIT, **conf):
    """Reads every record of the given partitions from the beginning up to the high watermark
    that the broker reports at the start. Returns {partition: [Message, ...]} in offset order."""
    ends = high_watermarks(bootstrap, topic, partitions)
    c = consumer(bootstrap, **conf)
    out = {p: [] for p in partitions}
    errors = []
    try:
        c.assign([TopicPartition(topic, p, 0) for p in partitions if ends[p] > 0])
        pending = {p for p in partitions if ends[p] > 0}
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                got = {p: len(v) for p, v in out.items()}
                raise AssertionError(
                    f"timed out reading {topic}: high watermarks {ends}, records read {got}, "
                    f"consumer errors {errors[:5]}"
                )
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().fatal():
                    raise KafkaException(msg.error())
                errors.append(msg.error())
                continue
            out[msg.partition()].append(msg)
            if msg.offset() + 1 >= ends[msg.partition()]:
                pending.discard(msg.partition())
    finally:
        c.close()
    return out


def headers_of(msg):
    return [(k, v) for k, v in (msg.headers() or [])]


def list_topic_names(bootstrap):
    return set(admin(bootstrap).list_topics(timeout=10).topics)


def err_code(exc):
    """KafkaError code from a confluent-kafka exception raised by a future."""
    assert isinstance(exc, KafkaException), f"expected KafkaException, got {exc!r}"
    return exc.args[0].code()


# ------------------------------------------------------------------------------------------------
# kcat


def kcat(*args, input=None, timeout=60, check=True):
    proc = subprocess.run(
        ["kcat", *map(str, args)],
        input=input,
        capture_output=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"kcat {' '.join(map(str, args))} exited {proc.returncode}\n"
            f"stdout: {proc.stdout[-2000:]!r}\nstderr: {proc.stderr[-4000:].decode(errors='replace')}"
        )
    return proc


__all__ = [
    "CODECS",
    "KafkaError",
    "TopicPartition",
    "admin",
    "consume_to_end",
    "consumer",
    "create_topic",
    "err_code",
    "headers_of",
    "high_watermarks",
    "kcat",
    "list_topic_names",
    "produce_all",
    "producer",
    "topic_name",
    "wait_for_topic",
    "wait_until",
]


# ------------------------------------------------------------------------------------------------
# raw requests (kafka-python's protocol objects, no client logic)


def raw_request(bootstrap, req, resp_cls, version, timeout=10.0):
    """Sends one kafka-python protocol request object to the first bootstrap broker over a
    fresh connection and returns the decoded response: no retries, no routing, so a test sees
    exactly what the broker answers to exactly this API version."""
    address = bootstrap.split(",")[0]
    return kafkameta.request(address, req, version, timeout=timeout, resp_cls=resp_cls,
                             client_id="raftka-tests-raw", correlation_id=7)
