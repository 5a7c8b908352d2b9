"""The clients of a verify run (confluent-kafka / librdkafka), each in its own thread.

- ``ProducerWorker``: one idempotent acks=all producer writing records ``k<n>:<seq>:<uuid>``
  under keys k0..k<K-1> (per-key sequence numbers 0, 1, 2, ...) at a fixed rate; records every
  send, ack (partition, offset) and failure. A fatal producer error (idempotence broken) is
  recorded and the producer recreated; failed records are never re-sent.
- ``ConsumerWorker``: a member of the test's consumer group; records every assignment
  (numbered epochs), revocation, read, and asynchronous commit (the next offset after the last
  record read of each partition, once per poll batch; its outcome arrives with a later poll).
- ``CommittedPoller``: polls the group's committed offsets with the admin client
  (OffsetFetch) every ``interval`` seconds.
- ``final_read``: after the run, a fresh consumer (assign, no group) reads every partition
  from its log start to its high watermark.

All of them append to one ``History`` under one lock; times come from ``time.monotonic()``.
"""

from __future__ import annotations

import random
import threading
import time
import uuid

from ..clientconf import secure
from .history import (
    Ack,
    Assign,
    CommitAttempt,
    CommittedObs,
    FinalRead,
    ProduceError,
    Read,
    Revoke,
    Send,
)

now = time.monotonic


class Recorder:
    """The history plus the lock every thread takes to append to it."""

    def __init__(self, history):
        self.h = history
        self.lock = threading.Lock()

    def add(self, field, item):
        with self.lock:
            getattr(self.h, field).append(item)


class ProducerWorker(threading.Thread):
    def __init__(self, rec, bootstrap, topic, keys, rate, seed, conf=None, log=print):
        super().__init__(name="producer", daemon=True)
        self.rec, self.bootstrap, self.topic = rec, bootstrap, topic
        self.keys = [f"k{i}" for i in range(keys)]
        self.next_seq = {k: 0 for k in self.keys}
        self.rate = rate
        self.rng = random.Random(seed)
        self.extra = conf or {}
        self.log = log
        self.stop_ev = threading.Event()
        self.fatal = None
        self.fatal_errors = []  # every fatal error that made it recreate the producer
        self.producers = 0
        self.pending_at_end = 0

    def _new_producer(self):
        from confluent_kafka import Producer

        conf = {
            "bootstrap.servers": self.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "max.in.flight.requests.per.connection": 5,
            "message.timeout.ms": 60000,
            "request.timeout.ms": 5000,
            "retry.backoff.ms": 50,
            "retry.backoff.max.ms": 500,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "topic.metadata.refresh.interval.ms": 1000,
            "client.id": f"verify-producer-{self.producers}",
            "error_cb": self._error_cb,
        }
        conf.update(self.extra)
        self.producers += 1
        return Producer(secure(conf))

    def _error_cb(self, err):
        if err.fatal():
            self.fatal = str(err)

    def _poll(self, p, timeout):
        """poll() serves delivery callbacks; it raises KafkaException once the producer hit a
        fatal error (e.g. OUT_OF_ORDER_SEQUENCE_NUMBER when the broker lost records)."""
        try:
            p.poll(timeout)
        except Exception as e:  # noqa: BLE001 - KafkaException: fatal state
            self.fatal = self.fatal or str(e)
            time.sleep(min(timeout, 0.05))

    def _replace(self, p):
        """A fatal producer can send nothing more: fail what it still holds (the delivery
        callbacks record them as indeterminate) and start a new one (new producer id)."""
        self.log(f"producer: fatal error {self.fatal}; recreating the producer")
        self.fatal_errors.append(self.fatal)
        self.fatal = None
        for step in (lambda: p.purge(), lambda: p.flush(5)):
            try:
                step()
            except Exception:  # noqa: BLE001 - still fatal: its callbacks may not all come
                pass
        return self._new_producer()

    def run(self):
        p = self._new_producer()
        period = 1.0 / self.rate if self.rate > 0 else 0.0
        next_t = now()
        while not self.stop_ev.is_set():
            if self.fatal:
                p = self._replace(p)
            key = self.rng.choice(self.keys)
            seq = self.next_seq[key]
            self.next_seq[key] = seq + 1
            value = f"{key}:{seq}:{uuid.uuid4().hex[:12]}"
            t = now()
            self.rec.add("sends", Send(value, key, seq, t))
            cb = self._callback(value, key, seq, t)
            while True:
                try:
                    p.produce(self.topic, key=key.encode(), value=value.encode(), on_delivery=cb)
                    break
                except BufferError:
                    self._poll(p, 0.05)
                except Exception as e:  # noqa: BLE001 - KafkaException: fatal state
                    self.rec.add("produce_errors", ProduceError(value, key, seq, now(), f"produce(): {e}"))
                    self.fatal = self.fatal or str(e)
                    break
            next_t += period
            delay = next_t - now()
            if delay > 0:
                self._poll(p, delay)
            else:
                self._poll(p, 0)
                if delay < -1.0:
                    next_t = now()  # fell behind (backpressure): do not burst to catch up
        try:
            self.pending_at_end = p.flush(60)
        except Exception as e:  # noqa: BLE001
            self.log(f"producer: flush failed: {e}")
            self.pending_at_end = len(p)
        if self.pending_at_end:
            self.log(f"producer: {self.pending_at_end} record(s) still undelivered after 60 s of flush")
            for step in (lambda: p.purge(), lambda: p.flush(5)):
                try:
                    step()
                except Exception:  # noqa: BLE001
                    pass

    def _callback(self, value, key, seq, t_send):
        def cb(err, msg):
            if err is None:
                self.rec.add("acks", Ack(value, key, seq, msg.partition(), msg.offset(), t_send, now()))
            else:
                self.rec.add("produce_errors", ProduceError(value, key, seq, now(), str(err)))
                if err.fatal():
                    self.fatal = self.fatal or str(err)

        return cb

    def stop(self):
        self.stop_ev.set()
        self.join(180)


class ConsumerWorker(threading.Thread):
    def __init__(self, rec, bootstrap, topic, group, name, conf=None, log=print):
        super().__init__(name=name, daemon=True)
        self.rec, self.bootstrap, self.topic, self.group = rec, bootstrap, topic, group
        self.cname = name
        self.extra = conf or {}
        self.log = log
        self.stop_ev = threading.Event()
        self.epoch_no = 0
        self.epochs = {}  # partition -> current epoch
        self.last_read = {}  # partition -> last offset read (any epoch)
        self.pending = {}  # (partition, offset) -> [CommitAttempt] awaiting their outcome
        self.errors = 0

    def _on_assign(self, consumer, tps):
        t = now()
        for tp in tps:
            self.epoch_no += 1
            self.epochs[tp.partition] = self.epoch_no
            self.rec.add("assigns", Assign(self.cname, tp.partition, self.epoch_no, t))

    def _on_revoke(self, consumer, tps):
        t = now()
        for tp in tps:
            e = self.epochs.pop(tp.partition, None)
            if e is not None:
                self.rec.add("revokes", Revoke(self.cname, tp.partition, e, t))

    def run(self):
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        conf = {
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group,
            "client.id": self.cname,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "fetch.wait.max.ms": 100,
            "topic.metadata.refresh.interval.ms": 1000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "retry.backoff.ms": 50,
            "enable.partition.eof": False,
            "on_commit": self._on_commit,
        }
        conf.update(self.extra)
        c = Consumer(secure(conf))
        c.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                    on_lost=self._on_revoke)
        try:
            while not self.stop_ev.is_set():
                try:
                    msgs = c.consume(500, 0.2)
                except KafkaException:
                    self.errors += 1
                    time.sleep(0.1)
                    continue
                upto = {}
                for m in msgs:
                    if m.error():
                        self.errors += 1
                        continue
                    p, o = m.partition(), m.offset()
                    e = self.epochs.get(p, -1)
                    self.rec.add("reads", Read(self.cname, p, e, o, m.value().decode(errors="replace"), now()))
                    self.last_read[p] = o
                    upto[p] = o + 1
                if upto:
                    self._commit(c, upto, TopicPartition, KafkaException)
        finally:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass

    def _commit(self, c, upto, TopicPartition, KafkaException):
        """Asynchronous commit; its outcome arrives in ``_on_commit`` during a later poll. (A
        synchronous commit can block the thread for good when the coordinator is lost, and
        then the member is evicted.) The attempt is recorded before it is sent."""
        tps = [TopicPartition(self.topic, p, o) for p, o in sorted(upto.items())]
        t0 = now()
        attempts = [CommitAttempt(self.cname, p, o, t0, None, False, "in flight") for p, o in sorted(upto.items())]
        with self.rec.lock:
            self.rec.h.commits.extend(attempts)
            for a in attempts:
                self.pending.setdefault((a.partition, a.offset), []).append(a)
        try:
            c.commit(offsets=tps, asynchronous=True)
        except KafkaException as e:
            t1 = now()
            with self.rec.lock:
                for a in attempts:
                    a.t_end, a.error = t1, str(e.args[0])
                    self._unpend(a)

    def _unpend(self, a):
        lst = self.pending.get((a.partition, a.offset), [])
        if a in lst:
            lst.remove(a)

    def _on_commit(self, err, tps):
        t1 = now()
        with self.rec.lock:
            for tp in tps:
                if tp.topic != self.topic:
                    continue
                lst = self.pending.get((tp.partition, tp.offset))
                if not lst:
                    continue
                a = lst.pop(0)
                perr = err or tp.error
                a.t_end = t1
                a.ok = perr is None
                a.error = "" if perr is None else str(perr)

    def stop(self):
        self.stop_ev.set()
        self.join(20)
        if self.is_alive():
            self.log(f"{self.cname}: still running 20 s after stop (blocked in the client); left behind")


class CommittedPoller(threading.Thread):
    """Polls the group's committed offsets every ``interval`` seconds with
    ``Consumer.committed()`` (OffsetFetch) from a consumer that carries the group id but never
    joins the group. (AdminClient.list_consumer_group_offsets is not used: librdkafka 2.16
    crashes in it on a NOT_COORDINATOR answer, which coordinator moves produce.)"""

    def __init__(self, rec, bootstrap, topic, partitions, group, interval=0.5):
        super().__init__(name="committed-poller", daemon=True)
        self.rec, self.bootstrap, self.topic = rec, bootstrap, topic
        self.partitions, self.group, self.interval = partitions, group, interval
        self.stop_ev = threading.Event()
        self.errors = 0

    def poll_once(self, c):
        from confluent_kafka import TopicPartition

        t0 = now()
        try:
            res = c.committed([TopicPartition(self.topic, p) for p in range(self.partitions)], timeout=3)
        except Exception:  # noqa: BLE001 - coordinator moving, broker down: try again
            self.errors += 1
            return
        t1 = now()
        offs = {str(tp.partition): tp.offset for tp in res
                if tp.error is None and tp.offset is not None and tp.offset >= 0}
        self.rec.add("committed", CommittedObs(t0, t1, offs))

    def run(self):
        from confluent_kafka import Consumer

        c = Consumer(secure({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                             "client.id": "verify-committed-poller", "enable.auto.commit": False,
                             "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}))
        try:
            while not self.stop_ev.is_set():
                self.poll_once(c)
                self.stop_ev.wait(self.interval)
            self.poll_once(c)
        finally:
            c.close()

    def stop(self):
        self.stop_ev.set()
        self.join(30)


def end_offsets(bootstrap, topic, partitions, timeout=10):
    """{partition: (low, high)} watermarks, or raises."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(secure({"bootstrap.servers": bootstrap, "group.id": "verify-watermarks",
                         "enable.auto.commit": False}))
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout) for p in range(partitions)}
    finally:
        c.close()


def final_read(bootstrap, topic, partitions, timeout=180, log=print):
    """Reads every partition from its log start to its high watermark (read_committed does not
    matter: no transactions). Returns a FinalRead."""
    from confluent_kafka import Consumer, TopicPartition

    fr = FinalRead()
    c = Consumer(secure({
        "bootstrap.servers": bootstrap,
        "group.id": f"verify-final-{uuid.uuid4().hex[:6]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 100,
    }))
    deadline = now() + timeout
    try:
        marks = {}
        for p in range(partitions):
            while True:
                try:
                    marks[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                    break
                except Exception as e:  # noqa: BLE001
                    if now() > deadline:
                        fr.complete = False
                        fr.note = f"no watermarks for partition {p}: {e}"
                        return fr
                    time.sleep(0.5)
        for p, (lo, hi) in marks.items():
            fr.log_start[str(p)] = lo
            fr.high_watermark[str(p)] = hi
            fr.records[str(p)] = []
        todo = {p for p, (lo, hi) in marks.items() if hi > lo}
        c.assign([TopicPartition(topic, p, marks[p][0]) for p in todo])
        last = {}
        while todo and now() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error():
                    continue
                p, o = m.partition(), m.offset()
                if o >= marks[p][1]:
                    continue
                fr.records[str(p)].append([o, m.value().decode(errors="replace")])
                last[p] = o
                if o + 1 >= marks[p][1]:
                    todo.discard(p)
        if todo:
            fr.complete = False
            fr.note = "; ".join(f"partition {p} read up to {last.get(p, '-')} of high watermark {marks[p][1]}"
                                for p in sorted(todo))
        return fr
    finally:
        c.close()
