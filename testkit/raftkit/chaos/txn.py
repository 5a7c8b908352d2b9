"""--workload txn: an exactly-once consume-transform-produce pipeline under faults (issue 14).

A feeder (idempotent, acks=all) appends records to a source topic. A transformer reads them in
a consumer group with isolation.level=read_committed and, for each polled batch, runs one
transaction of a transactional producer: one output record per source record (value
``t<txn>|<src partition>:<src offset>``) to the same partition of an output topic, plus the
consumer's positions through send_offsets_to_transaction; about one transaction in ten is
aborted on purpose, the others committed. On an abortable error it aborts, on a fatal one it
builds a new producer (whose InitProducerId fences the old one); either way it rewinds the
consumer to the group's committed offsets. A reader follows the output topic with
read_committed. The nemesis kills, pauses or partitions brokers meanwhile (the transaction
coordinator among them, by chance or because it leads partitions).

After the faults heal, the transformer drains the source, and the output topic is read back
with read_committed once no transaction is open (LSO = high watermark). Checks (Jepsen's
anomalies for Kafka transactions):
- aborted-read: no record of a transaction that was aborted is ever read (reader or final read);
- lost-commit: every record of a transaction whose commit was acknowledged is in the final read;
- atomicity: every transaction, including those whose outcome the client never learned, is in
  the final read wholly or not at all;
- uncommitted-read: every record the read_committed reader saw is in the final read;
- duplicate: no source record is transformed twice in the final read (exactly once);
- offsets: the group's committed offsets move with the transactions: for every source partition
  the final read holds exactly source offsets 0..committed-1.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

from ..clientconf import secure

now = time.monotonic


class Txns:
    def __init__(self):
        self.lock = threading.Lock()
        self.txns = []  # {"no", "values", "outcome": committed|aborted|unknown, "deliberate"}
        self.reader = []  # values the read_committed reader saw
        self.fed = 0
        self.errors = Counter()

    def add_txn(self, t):
        with self.lock:
            self.txns.append(t)


def _tp(topic, p, o=-1001):
    from confluent_kafka import TopicPartition

    return TopicPartition(topic, p, o)


class Feeder(threading.Thread):
    def __init__(self, st, bootstrap, topic, partitions, rate):
        super().__init__(name="feeder", daemon=True)
        self.st, self.bootstrap, self.topic, self.partitions, self.rate = st, bootstrap, topic, partitions, rate
        self.stop_ev = threading.Event()

    def run(self):
        from confluent_kafka import Producer

        p = Producer(secure({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "acks": "all",
                      "linger.ms": 5, "message.timeout.ms": 120000}))
        i = 0
        while not self.stop_ev.is_set():
            try:
                p.produce(self.topic, value=f"s{i}".encode(), partition=i % self.partitions)
                i += 1
            except BufferError:
                p.poll(0.1)
            p.poll(0)
            self.stop_ev.wait(1.0 / self.rate)
        p.flush(120)
        with self.st.lock:
            self.st.fed = i


class Transformer(threading.Thread):
    def __init__(self, st, bootstrap, src, out, group, txn_id, seed, log):
        super().__init__(name="transformer", daemon=True)
        self.st, self.bootstrap, self.src, self.out = st, bootstrap, src, out
        self.group, self.txn_id, self.log = group, txn_id, log
        self.rng = random.Random(seed)
        self.stop_ev = threading.Event()
        self.no = 0
        self.producers = 0

    def _producer(self):
        from confluent_kafka import Producer

        self.producers += 1
        p = Producer(secure({"bootstrap.servers": self.bootstrap, "transactional.id": self.txn_id,
                      "transaction.timeout.ms": 30000, "linger.ms": 5, "message.timeout.ms": 30000,
                      "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}))
        while not self.stop_ev.is_set():
            try:
                p.init_transactions(30)
                return p
            except Exception as e:  # noqa: BLE001 - coordinator moving: retry
                self.st.errors[f"init: {e}"[:120]] += 1
                time.sleep(0.5)
        return p

    def _consumer(self):
        from confluent_kafka import Consumer

        c = Consumer(secure({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                      "isolation.level": "read_committed", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
                      "fetch.wait.max.ms": 100, "enable.partition.eof": False}))
        c.subscribe([self.src])
        return c

    def _rewind(self, c):
        """Back to the group's committed offsets (what the next transaction must start from)."""
        for _ in range(20):
            try:
                asg = c.assignment()
                if not asg:
                    return
                for tp in c.committed(asg, timeout=10):
                    c.seek(_tp(self.src, tp.partition, tp.offset if tp.offset >= 0 else 0))
                return
            except Exception as e:  # noqa: BLE001
                self.st.errors[f"rewind: {e}"[:120]] += 1
                time.sleep(0.5)
        raise RuntimeError("cannot rewind the consumer to the committed offsets")

    def run(self):
        from confluent_kafka import KafkaException

        p = self._producer()
        c = self._consumer()
        while not self.stop_ev.is_set():
            msgs = [m for m in c.consume(num_messages=50, timeout=0.5) if not m.error()]
            if not msgs:
                continue
            self.no += 1
            deliberate = self.rng.random() < 0.1
            values = [f"t{self.no}|{m.partition()}:{m.offset()}" for m in msgs]
            t = {"no": self.no, "values": values, "outcome": "unknown", "deliberate": deliberate}
            stage = "begin"
            try:
                p.begin_transaction()
                stage = "produce"
                for m, v in zip(msgs, values):
                    p.produce(self.out, value=v.encode(), partition=m.partition())
                stage = "offsets"
                p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
                if deliberate:
                    stage = "abort"
                    p.abort_transaction(30)
                    t["outcome"] = "aborted"
                    self._rewind(c)
                else:
                    stage = "commit"
                    p.commit_transaction(30)
                    t["outcome"] = "committed"
            except KafkaException as e:
                err = e.args[0]
                self.st.errors[f"{stage}: {err.name()}"] += 1
                if err.txn_requires_abort():
                    try:
                        p.abort_transaction(30)
                        t["outcome"] = "aborted"
                    except KafkaException as e2:
                        self.st.errors[f"abort: {e2.args[0].name()}"] += 1
                        p = self._producer()
                else:
                    # fatal, or retriable and given up: the outcome stays unknown; a new producer
                    # fences the old one and its InitProducerId aborts what is still open
                    p = self._producer()
                try:
                    self._rewind(c)
                except RuntimeError:
                    c.close()
                    c = self._consumer()
            self.st.add_txn(t)
        try:
            c.close()
        except Exception:  # noqa: BLE001
            pass


class Reader(threading.Thread):
    def __init__(self, st, bootstrap, topic, partitions):
        super().__init__(name="reader", daemon=True)
        self.st, self.bootstrap, self.topic, self.partitions = st, bootstrap, topic, partitions
        self.stop_ev = threading.Event()

    def run(self):
        from confluent_kafka import Consumer

        c = Consumer(secure({"bootstrap.servers": self.bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:6]}",
                      "isolation.level": "read_committed", "enable.auto.commit": False,
                      "enable.partition.eof": False, "fetch.wait.max.ms": 100}))
        c.assign([_tp(self.topic, p, 0) for p in range(self.partitions)])
        while not self.stop_ev.is_set():
            m = c.poll(0.2)
            if m is not None and not m.error():
                with self.st.lock:
                    self.st.reader.append(m.value().decode())
        c.close()


def read_back(bootstrap, topic, partitions, isolation, timeout=180):
    """Every record of `topic` a consumer of `isolation` reads up to the end it is shown;
    for read_committed, waits until that end (the LSO) reaches the high watermark."""
    from confluent_kafka import Consumer

    deadline = now() + timeout

    def consumer(iso):
        return Consumer(secure({"bootstrap.servers": bootstrap, "group.id": f"final-{uuid.uuid4().hex[:6]}",
                         "isolation.level": iso, "enable.auto.commit": False,
                         "enable.partition.eof": False, "fetch.wait.max.ms": 100}))

    c = consumer(isolation)
    try:
        while True:
            ends = {p: c.get_watermark_offsets(_tp(topic, p), timeout=10)[1] for p in range(partitions)}
            if isolation != "read_committed":
                break
            hw = consumer("read_uncommitted")
            try:
                his = {p: hw.get_watermark_offsets(_tp(topic, p), timeout=10)[1] for p in range(partitions)}
            finally:
                hw.close()
            if his == ends:
                break
            if now() > deadline:
                raise RuntimeError(f"{topic}: a transaction stays open: LSO {ends}, high watermarks {his}")
            time.sleep(0.5)
        c.assign([_tp(topic, p, 0) for p in range(partitions)])
        out = defaultdict(list)
        while True:
            pos = {tp.partition: tp.offset for tp in c.position([_tp(topic, p) for p in range(partitions)])}
            if all(ends[p] == 0 or pos[p] >= ends[p] for p in range(partitions)):
                return out, ends
            if now() > deadline:
                raise RuntimeError(f"reading {topic} back: ends {ends}, positions {pos}")
            m = c.poll(0.2)
            if m is not None and not m.error():
                out[m.partition()].append((m.offset(), m.value().decode()))
    finally:
        c.close()


# OffsetFetch answers a client retries (Kafka's consumer does so by itself; librdkafka's
# committed() hands them to the caller): the group's coordinator moved or is loading.
_RETRIABLE_OFFSET_FETCH = ("NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS",
                           "COORDINATOR_NOT_AVAILABLE", "_TIMED_OUT", "_TRANSPORT")


def committed(bootstrap, group, topic, partitions, timeout=60):
    """The group's committed offsets of ``topic`` (-1 → 0), retrying the answers a Kafka
    client retries for up to ``timeout`` seconds; any other error, or the last retriable one
    at the deadline, raises."""
    from confluent_kafka import Consumer, KafkaException

    c = Consumer(secure({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}))
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                res = c.committed([_tp(topic, p) for p in range(partitions)], timeout=20)
                return {tp.partition: max(tp.offset, 0) for tp in res}
            except KafkaException as e:
                name = e.args[0].name() if e.args else ""
                if name not in _RETRIABLE_OFFSET_FETCH or time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)
    finally:
        c.close()


def check(txns, reader, final_out, source, commits):
    """[(kind, message)] violations (see the module documentation)."""
    v = []
    final_values = [val for recs in final_out.values() for _o, val in recs]
    final_set = set(final_values)
    by_value = {}
    for t in txns:
        for val in t["values"]:
            by_value[val] = t
    for val in set(reader) | final_set:
        t = by_value.get(val)
        if t is None:
            v.append(("unknown-record", f"{val} was written by no transaction of the run"))
        elif t["outcome"] == "aborted":
            where = "the final read" if val in final_set else "the read_committed reader"
            v.append(("aborted-read", f"{val} of aborted transaction {t['no']} read by {where}"))
    for t in txns:
        present = sum(1 for val in t["values"] if val in final_set)
        if t["outcome"] == "committed" and present < len(t["values"]):
            v.append(("lost-commit", f"transaction {t['no']}: {len(t['values']) - present} of "
                                     f"{len(t['values'])} committed records missing"))
        elif 0 < present < len(t["values"]):
            v.append(("atomicity", f"transaction {t['no']} ({t['outcome']}): {present} of "
                                   f"{len(t['values'])} records present"))
    for val in set(reader) - final_set:
        v.append(("uncommitted-read", f"the reader saw {val}, which the final read does not hold"))
    for val, n in Counter(final_values).items():
        if n > 1:
            v.append(("duplicate", f"{val} appears {n} times"))
    src_seen = Counter(val.split("|", 1)[1] for val in final_values)
    for s, n in src_seen.items():
        if n > 1:
            v.append(("duplicate", f"source record {s} transformed {n} times"))
    for p, c in commits.items():
        got = sorted(int(s.split(":")[1]) for s in src_seen if int(s.split(":")[0]) == p)
        if got != list(range(c)):
            missing = sorted(set(range(c)) - set(got))[:5]
            extra = sorted(set(got) - set(range(c)))[:5]
            v.append(("offsets", f"source partition {p}: committed offset {c}, transformed offsets "
                                 f"differ (missing {missing}..., beyond {extra}...)"))
        if c > source.get(p, 0):
            v.append(("offsets", f"source partition {p}: committed offset {c} beyond its end {source.get(p)}"))
    return v


KINDS = ["aborted-read", "lost-commit", "atomicity", "uncommitted-read", "duplicate", "offsets",
         "unknown-record"]


def run(args, log):
    from . import cli
    from .history import History
    from .nemesis import Nemesis
    from .workload import Recorder

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    print(f"seed {seed} (replay with --seed {seed})", flush=True)
    out_dir = Path(args.out) if args.out else Path(__import__("tempfile").mkdtemp(prefix=f"raftka-txn-{seed}-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    base = args.topic or f"txn-{uuid.uuid4().hex[:8]}"
    src, out, group, txn_id = f"{base}-in", f"{base}-out", f"{base}-group", f"{base}-tx"
    h = History(topic=src, partitions=args.partitions, seed=seed, wall_t0=time.time(), t0=now(), config={})
    rec = Recorder(h)
    st = Txns()
    backend = cli.make_backend(args)
    workers = []
    violations = []
    health = None
    try:
        backend.start()
        kinds = [k for k in args.kinds if not backend.kinds().get(k)]
        bootstrap = backend.bootstrap
        for t in (src, out):
            cli.create_topic(bootstrap, t, args.partitions, args.replication_factor, args.min_insync)
        if not cli.wait_healed(backend, [src, out], 60).healed:
            raise RuntimeError("the topics never settled")
        log(f"bootstrap {bootstrap}; {src} -> {out}, group {group}, transactional.id {txn_id}")
        feeder = Feeder(st, bootstrap, src, args.partitions, args.rate)
        transformer = Transformer(st, bootstrap, src, out, group, txn_id, seed, log)
        reader = Reader(st, bootstrap, out, args.partitions)
        workers = [feeder, transformer, reader]
        for w in workers:
            w.start()
        if not cli.wait_until(lambda: any(t["outcome"] == "committed" for t in list(st.txns)), 90):
            raise RuntimeError("no transaction committed within 90 s of starting")
        log("pipeline running: transactions committing")
        nemesis = Nemesis(backend, rec, src, kinds, seed, args.duration, args.interval, args.hold, log=log)
        t0 = now()
        if kinds:
            nemesis.start()
        while now() - t0 < args.duration and (not kinds or nemesis.is_alive()):
            time.sleep(min(10, max(0.1, args.duration - (now() - t0))))
            outcomes = Counter(t["outcome"] for t in list(st.txns))
            log(f"progress: {now() - t0:.0f}/{args.duration:.0f}s, transactions {dict(outcomes)}, "
                f"faults {len(h.faults)}")
        if kinds:
            nemesis.stop()
        backend.heal_all()
        health = cli.wait_healed(backend, [src, out], args.heal_timeout)
        log(f"healed: {health.healed} after {health.seconds:.1f}s {health.detail}")
        feeder.stop_ev.set()
        feeder.join(180)
        ends = {p: hi for p, (_lo, hi) in cli.end_offsets(bootstrap, src, args.partitions).items()}
        log(f"feeder stopped after {st.fed} records; draining the source ({ends})")
        drained = cli.wait_until(lambda: committed(bootstrap, group, src, args.partitions) == ends, 120, 1.0)
        if not drained:
            log("the transformer did not commit up to the source's end within 120 s (checked anyway)")
        transformer.stop_ev.set()
        transformer.join(120)
        time.sleep(1)
        reader.stop_ev.set()
        reader.join(30)
        commits = committed(bootstrap, group, src, args.partitions)
        final_out, _ = read_back(bootstrap, out, args.partitions, "read_committed")
        violations = check(list(st.txns), list(st.reader), final_out, ends, commits)
    except Exception as e:  # noqa: BLE001 - reported as a failed run
        log(f"run aborted: {e!r}")
        violations.append(("run", f"aborted: {e!r}"))
    finally:
        for w in workers:
            w.stop_ev.set()
        try:
            backend.heal_all()
        except Exception as e:  # noqa: BLE001
            log(f"heal_all failed: {e!r}")
    outcomes = Counter(t["outcome"] for t in st.txns)
    by_kind = Counter(k for k, _ in violations)
    lines = [
        f"raftka chaos verify (transactions): seed {seed}, duration {args.duration} s, faults "
        f"{','.join(args.kinds) or 'none'}, {src} -> {out} ({args.partitions} partitions)",
        f"transactions: {sum(outcomes.values())} ({', '.join(f'{k} {n}' for k, n in sorted(outcomes.items()))}), "
        f"deliberate aborts {sum(1 for t in st.txns if t['deliberate'])}, producers {getattr(workers[1], 'producers', 0) if workers else 0}",
        f"records: fed {st.fed}, read by the read_committed reader {len(st.reader)}",
        f"client errors: {dict(st.errors.most_common(8))}",
        f"faults: {len(h.faults)} ({', '.join(f'{k} {n}' for k, n in sorted(Counter(f.kind for f in h.faults).items()))})",
        f"cluster healed: {'yes' if health and health.healed else 'NO'}",
        "checks:",
        *[f"  {k:<18} {by_kind.get(k, 0)}" for k in KINDS + ["run"]],
    ]
    if violations:
        lines.append(f"RESULT: FAIL ({len(violations)} violation(s)); examples:")
        lines += [f"  [{k}] {m}" for k, m in violations[:20]]
    else:
        lines.append("RESULT: OK (no violation)")
    text = "\n".join(lines) + "\n"
    (out_dir / "summary.txt").write_text(text)
    (out_dir / "transactions.json").write_text(json.dumps({"txns": st.txns, "reader": st.reader}))
    print(text, flush=True)
    if violations and hasattr(backend, "own") and backend.own:
        backend.keep = True
    try:
        backend.close()
    except Exception as e:  # noqa: BLE001
        log(f"teardown failed: {e!r}")
    return 1 if violations else 0
