"""One consumer-group member as its own process, driven by tests/python/test_consumer_groups.py.

    python3 group_member.py CONFIG_JSON

CONFIG_JSON: {"client": "confluent" | "kafka-python", "bootstrap": ..., "group": ...,
"topic": ..., "assignor": "range" | "roundrobin" | "cooperative-sticky" | "sticky",
"session_timeout_ms": int, "commit": bool, "instance_id": str | null, "client_id": str}

Writes one JSON object per line to stdout:
  {"ev": "assigned", "partitions": [..]}   whenever its assignment changes (sorted partitions)
  {"ev": "msg", "p": partition, "o": offset, "v": value}
  {"ev": "error", "msg": ...}              consumer errors (not fatal unless the test says so)
  {"ev": "closed"}                         after a clean close (LeaveGroup sent)
Reads commands from stdin: "close" closes the consumer cleanly and exits. A test that wants a
member to die without leaving kills the process (SIGKILL).

With "commit": true every message's next offset is committed synchronously before the
message is reported, so a reported message is a committed one.
"""

import json
import sys
import threading


def emit(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def run_confluent(cfg, stop):
    from confluent_kafka import Consumer, TopicPartition

    conf = {
        "bootstrap.servers": cfg["bootstrap"],
        "group.id": cfg["group"],
        "client.id": cfg.get("client_id", "member"),
        "partition.assignment.strategy": cfg["assignor"],
        "session.timeout.ms": cfg["session_timeout_ms"],
        "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": 30000,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    }
    if cfg.get("instance_id"):
        conf["group.instance.id"] = cfg["instance_id"]
    c = Consumer(conf)
    c.subscribe([cfg["topic"]])
    last = None
    while not stop.is_set():
        msg = c.poll(0.1)
        current = sorted(tp.partition for tp in c.assignment())
        if current != last:
            last = current
            emit(ev="assigned", partitions=current)
        if msg is None:
            continue
        if msg.error():
            emit(ev="error", msg=str(msg.error()))
            continue
        if cfg.get("commit"):
            c.commit(offsets=[TopicPartition(msg.topic(), msg.partition(), msg.offset() + 1)], asynchronous=False)
        emit(ev="msg", p=msg.partition(), o=msg.offset(), v=msg.value().decode())
    c.close()
    emit(ev="closed")


def run_kafka_python(cfg, stop):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
    from kafka.structs import OffsetAndMetadata

    assignors = {
        "range": RangePartitionAssignor,
        "roundrobin": RoundRobinPartitionAssignor,
        "sticky": StickyPartitionAssignor,
    }
    c = KafkaConsumer(
        cfg["topic"],
        bootstrap_servers=cfg["bootstrap"],
        group_id=cfg["group"],
        client_id=cfg.get("client_id", "member"),
        partition_assignment_strategy=[assignors[cfg["assignor"]]],
        session_timeout_ms=cfg["session_timeout_ms"],
        heartbeat_interval_ms=500,
        max_poll_interval_ms=30000,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    last = None
    while not stop.is_set():
        batches = c.poll(timeout_ms=100)
        current = sorted(tp.partition for tp in c.assignment())
        if current != last:
            last = current
            emit(ev="assigned", partitions=current)
        for tp, msgs in batches.items():
            for m in msgs:
                if cfg.get("commit"):
                    c.commit({TopicPartition(m.topic, m.partition): OffsetAndMetadata(m.offset + 1, "", -1)})
                emit(ev="msg", p=m.partition, o=m.offset, v=m.value.decode())
    c.close()
    emit(ev="closed")


def main():
    cfg = json.loads(sys.argv[1])
    stop = threading.Event()

    def read_commands():
        for line in sys.stdin:
            if line.strip() == "close":
                stop.set()
                return
        # stdin closed (the test process went away): leave too
        stop.set()

    threading.Thread(target=read_commands, daemon=True).start()
    run = run_confluent if cfg["client"] == "confluent" else run_kafka_python
    run(cfg, stop)


if __name__ == "__main__":
    main()
