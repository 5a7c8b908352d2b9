#!/usr/bin/env python3
"""Produce/consume smoke check against the docker compose cluster, from the host through the
EXTERNAL listeners (scripts/test-docker runs it between chaos faults).

    smoke.py --bootstrap HOST:PORT,... --state FILE setup
        create topic `smoke` (3 partitions, replication factor 3) and wait for its leaders
    smoke.py --bootstrap ... --state FILE round TAG [--count N]
        produce N records (acks=all, idempotent) tagged TAG, remember every acknowledged one in
        FILE, then read every partition from the beginning up to its end and check that every
        record ever acknowledged (this round and earlier ones) is there. Exit 1 if one is missing.

Polls with deadlines (60 s by default, --timeout); never sleeps in place of a condition.
"""

import argparse
import json
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC = "smoke"
RETRY_CODES = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
               KafkaError._TIMED_OUT, KafkaError._TRANSPORT}
PARTITIONS = 3


def setup(a):
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    fs = admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3)], request_timeout=30)
    for f in fs.values():
        try:
            f.result(timeout=30)
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    deadline = time.monotonic() + a.timeout
    while True:
        md = admin.list_topics(TOPIC, timeout=5)
        t = md.topics.get(TOPIC)
        if t and not t.error and len(t.partitions) == PARTITIONS and all(
            p.leader >= 0 and len(p.isrs) == 3 for p in t.partitions.values()
        ):
            print(f"[smoke] topic {TOPIC}: " + ", ".join(
                f"p{p.id} leader={p.leader} isr={list(p.isrs)}" for p in t.partitions.values()))
            return 0
        if time.monotonic() > deadline:
            print(f"[smoke] topic {TOPIC} has no leaders / full ISR after {a.timeout}s", file=sys.stderr)
            return 1
        time.sleep(0.1)


def load(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return []


def high_watermark(consumer, partition, deadline):
    """The partition's high watermark, retrying while leadership moves (a preferred leader
    coming back, a failover): librdkafka answers NOT_LEADER_FOR_PARTITION until its metadata
    catches up, and does not retry this call itself."""
    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(TOPIC, partition), timeout=5)[1]
        except KafkaException as e:
            if not e.args[0].retriable() and e.args[0].code() not in RETRY_CODES:
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def round_(a):
    acked = load(a.state)
    producer = Producer({
        "bootstrap.servers": a.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "message.timeout.ms": int(a.timeout * 1000),
        "linger.ms": 5,
    })
    new, failed = [], []

    def on_delivery(err, msg):
        (failed if err else new).append(msg.value().decode() if not err else str(err))

    start = time.monotonic()
    for i in range(a.count):
        value = f"{a.tag}-{i}"
        producer.produce(TOPIC, value=value.encode(), key=str(i).encode(), on_delivery=on_delivery)
        producer.poll(0)
    left = producer.flush(a.timeout)
    if left or failed:
        print(f"[smoke] round {a.tag}: {len(failed)} failed, {left} undelivered: {failed[:3]}", file=sys.stderr)
        return 1
    acked += new
    with open(a.state, "w") as f:
        json.dump(acked, f)
    produce_s = time.monotonic() - start

    consumer = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": f"smoke-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    ends = {}
    for p in range(PARTITIONS):
        ends[p] = high_watermark(consumer, p, time.monotonic() + a.timeout)
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    seen = set()
    pos = {p: 0 for p in range(PARTITIONS)}
    deadline = time.monotonic() + a.timeout
    while any(pos[p] < ends[p] for p in pos):
        if time.monotonic() > deadline:
            print(f"[smoke] round {a.tag}: consumer stuck at {pos} of {ends}", file=sys.stderr)
            return 1
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            continue
        seen.add(msg.value().decode())
        pos[msg.partition()] = msg.offset() + 1
    consumer.close()
    missing = [v for v in acked if v not in seen]
    if missing:
        print(f"[smoke] round {a.tag}: {len(missing)} acknowledged records missing, e.g. {missing[:5]}",
              file=sys.stderr)
        return 1
    print(f"[smoke] round {a.tag}: {len(new)} produced (acks=all) in {produce_s:.1f}s, "
          f"all {len(acked)} acknowledged so far read back ({sum(ends.values())} records in the topic)")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--state", required=True, help="JSON file of acknowledged values")
    ap.add_argument("--timeout", type=float, default=60)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("setup")
    r = sub.add_parser("round")
    r.add_argument("tag")
    r.add_argument("--count", type=int, default=200)
    a = ap.parse_args()
    return setup(a) if a.cmd == "setup" else round_(a)


if __name__ == "__main__":
    sys.exit(main())
