"""scripts/chaos/verify: the checker on synthetic histories, and a short real run.

Unit tests (no broker): a clean synthetic history passes; each kind of violation — lost ack,
duplicate, inconsistent offset, backwards read, skipped read, skip at assignment, per-key
reorder, committed offset backwards (poll, poll below an acknowledged commit, resume below an
acknowledged commit), unknown value, unhealed cluster, incomplete final read — is injected
into it and detected, and nothing else is reported. Legitimate re-reads after a new
assignment are not violations. Failover times are computed from the faults and acks.

Integration test: ``scripts/chaos/verify`` against its own three-broker process cluster for
about 40 s of kill and pause faults (and partition, if iptables works here); it must exit 0,
report acknowledged records and at least 3 faults. Needs RAFTKA_BIN (or a built binary).
"""

import copy
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from raftkit import REPO
from raftkit.chaos import checker
from raftkit.chaos.backends import DockerBackend, IptablesPartitioner
from raftkit.docker import ComposeCluster
from raftkit.chaos.history import (
    Ack,
    Assign,
    CommitAttempt,
    CommittedObs,
    Fault,
    FinalRead,
    Health,
    History,
    Read,
    Send,
)

# ---------------------------------------------------------------------------------------------
# synthetic histories


def clean_history():
    """Two partitions; key k0 -> partition 0, k1 -> partition 1; 5 records per key, all acked
    at offsets 0..4; one consumer reads everything in one assignment epoch per partition and
    commits after each record; the poller sees the commits; one kill fault at t=10 of the
    leader of partition 0, after which seq 3 of k0 (sent at 11) is acked at 12.5."""
    h = History(topic="t", partitions=2, seed=1, t0=0.0)
    for seq in range(5):
        for key, p in (("k0", 0), ("k1", 1)):
            v = f"{key}:{seq}:u{seq}{p}"
            t_send = 1.0 + seq if seq < 3 else 11.0 + seq - 3
            t_ack = {3: 12.5, 4: 12.6}.get(seq, t_send + 0.1)
            h.sends.append(Send(v, key, seq, t_send))
            h.acks.append(Ack(v, key, seq, p, seq, t_send, t_ack))
    h.assigns = [Assign("c1", 0, 1, 0.5), Assign("c1", 1, 2, 0.5)]
    t = 20.0
    for seq in range(5):
        for key, p in (("k0", 0), ("k1", 1)):
            v = f"{key}:{seq}:u{seq}{p}"
            h.reads.append(Read("c1", p, p + 1, seq, v, t))
            h.commits.append(CommitAttempt("c1", p, seq + 1, t, t + 0.05, True))
            t += 0.1
    h.committed = [
        CommittedObs(19.0, 19.1, {}),
        CommittedObs(20.3, 20.4, {"0": 2, "1": 1}),
        CommittedObs(30.0, 30.1, {"0": 5, "1": 5}),
    ]
    h.faults = [Fault("kill", 2, 10.0, 14.0, [0], False)]
    h.final = FinalRead(
        records={str(p): [[seq, f"{key}:{seq}:u{seq}{p}"] for seq in range(5)] for key, p in (("k0", 0), ("k1", 1))},
        log_start={"0": 0, "1": 0},
        high_watermark={"0": 5, "1": 5},
    )
    h.health = Health(True, "", 2.0)
    return h


def kinds_found(h):
    r = checker.check(h)
    return {k for k, n in r.counts.items() if n}, r


def test_acks_without_an_offset_take_it_from_the_final_read():
    # librdkafka may report an idempotent delivery as persisted with no offset (None).
    h = clean_history()
    h.acks = [dataclasses.replace(a, offset=None) if a.seq == 2 else a for a in h.acks]
    found, _ = kinds_found(h)
    assert not found
    # ... and one that the final read lacks is still lost.
    h.final.records["0"] = [r for r in h.final.records["0"] if r[0] != 2]
    found, _ = kinds_found(h)
    assert "lost" in found


def test_clean_history_passes():
    found, r = kinds_found(clean_history())
    assert found == set(), r.violations
    assert r.ok
    assert r.stats["acknowledged"] == 10


def test_history_round_trips_through_json(tmp_path):
    h = clean_history()
    h.dump(tmp_path / "h.json")
    h2 = History.load(tmp_path / "h.json")
    assert h2.to_dict() == h.to_dict()
    assert checker.check(h2).ok


def test_lost_ack_detected():
    h = clean_history()
    h.final.records["0"] = [x for x in h.final.records["0"] if x[0] != 2]
    h.final.high_watermark["0"] = 5
    found, r = kinds_found(h)
    assert "lost" in found
    lost = [v for v in r.violations if v.kind == "lost"]
    assert any(v.detail["value"] == "k0:2:u20" for v in lost)


def test_lost_tail_detected():
    """The final log ends before an acked record (truncated below an ack)."""
    h = clean_history()
    h.final.records["1"] = h.final.records["1"][:3]
    h.final.high_watermark["1"] = 3
    found, r = kinds_found(h)
    assert found == {"lost"}, r.violations
    assert r.counts["lost"] == 2 + 2  # two acks, and the same two records read by c1


def test_duplicate_detected():
    h = clean_history()
    h.final.records["0"].append([5, "k0:1:u10"])
    h.final.high_watermark["0"] = 6
    found, r = kinds_found(h)
    assert found == {"duplicate"}, r.violations


def test_inconsistent_offset_detected():
    h = clean_history()
    # a consumer read another record at partition 0 offset 3 than the final read holds there
    h.sends.append(Send("k0:99:zz", "k0", 99, 5.0))
    h.reads.append(Read("c2", 0, 1, 3, "k0:99:zz", 25.0))
    h.assigns.append(Assign("c2", 0, 1, 24.0))
    found, r = kinds_found(h)
    assert "inconsistent-offset" in found, r.violations
    assert {v.detail["offset"] for v in r.violations if v.kind == "inconsistent-offset"} == {3}


def test_ack_at_wrong_offset_detected():
    h = clean_history()
    a = h.acks[2]  # k0:1 acked at partition 0 offset 1
    h.acks[2] = Ack(a.value, a.key, a.seq, a.partition, 3, a.t_send, a.t_ack)
    found, r = kinds_found(h)
    assert "inconsistent-offset" in found, r.violations


def test_backwards_read_detected():
    h = clean_history()
    # c1 reads partition 1 offset 2 again after offset 4, in the same epoch
    h.reads.append(Read("c1", 1, 2, 2, "k1:2:u21", 30.0))
    found, r = kinds_found(h)
    assert found == {"nonmonotonic"}, r.violations
    [v] = [v for v in r.violations if v.kind == "nonmonotonic"]
    assert (v.detail["prev"], v.detail["offset"]) == (4, 2)


def test_skipped_read_detected():
    h = clean_history()
    h.reads = [rd for rd in h.reads if not (rd.partition == 0 and rd.offset == 2)]
    found, r = kinds_found(h)
    assert found == {"skip"}, r.violations
    [v] = [v for v in r.violations if v.kind == "skip"]
    assert (v.detail["prev"], v.detail["offset"]) == (1, 3)


def test_reread_after_new_assignment_is_not_a_violation():
    """After a rebalance a consumer legitimately re-reads from the committed offset."""
    h = clean_history()
    # commits of partition 0 at offsets > 2 were not acknowledged
    for c in h.commits:
        if c.partition == 0 and c.offset > 2:
            c.ok = False
    h.committed = [CommittedObs(19.0, 19.1, {})]
    h.assigns.append(Assign("c2", 0, 1, 40.0))
    for o in range(2, 5):
        h.reads.append(Read("c2", 0, 1, o, f"k0:{o}:u{o}0", 41.0 + o))
    found, r = kinds_found(h)
    assert found == set(), r.violations


def test_skip_at_assignment_detected():
    h = clean_history()
    h.assigns.append(Assign("c2", 0, 1, 40.0))
    # highest commit attempted for partition 0 is 5; a fresh assignment starting at 7 skipped
    h.final.records["0"] += [[5, "k0:5:a"], [6, "k0:6:b"], [7, "k0:7:c"]]
    h.final.high_watermark["0"] = 8
    for o in range(5, 8):
        h.sends.append(Send(h.final.records["0"][o][1], "k0", o, 35.0))
    h.reads.append(Read("c2", 0, 1, 7, "k0:7:c", 41.0))
    found, r = kinds_found(h)
    assert found == {"skip-at-assignment"}, r.violations


def test_per_key_reorder_detected():
    h = clean_history()
    # k0 seq 3 and seq 4 swapped in the log (and acked that way)
    recs = h.final.records["0"]
    recs[3][1], recs[4][1] = recs[4][1], recs[3][1]
    for a in h.acks:
        if a.key == "k0" and a.seq in (3, 4):
            a.offset = 7 - a.offset
    for rd in h.reads:
        if rd.partition == 0 and rd.offset in (3, 4):
            rd.value = recs[rd.offset][1]
    found, r = kinds_found(h)
    assert found == {"order"}, r.violations


def test_committed_offset_backwards_detected():
    h = clean_history()
    h.committed.append(CommittedObs(31.0, 31.1, {"0": 3, "1": 5}))
    found, r = kinds_found(h)
    assert found == {"commit-backwards"}, r.violations
    assert {v.detail["source"] for v in r.violations} == {"poll", "poll-vs-ack"}


def test_committed_offset_below_acknowledged_commit_detected():
    """The first poll after an acknowledged commit already shows less."""
    h = clean_history()
    h.committed = [CommittedObs(30.0, 30.1, {"0": 5, "1": 2})]
    found, r = kinds_found(h)
    assert found == {"commit-backwards"}, r.violations
    [v] = r.violations
    assert v.detail["source"] == "poll-vs-ack" and v.detail["partition"] == 1


def test_resume_below_acknowledged_commit_detected():
    h = clean_history()
    h.assigns.append(Assign("c2", 1, 1, 40.0))
    h.reads.append(Read("c2", 1, 1, 1, "k1:1:u11", 41.0))
    found, r = kinds_found(h)
    assert found == {"commit-backwards"}, r.violations
    assert r.violations[0].detail["source"] == "resume"


def test_unknown_value_detected():
    h = clean_history()
    h.reads[0].value = "garbage"
    found, r = kinds_found(h)
    assert "unknown-value" in found


def test_no_final_read_reports_only_that():
    """An interrupted run has no final read: that is reported, not every ack as lost."""
    h = clean_history()
    h.final = None
    found, _ = kinds_found(h)
    assert found == {"incomplete-final-read"}


def test_not_healed_detected():
    h = clean_history()
    h.health = Health(False, "broker 2 is not running", 120.0)
    found, _ = kinds_found(h)
    assert found == {"not-healed"}


def test_incomplete_final_read_detected():
    h = clean_history()
    h.final.high_watermark["0"] = 7
    found, _ = kinds_found(h)
    assert "incomplete-final-read" in found


def test_failover_time():
    h = clean_history()
    r = checker.check(h)
    [f] = r.failovers
    # fault at 10.0 on the leader of partition 0; the first ack on partition 0 of a record
    # sent after it: k0 seq 3, sent 11.0, acked 12.5
    assert f.scope == "partitions 0"
    assert f.seconds == pytest.approx(2.5)
    # a fault on a broker that led nothing counts the next ack anywhere (k1 seq 3 acked 12.5)
    h.faults = [Fault("pause", 3, 10.0, 12.0, [], False)]
    [f] = checker.check(h).failovers
    assert f.scope == "any partition" and f.seconds == pytest.approx(2.5)
    # no ack after the fault
    h.faults = [Fault("pause", 3, 100.0, 102.0, [0], False)]
    [f] = checker.check(h).failovers
    assert f.seconds is None


COVERED = {
    "lost": test_lost_ack_detected,
    "duplicate": test_duplicate_detected,
    "inconsistent-offset": test_inconsistent_offset_detected,
    "nonmonotonic": test_backwards_read_detected,
    "skip": test_skipped_read_detected,
    "skip-at-assignment": test_skip_at_assignment_detected,
    "order": test_per_key_reorder_detected,
    "commit-backwards": test_committed_offset_backwards_detected,
    "unknown-value": test_unknown_value_detected,
    "not-healed": test_not_healed_detected,
    "incomplete-final-read": test_incomplete_final_read_detected,
}


def test_every_violation_kind_has_a_test():
    assert set(COVERED) == set(checker.KINDS)


# ---------------------------------------------------------------------------------------------
# the docker backend's commands (no docker needed)


class FakeCompose(ComposeCluster):
    """ComposeCluster with `docker` answered from a script instead of the engine."""

    def __init__(self, *a, **kw):
        self.calls = []
        self.states = {"cid1": "running", "cid2": "running", "cid3": "running"}
        super().__init__(*a, **kw)

    def docker(self, *args, check=True, timeout=120):
        self.calls.append(args)
        out = ""
        if args[:2] == ("ps", "-aq"):
            out = "cid" + args[-1].rsplit("broker", 1)[1] + "\n"
        elif args[:2] == ("network", "ls"):
            out = "raftka_raftka\n"
        elif args[0] == "inspect" and "{{json .NetworkSettings.Networks}}" in args:
            out = '{"raftka_raftka": {"IPAddress": "172.30.0.3", "Aliases": ["broker2", "cid2"]}}'
        elif args[0] == "inspect":
            st = self.states[args[-1]]
            out = {"running": "true false", "paused": "true true", "stopped": "false false"}[st]
        elif args[0] == "kill":
            self.states[args[1]] = "stopped"
        elif args[0] == "start":
            self.states[args[1]] = "running"
        elif args[0] == "pause":
            self.states[args[1]] = "paused"
        elif args[0] == "unpause":
            self.states[args[1]] = "running"
        return subprocess.CompletedProcess(args, 0, out, "")

    def wait_answers(self, b, timeout=120):
        pass


class FakeDocker(DockerBackend):
    """DockerBackend over FakeCompose."""

    compose_class = FakeCompose

    def __init__(self, **kw):
        super().__init__("127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094", log=lambda m: None, **kw)
        self.calls = self.compose.calls
        self.states = self.compose.states


def test_docker_backend_commands():
    d = FakeDocker()
    assert d.containers == ["cid1", "cid2", "cid3"] and d.network == "raftka_raftka"
    assert d.address(2) == "127.0.0.1:19093"
    d.calls.clear()
    d.inject("kill", 1)
    d.heal("kill", 1)
    d.inject("pause", 3)
    d.heal("pause", 3)
    d.inject("partition", 2)
    d.heal("partition", 2)
    cmds = [c for c in d.calls if c[0] != "inspect"]
    assert cmds == [
        ("kill", "cid1"),
        ("start", "cid1"),
        ("pause", "cid3"),
        ("unpause", "cid3"),
        ("network", "disconnect", "raftka_raftka", "cid2"),
        ("network", "connect", "--alias", "broker2", "--alias", "cid2", "--ip", "172.30.0.3", "raftka_raftka", "cid2"),
    ]
    assert all(d.states[c] == "running" for c in d.states)
    # explicit containers and network skip the label lookups
    e = FakeDocker(containers=["a", "b", "c"], network="net")
    assert not [c for c in e.calls if c[0] in ("ps", "network")]


# ---------------------------------------------------------------------------------------------
# a real run


def _binary():
    b = os.environ.get("RAFTKA_BIN")
    if b:
        return b
    for cand in ("target/release/raftka", "target/debug/raftka"):
        if (REPO / cand).exists():
            return str(REPO / cand)
    return None


@pytest.mark.skipif(_binary() is None, reason="no broker binary (set RAFTKA_BIN)")
def test_verify_run_against_process_cluster(tmp_path):
    faults = "kill,pause"
    if IptablesPartitioner("RKV-probe").unusable_reason() is None:
        faults += ",partition"
    env = dict(os.environ)
    env["RAFTKA_BIN"] = _binary()
    cmd = [sys.executable, str(REPO / "scripts" / "chaos" / "verify"), "--duration", "40", "--faults", faults,
           "--seed", "424242", "--interval", "2,5", "--hold", "2,4", "--rate", "100", "--out", str(tmp_path)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    out = p.stdout
    print(out)
    counts = {k: int(n) for k, n in re.findall(r"^  ([a-z-]+)\s+(\d+)$", out, re.M)}
    assert set(counts) == set(checker.KINDS), f"no checks table in the summary\n{out}\n{p.stderr[-6000:]}"
    acked = int(re.search(r"acknowledged (\d+)", out).group(1))
    nfaults = int(re.search(r"^faults: (\d+)", out, re.M).group(1))
    assert acked > 0, out
    assert nfaults >= 3, out
    assert (tmp_path / "history.json").exists()
    found = {k: n for k, n in counts.items() if n}
    assert not found, f"verify found violations {found}\n{out}\n{p.stderr[-6000:]}"
    assert p.returncode == 0 and "RESULT: OK" in out, f"verify exited {p.returncode}\n{out}\n{p.stderr[-6000:]}"


def test_each_committed_offset_drop_reported_once():
    h = clean_history()
    h.committed += [CommittedObs(31.0 + i, 31.1 + i, {"0": 5, "1": 4}) for i in range(5)]
    found, r = kinds_found(h)
    assert found == {"commit-backwards"}
    # one drop 5 -> 4 (poll) and one poll below the acknowledged 5 (poll-vs-ack), not 5 + 5
    assert r.counts["commit-backwards"] == 2, r.violations


def test_check_only_mode(tmp_path):
    h = clean_history()
    h.dump(tmp_path / "h.json")
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "chaos" / "verify"), "--check", str(tmp_path / "h.json")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "RESULT: OK" in p.stdout, p.stdout + p.stderr
    bad = copy.deepcopy(h)
    bad.final.records["0"] = bad.final.records["0"][:-1]
    bad.final.high_watermark["0"] = 4
    bad.dump(tmp_path / "bad.json")
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "chaos" / "verify"), "--check", str(tmp_path / "bad.json")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "RESULT: FAIL" in p.stdout and "[lost]" in p.stdout, p.stdout + p.stderr



def test_concurrent_commits_landing_out_of_order_are_not_a_violation():
    """Asynchronous commits overlap, and librdkafka retries a failed one: a commit of 4 sent at
    25.0 and answered only at 25.6 (after a retry) lands after a commit of 5 sent at 25.3 and
    answered at 25.35. A poll at 26 showing 4 is a legal outcome of the two concurrent commits;
    the same 4 from a commit that was answered before the commit of 5 was sent is not."""
    h = clean_history()
    h.commits.append(CommitAttempt("c1", 0, 4, 25.0, 25.6, True))
    h.commits.append(CommitAttempt("c1", 0, 5, 25.3, 25.35, True))
    h.committed.append(CommittedObs(26.0, 26.1, {"0": 4, "1": 5}))
    found, r = kinds_found(h)
    assert found == set(), r.violations
    # Sequential instead: the commit of 4 was answered before the commit of 5 was sent.
    h = clean_history()
    h.commits.append(CommitAttempt("c1", 0, 4, 25.0, 25.1, True))
    h.commits.append(CommitAttempt("c1", 0, 5, 25.3, 25.35, True))
    h.committed.append(CommittedObs(26.0, 26.1, {"0": 4, "1": 5}))
    found, r = kinds_found(h)
    assert found == {"commit-backwards"}, r.violations
