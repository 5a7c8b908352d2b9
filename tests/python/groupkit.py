"""Consumer-group test kit: group members as separate processes (tests/python/group_member.py)
so a member can die without leaving (SIGKILL), and waits on the group's shape as both the
members and the coordinator (DescribeGroups) see it."""

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import ConsumerGroupState

from helpers import WAIT, admin, wait_until

MEMBER_SCRIPT = Path(__file__).resolve().parent / "group_member.py"


class Member:
    """A consumer-group member process; records what it reports."""

    def __init__(self, bootstrap, group, topic, client="confluent", assignor="range",
                 session_timeout_ms=6000, commit=False, instance_id=None, name="member"):
        self.name = name
        cfg = {
            "client": client,
            "bootstrap": bootstrap,
            "group": group,
            "topic": topic,
            "assignor": assignor,
            "session_timeout_ms": session_timeout_ms,
            "commit": commit,
            "instance_id": instance_id,
            "client_id": name,
        }
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, str(MEMBER_SCRIPT), json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._lock = threading.Lock()
        self._assigned = None
        self._history = []
        self._msgs = []
        self._errors = []
        self._closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                if ev["ev"] == "assigned":
                    self._assigned = frozenset(ev["partitions"])
                    self._history.append((time.monotonic(), self._assigned))
                elif ev["ev"] == "msg":
                    self._msgs.append((ev["p"], ev["o"], ev["v"]))
                elif ev["ev"] == "error":
                    self._errors.append(ev["msg"])
                elif ev["ev"] == "closed":
                    self._closed = True

    @property
    def assigned(self):
        """The member's current partitions (None before its first report)."""
        with self._lock:
            return self._assigned

    @property
    def history(self):
        with self._lock:
            return list(self._history)

    @property
    def msgs(self):
        with self._lock:
            return list(self._msgs)

    @property
    def errors(self):
        with self._lock:
            return list(self._errors)

    def alive(self):
        return self.proc.poll() is None

    def close(self, timeout=WAIT):
        """Closes the consumer cleanly (it sends LeaveGroup) and waits for the process."""
        if self.alive():
            try:
                self.proc.stdin.write("close\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass
            self.proc.wait(timeout=timeout)
        with self._lock:
            assert self._closed, f"{self.name} did not close cleanly: {self.stderr()}"

    def kill(self):
        """Dies without leaving the group."""
        self.proc.kill()
        self.proc.wait(timeout=WAIT)

    def stderr(self):
        self._stderr.seek(0)
        return self._stderr.read()[-3000:]

    def cleanup(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=WAIT)

    def __repr__(self):
        return f"<{self.name} assigned={self.assigned} msgs={len(self.msgs)} errors={self.errors[:3]}>"


def describe(bootstrap, group):
    a = admin(bootstrap)  # must outlive the future: a destroyed client never completes it
    return a.describe_consumer_groups([group])[group].result(timeout=WAIT)


def wait_balanced(bootstrap, group, members, partitions, timeout=30.0):
    """Waits until the members' own reports and the coordinator agree on one Stable
    generation in which every partition has exactly one owner among `members`, and as many
    members as there are partitions (or all of them) own some. Returns {member: partitions}."""
    everything = set(range(partitions))

    def balanced():
        seen = [m.assigned for m in members]
        if any(s is None for s in seen):
            return None
        union = set().union(*seen)
        if union != everything or sum(len(s) for s in seen) != partitions:
            return None
        if sum(1 for s in seen if s) != min(len(members), partitions):
            return None
        d = describe(bootstrap, group)
        if d.state != ConsumerGroupState.STABLE or len(d.members) != len(members):
            return None
        owned = sorted(
            sorted(tp.partition for tp in m.assignment.topic_partitions) for m in d.members
        )
        if owned != sorted(sorted(s) for s in seen):
            return None
        return {m: s for m, s in zip(members, seen)}

    return wait_until(balanced, timeout=timeout, interval=0.1,
                      what=f"group {group} balanced over {partitions} partitions: {members}")
