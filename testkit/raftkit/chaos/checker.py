"""The checker: ``check(history) -> Report``, a pure function over a recorded history.

No I/O and no clock; everything it needs is in the ``History`` (see history.py). Each check
below is documented precisely in scripts/chaos/VERIFY.md; in short:

lost                 an acknowledged record (or a record some consumer read) is missing from
                     the final read of its partition.
duplicate            one value at two or more offsets (final read and consumer reads). The
                     producer never sends a value twice, so with idempotence this is a bug.
inconsistent-offset  two different values at the same partition/offset, over every source
                     (acks, consumer reads, the final read); also an ack whose offset holds
                     another value in the final read.
nonmonotonic         within one assignment epoch of one consumer, a read at an offset <= the
                     previous read of that partition.
skip                 within one assignment epoch, a read at an offset > previous + 1 (the topic
                     has no compaction and no transactions, so offsets have no gaps).
skip-at-assignment   the first read of an epoch is beyond every offset the group could have
                     resumed from: greater than the highest commit *attempted* (acknowledged or
                     not) for that partition before that read, or than 0 if none was.
order                two acknowledged records of one key whose offsets are not in the order of
                     their sequence numbers (or are on different partitions).
commit-backwards     a poll of the group's committed offsets shows a lower offset than an
                     earlier poll, or lower than a commit acknowledged before the poll was
                     sent; or a consumer resumes a partition below a commit acknowledged
                     before its assignment (the acknowledged commit was lost). Commits are
                     asynchronous and librdkafka retries a failed one, so a commit of the
                     lower offset that was still in flight when the higher one was sent (or
                     that never got a definite answer) may land last: such a lower offset is
                     not a violation (the two commits were concurrent).
unknown-value        a consumer read a value the producer never sent.
not-healed           after the faults were healed the cluster did not return to every broker
                     up and every ISR full.
incomplete-final-read  some partition could not be read up to its high watermark, so the
                     checks above could not be completed.

``Report.failovers`` gives, for each fault, the time from the moment the fault was in effect
(its command had returned) to the first acknowledgement of a record sent at or after that
moment, on a partition the faulted broker led just before (or, if it led none, on any).
"""

from __future__ import annotations

import bisect
import statistics
import copy
import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field

# How many examples of one violation kind a report keeps (the count is always exact).
EXAMPLES = 20

KINDS = (
    "lost",
    "duplicate",
    "inconsistent-offset",
    "nonmonotonic",
    "skip",
    "skip-at-assignment",
    "order",
    "commit-backwards",
    "unknown-value",
    "not-healed",
    "incomplete-final-read",
)


@dataclass
class Violation:
    kind: str
    message: str
    detail: dict = field(default_factory=dict)


@dataclass
class Failover:
    kind: str
    broker: int
    t_start: float  # when the fault was in effect
    scope: str  # "partitions 0,2" or "any partition"
    seconds: float | None  # None: no acknowledged write after the fault


@dataclass
class Report:
    violations: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # kind -> number of violations
    stats: dict = field(default_factory=dict)
    failovers: list = field(default_factory=list)

    @property
    def ok(self):
        return not any(self.counts.values())

    def add(self, kind, message, **detail):
        assert kind in KINDS, kind
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.counts[kind] <= EXAMPLES:
            self.violations.append(Violation(kind, message, detail))

    def failover_summary(self):
        """{kind or "all": (n, median, max)} over the faults followed by an ack."""
        out = {}
        groups = defaultdict(list)
        for f in self.failovers:
            if f.seconds is not None:
                groups[f.kind].append(f.seconds)
                groups["all"].append(f.seconds)
        for k, xs in groups.items():
            out[k] = (len(xs), statistics.median(xs), max(xs))
        return out


def check(h) -> Report:
    """Runs every check over the history ``h`` and returns the report."""
    r = Report()
    for k in KINDS:
        r.counts[k] = 0
    sent = {s.value: s for s in h.sends}
    final = _final_log(h)
    h = _with_known_offsets(h, final)
    _check_final_complete(h, r)
    if h.final is not None:  # without a final read (run interrupted) nothing can be called lost
        _check_lost(h, r, final)
    _check_offsets(h, r, final)
    _check_duplicates(h, r, final)
    _check_reads(h, r, sent)
    _check_order(h, r)
    _check_commits(h, r)
    _check_health(h, r)
    r.failovers = failovers(h)
    r.stats = _stats(h, final)
    return r


# --------------------------------------------------------------------------------------------
# helpers


def _with_known_offsets(h, final):
    """librdkafka's idempotent producer may report a record delivered without an offset (it
    learned from a later batch's answer that this one was persisted). Such acks take the
    offset where the final read has the record; one the final read lacks keeps ``None``: the
    lost check reports it, and the offset checks skip it."""
    if all(a.offset is not None for a in h.acks):
        return h
    where = {}
    for p, log in final.items():
        for o, v in log.items():
            where.setdefault(v, (p, o))
    acks = []
    for a in h.acks:
        if a.offset is None and a.value in where and where[a.value][0] == a.partition:
            a = dataclasses.replace(a, offset=where[a.value][1])
        acks.append(a)
    h = copy.copy(h)
    h.acks = acks
    return h


class _MaxBefore:
    """max(offset for (t, offset) in points if t < when), in O(log n) per query."""

    def __init__(self, points):
        points = sorted(points)
        self.times = [t for t, _ in points]
        self.prefix = []
        m = None
        for _, o in points:
            m = o if m is None else max(m, o)
            self.prefix.append(m)

    def __call__(self, when, default=None):
        i = bisect.bisect_left(self.times, when)
        return self.prefix[i - 1] if i else default


def _final_log(h):
    """{partition: {offset: value}} of the final read (empty if there was none)."""
    out = {}
    if h.final is None:
        return out
    for p in range(h.partitions):
        out[p] = {int(o): v for o, v in h.final.partition_records(p)}
    return out


def _final_hw(h, p):
    if h.final is None:
        return None
    v = h.final.high_watermark.get(str(p), h.final.high_watermark.get(p))
    return None if v is None else int(v)


# --------------------------------------------------------------------------------------------
# checks


def _check_final_complete(h, r):
    if h.final is None:
        r.add("incomplete-final-read", "there was no final read")
        return
    if not h.final.complete:
        r.add("incomplete-final-read", f"the final read did not reach every high watermark: {h.final.note}")
    for p in range(h.partitions):
        recs = h.final.partition_records(p)
        hw = _final_hw(h, p)
        if hw is None:
            continue
        start = h.final.log_start.get(str(p), h.final.log_start.get(p, 0))
        offsets = sorted(int(o) for o, _ in recs)
        want = list(range(int(start), hw))
        if offsets != want and set(offsets) != set(want):
            missing = sorted(set(want) - set(offsets))
            r.add("incomplete-final-read",
                  f"partition {p}: the final read is missing {len(missing)} offset(s) below the "
                  f"high watermark {hw} (first {missing[:5]})",
                  partition=p, missing=missing[:50], high_watermark=hw)


def _check_lost(h, r, final):
    where = defaultdict(set)  # value -> {(p, o)} in the final read
    for p, log in final.items():
        for o, v in log.items():
            where[v].add((p, o))
    for a in h.acks:
        if a.value not in where:
            r.add("lost", f"acknowledged record {a.value} (partition {a.partition} offset {a.offset}, "
                  f"acked at t={a.t_ack - h.t0:.3f}) is not in the final read",
                  source="ack", value=a.value, partition=a.partition, offset=a.offset, t_ack=a.t_ack)
    seen = set()
    for rd in h.reads:
        if rd.value in where or rd.value in seen:
            continue
        seen.add(rd.value)
        r.add("lost", f"record {rd.value} read by {rd.consumer} at partition {rd.partition} offset "
              f"{rd.offset} (t={rd.t - h.t0:.3f}) is not in the final read",
              source="read", value=rd.value, partition=rd.partition, offset=rd.offset, t=rd.t)


def _check_offsets(h, r, final):
    """Two different values at one (partition, offset), over acks, reads and the final read."""
    at = defaultdict(dict)  # (p, o) -> {value: first source}
    for p, log in final.items():
        for o, v in log.items():
            at[(p, o)].setdefault(v, "final read")
    for a in h.acks:
        if a.offset is not None:
            at[(a.partition, a.offset)].setdefault(a.value, f"ack at t={a.t_ack - h.t0:.3f}")
    for rd in h.reads:
        at[(rd.partition, rd.offset)].setdefault(rd.value, f"read by {rd.consumer} at t={rd.t - h.t0:.3f}")
    for (p, o), vals in sorted(at.items()):
        if len(vals) > 1:
            desc = "; ".join(f"{v} ({src})" for v, src in vals.items())
            r.add("inconsistent-offset", f"partition {p} offset {o} holds different records: {desc}",
                  partition=p, offset=o, values=dict(vals))


def _check_duplicates(h, r, final):
    """A value at two or more offsets. The final read is the authority; consumer reads add
    offsets a value was seen at (e.g. a duplicate that was later truncated away)."""
    offsets = defaultdict(set)  # value -> {(p, o)}
    for p, log in final.items():
        for o, v in log.items():
            offsets[v].add((p, o))
    for rd in h.reads:
        offsets[rd.value].add((rd.partition, rd.offset))
    for v, places in offsets.items():
        if len(places) > 1:
            r.add("duplicate", f"record {v} is at {len(places)} offsets: {sorted(places)}",
                  value=v, places=sorted(places))


def _check_reads(h, r, sent):
    """Per consumer, per assignment epoch: offsets strictly consecutive; the first read of an
    epoch not beyond what the group could have resumed from nor below an acknowledged commit."""
    attempts = defaultdict(list)  # partition -> [(t_start, offset)]
    acked = defaultdict(list)  # partition -> [(t_end, offset)]
    for c in h.commits:
        attempts[c.partition].append((c.t_start, c.offset))
        if c.ok:
            acked[c.partition].append((c.t_end, c.offset))
    attempts = {p: _MaxBefore(v) for p, v in attempts.items()}
    acked = {p: _MaxBefore(v) for p, v in acked.items()}
    nothing = _MaxBefore([])
    assigned_at = {(a.consumer, a.epoch, a.partition): a.t for a in h.assigns}
    index = _commit_index(h)
    last = {}  # (consumer, epoch, partition) -> last read
    for rd in h.reads:
        if rd.value not in sent:
            r.add("unknown-value", f"{rd.consumer} read {rd.value!r} at partition {rd.partition} offset "
                  f"{rd.offset}, a value the producer never sent",
                  consumer=rd.consumer, partition=rd.partition, offset=rd.offset, value=rd.value)
        k = (rd.consumer, rd.epoch, rd.partition)
        prev = last.get(k)
        last[k] = rd
        if prev is None:
            _check_epoch_start(r, rd, attempts.get(rd.partition, nothing), acked.get(rd.partition, nothing),
                               assigned_at.get(k), h, index)
            continue
        if rd.offset <= prev.offset:
            r.add("nonmonotonic", f"{rd.consumer} read partition {rd.partition} offset {rd.offset} after "
                  f"offset {prev.offset} in the same assignment (epoch {rd.epoch}, t={rd.t - h.t0:.3f})",
                  consumer=rd.consumer, partition=rd.partition, epoch=rd.epoch, prev=prev.offset,
                  offset=rd.offset, t=rd.t)
        elif rd.offset > prev.offset + 1:
            r.add("skip", f"{rd.consumer} read partition {rd.partition} offset {rd.offset} right after "
                  f"offset {prev.offset}: skipped {rd.offset - prev.offset - 1} offset(s) "
                  f"(epoch {rd.epoch}, t={rd.t - h.t0:.3f})",
                  consumer=rd.consumer, partition=rd.partition, epoch=rd.epoch, prev=prev.offset,
                  offset=rd.offset, t=rd.t)


def _check_epoch_start(r, rd, attempts, acked, t_assign, h, index):
    t0 = h.t0
    upper = attempts(rd.t, default=0)
    if rd.offset > upper:
        r.add("skip-at-assignment",
              f"{rd.consumer} began partition {rd.partition} (epoch {rd.epoch}) at offset {rd.offset}, "
              f"beyond every offset the group could resume from (highest commit attempted before: "
              f"{upper}; t={rd.t - t0:.3f})",
              consumer=rd.consumer, partition=rd.partition, epoch=rd.epoch, offset=rd.offset,
              upper=upper, t=rd.t)
    if t_assign is not None:
        lower = acked(t_assign)
        if (lower is not None and rd.offset < lower
                and not _concurrent_commit(index, h.commits, rd.partition, rd.offset, t_assign, rd.t)):
            r.add("commit-backwards",
                  f"{rd.consumer} resumed partition {rd.partition} (epoch {rd.epoch}, assigned at "
                  f"t={t_assign - t0:.3f}) at offset {rd.offset}, below offset {lower} whose commit was "
                  f"acknowledged before the assignment",
                  source="resume", consumer=rd.consumer, partition=rd.partition, epoch=rd.epoch,
                  offset=rd.offset, acked=lower, t=rd.t)


def _check_order(h, r):
    """Acknowledged records of one key: increasing seq <=> increasing offset, one partition."""
    by_key = defaultdict(list)
    for a in h.acks:
        if a.offset is not None:
            by_key[a.key].append(a)
    for key, acks in by_key.items():
        acks.sort(key=lambda a: a.seq)
        for x, y in zip(acks, acks[1:]):
            if y.partition != x.partition:
                r.add("order", f"key {key}: seq {x.seq} on partition {x.partition} but seq {y.seq} on "
                      f"partition {y.partition}", key=key, a=x.value, b=y.value)
            elif y.offset <= x.offset:
                r.add("order", f"key {key}: seq {y.seq} is at offset {y.offset} of partition {y.partition}, "
                      f"not after seq {x.seq} at offset {x.offset}",
                      key=key, partition=y.partition, a=x.value, a_offset=x.offset, b=y.value,
                      b_offset=y.offset)


def _commit_index(h):
    """{(partition, offset): [CommitAttempt]} of every commit attempt."""
    idx = defaultdict(list)
    for c in h.commits:
        idx[(c.partition, c.offset)].append(c)
    return idx


def _concurrent_commit(index, commits, p, v, acked_before, seen_by):
    """True when a commit of offset ``v`` on partition ``p`` may have been applied after every
    acknowledged commit of a higher offset that completed before ``acked_before``: it started
    before ``seen_by`` and had not completed (definitely) when the latest-started of those
    higher commits started. Then a committed offset of ``v`` is a legal outcome of concurrent
    commits (a retried or reordered asynchronous commit), not a lost one."""
    higher = [c.t_start for c in commits
              if c.partition == p and c.ok and c.t_end is not None and c.t_end < acked_before
              and c.offset > v]
    if not higher:
        return True
    latest = max(higher)
    return any(w.t_start < seen_by and (not w.ok or w.t_end is None or w.t_end > latest)
               for w in index.get((p, v), []))


def _check_commits(h, r):
    """Committed offsets observed by the poller never decrease from one poll to the next, and
    never fall below a commit acknowledged before the poll was sent. Each drop is reported
    once (not again for every later poll that still shows the lower value)."""
    points = defaultdict(list)
    for c in h.commits:
        if c.ok:
            points[c.partition].append((c.t_end, c.offset))
    acked = defaultdict(lambda: _MaxBefore([]), {p: _MaxBefore(v) for p, v in points.items()})
    index = _commit_index(h)
    prev = {}  # partition -> (offset, t) of the previous poll that had one
    reported_acked = set()  # (partition, acknowledged offset) already reported
    for obs in sorted(h.committed, key=lambda o: o.t_start):
        for p in range(h.partitions):
            v = obs.get(p)
            if v is None or v < 0:
                continue
            last = prev.get(p)
            # A drop below the previous poll: only a commit of v not (definitely) completed
            # when that poll was sent may have landed after it.
            if last is not None and v < last[0] and not any(
                    w.t_start < obs.t_end and (not w.ok or w.t_end is None or w.t_end > last[1])
                    for w in index.get((p, v), [])):
                r.add("commit-backwards",
                      f"partition {p}: committed offset {v} polled at t={obs.t_start - h.t0:.3f} is below "
                      f"{last[0]} polled at t={last[1] - h.t0:.3f}",
                      source="poll", partition=p, offset=v, t=obs.t_start, earlier=last[0],
                      earlier_t=last[1])
            lower = acked[p](obs.t_start)
            if (lower is not None and v < lower and (p, lower) not in reported_acked
                    and not _concurrent_commit(index, h.commits, p, v, obs.t_start, obs.t_end)):
                reported_acked.add((p, lower))
                r.add("commit-backwards",
                      f"partition {p}: committed offset {v} polled at t={obs.t_start - h.t0:.3f} is below "
                      f"offset {lower} whose commit was acknowledged before the poll",
                      source="poll-vs-ack", partition=p, offset=v, t=obs.t_start, acked=lower)
            prev[p] = (v, obs.t_start)


def _check_health(h, r):
    if h.health is None:
        r.add("not-healed", "the cluster's health was never checked")
    elif not h.health.healed:
        r.add("not-healed", f"the cluster did not heal: {h.health.detail}")


# --------------------------------------------------------------------------------------------
# failover times and statistics


def failovers(h):
    """For each fault: seconds from the moment it was in effect (``t_effect``; ``t_start`` if
    not recorded) to the first ack of a record sent at or after that moment, on the partitions
    the faulted broker led (any partition if it led none)."""
    acks = sorted(h.acks, key=lambda a: a.t_ack)
    times = [a.t_ack for a in acks]
    out = []
    for f in sorted(h.faults, key=lambda f: f.t_start):
        led = set(f.led)
        best = None
        t = f.t_effect if f.t_effect is not None else f.t_start
        for a in acks[bisect.bisect_left(times, t):]:
            if a.t_send >= t and (not led or a.partition in led):
                best = a.t_ack - t
                break
        scope = ("partitions " + ",".join(map(str, sorted(led)))) if led else "any partition"
        out.append(Failover(f.kind, f.broker, t, scope, best))
    return out


def _stats(h, final):
    values_final = sum(len(log) for log in final.values())
    acked_values = {a.value for a in h.acks}
    failed_values = {e.value for e in h.produce_errors}
    in_final = set()
    for log in final.values():
        in_final.update(log.values())
    return {
        "sent": len(h.sends),
        "acknowledged": len(h.acks),
        "failed (indeterminate)": len(h.produce_errors),
        "failed but present": len(failed_values & in_final),
        "unacknowledged but present": len(in_final - acked_values - failed_values),
        "final read records": values_final,
        "consumer reads": len(h.reads),
        "distinct values read by consumers": len({rd.value for rd in h.reads}),
        "assignments": len(h.assigns),
        "commits acknowledged": sum(1 for c in h.commits if c.ok),
        "commits failed": sum(1 for c in h.commits if not c.ok),
        "committed-offset polls": len(h.committed),
        "faults": len(h.faults),
    }
