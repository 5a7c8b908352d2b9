"""The history of one verify run: every event the checker looks at, as plain data.

Times are seconds on one monotonic clock (``time.monotonic()`` of the verify process), so
events of different threads can be compared; ``History.wall_t0`` maps them to wall time.
Offsets are Kafka offsets, partitions the test topic's partition numbers.

A record's identity is its value ``"<key>:<seq>:<uuid>"``: the producer never sends the same
value twice, so a value seen at two offsets is a duplicate written by the system.

Everything here is a dataclass of JSON types, so a history is saved with ``History.dump`` and
re-checked later with ``scripts/chaos/verify --check HISTORY.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Send:
    """The producer handed a record to the client library (before any answer)."""

    value: str
    key: str
    seq: int
    t: float


@dataclass
class Ack:
    """The broker acknowledged a record (acks=all): it is at ``partition``/``offset``."""

    value: str
    key: str
    seq: int
    partition: int
    offset: int
    t_send: float
    t_ack: float


@dataclass
class ProduceError:
    """A record's delivery failed. Indeterminate: it may or may not have been written."""

    value: str
    key: str
    seq: int
    t: float
    error: str


@dataclass
class Assign:
    """A consumer was assigned a partition. ``epoch`` numbers the assignments of one consumer
    (unique per consumer); every read carries the epoch it was made in."""

    consumer: str
    partition: int
    epoch: int
    t: float


@dataclass
class Revoke:
    """A consumer lost a partition (revoked or lost)."""

    consumer: str
    partition: int
    epoch: int
    t: float


@dataclass
class Read:
    """A consumer received a record. Reads of one consumer are stored in the order it
    received them."""

    consumer: str
    partition: int
    epoch: int
    offset: int
    value: str
    t: float


@dataclass
class CommitAttempt:
    """A consumer's (asynchronous) commit of ``offset`` (the next offset to read) for a
    partition, started at ``t_start``, answered at ``t_end`` (None: never answered);
    ``ok`` when the broker acknowledged it."""

    consumer: str
    partition: int
    offset: int
    t_start: float
    t_end: float | None
    ok: bool
    error: str = ""


@dataclass
class CommittedObs:
    """One poll of the group's committed offsets through the admin client (OffsetFetch),
    sent at ``t_start``, answered at ``t_end``. ``offsets`` holds the partitions that have a
    committed offset (JSON keys are strings; use ``CommittedObs.get``)."""

    t_start: float
    t_end: float
    offsets: dict

    def get(self, partition):
        v = self.offsets.get(str(partition), self.offsets.get(partition))
        return None if v is None else int(v)


@dataclass
class Fault:
    """One fault: ``kind`` (kill, pause, partition), the broker it hit, when the fault command
    was issued (``t_start``), when it had returned so the fault was in effect (``t_effect``;
    None if it failed), when it was healed (None if never), and the broker's roles just
    before: ``led`` = the test topic's partitions it led, ``controller`` = it was the quorum
    leader."""

    kind: str
    broker: int
    t_start: float
    t_heal: float | None
    led: list = field(default_factory=list)
    controller: bool = False
    note: str = ""
    t_effect: float | None = None


@dataclass
class FinalRead:
    """The catch-up read after the faults healed and the producer stopped: every partition
    read from the log start to its high watermark by a fresh consumer (assign, no group).
    ``records[p]`` is a list of [offset, value]; ``complete`` is False if some partition could
    not be read up to its high watermark."""

    records: dict = field(default_factory=dict)
    log_start: dict = field(default_factory=dict)
    high_watermark: dict = field(default_factory=dict)
    complete: bool = True
    note: str = ""

    def partition_records(self, partition):
        return self.records.get(str(partition), self.records.get(partition, []))


@dataclass
class Health:
    """Whether the cluster healed at the end: every broker back, every ISR full."""

    healed: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass
class History:
    topic: str = ""
    partitions: int = 0
    seed: int = 0
    wall_t0: float = 0.0  # time.time() at monotonic t0
    t0: float = 0.0
    config: dict = field(default_factory=dict)
    sends: list = field(default_factory=list)
    acks: list = field(default_factory=list)
    produce_errors: list = field(default_factory=list)
    assigns: list = field(default_factory=list)
    revokes: list = field(default_factory=list)
    reads: list = field(default_factory=list)
    commits: list = field(default_factory=list)
    committed: list = field(default_factory=list)
    faults: list = field(default_factory=list)
    final: FinalRead | None = None
    health: Health | None = None

    _TYPES = {
        "sends": Send,
        "acks": Ack,
        "produce_errors": ProduceError,
        "assigns": Assign,
        "revokes": Revoke,
        "reads": Read,
        "commits": CommitAttempt,
        "committed": CommittedObs,
        "faults": Fault,
    }

    def to_dict(self):
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        return d

    @classmethod
    def from_dict(cls, d):
        h = cls()
        for k, v in d.items():
            if k in cls._TYPES:
                setattr(h, k, [cls._TYPES[k](**x) for x in v])
            elif k == "final":
                h.final = None if v is None else FinalRead(**v)
            elif k == "health":
                h.health = None if v is None else Health(**v)
            elif not k.startswith("_"):
                setattr(h, k, v)
        return h

    def dump(self, path):
        Path(path).write_text(json.dumps(self.to_dict(), separators=(",", ":")))

    @classmethod
    def load(cls, path):
        return cls.from_dict(json.loads(Path(path).read_text()))
