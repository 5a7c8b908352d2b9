"""scripts/chaos/verify --workload txn: the transaction checker on synthetic runs, and a short
real run.

Unit tests (no broker): a clean run passes; each anomaly — a read of an aborted transaction
(by the reader or in the final read), a lost committed record, a partial transaction, a read of
a record that was never committed, a source record transformed twice, committed offsets that do
not match what was transformed, a record no transaction wrote — is injected and detected, and
nothing else is reported.

Integration test: the txn workload against its own three-broker process cluster for about 30 s
of kill and pause faults; it must exit 0 with committed transactions and at least 2 faults.
"""

import copy
import os
import re
import subprocess
import sys

from raftkit import REPO
from raftkit.chaos import txn


def clean():
    """Two source partitions of 3 records; transactions 1 (committed: p0 0-1, p1 0), 2
    (aborted: p0 2), 3 (committed: p0 2, p1 1-2). Offsets committed: p0 3, p1 3."""
    txns = [
        {"no": 1, "values": ["t1|0:0", "t1|0:1", "t1|1:0"], "outcome": "committed", "deliberate": False},
        {"no": 2, "values": ["t2|0:2"], "outcome": "aborted", "deliberate": True},
        {"no": 3, "values": ["t3|0:2", "t3|1:1", "t3|1:2"], "outcome": "committed", "deliberate": False},
    ]
    final = {
        0: [(0, "t1|0:0"), (1, "t1|0:1"), (5, "t3|0:2")],
        1: [(0, "t1|1:0"), (3, "t3|1:1"), (4, "t3|1:2")],
    }
    reader = ["t1|0:0", "t1|1:0", "t3|1:1"]
    return txns, reader, final, {0: 3, 1: 3}, {0: 3, 1: 3}


def kinds(*run):
    return sorted({k for k, _ in txn.check(*run)})


def test_clean_run_passes():
    assert txn.check(*clean()) == []


def test_aborted_read_in_the_final_read_detected():
    txns, reader, final, src, commits = clean()
    final[0].append((6, "t2|0:2"))
    # It is also a second transformation of source record 0:2.
    assert kinds(txns, reader, final, src, commits) == ["aborted-read", "duplicate"]


def test_aborted_read_by_the_reader_detected():
    txns, reader, final, src, commits = clean()
    reader.append("t2|0:2")
    assert kinds(txns, reader, final, src, commits) == ["aborted-read", "uncommitted-read"]


def test_lost_commit_detected():
    txns, reader, final, src, commits = clean()
    final[1] = [r for r in final[1] if r[1] != "t3|1:2"]
    found = kinds(txns, reader, final, src, commits)
    assert "lost-commit" in found and set(found) <= {"lost-commit", "offsets"}


def test_partial_transaction_of_unknown_outcome_detected():
    txns, reader, final, src, commits = clean()
    txns[2]["outcome"] = "unknown"
    final[1] = [r for r in final[1] if r[1] != "t3|1:2"]
    found = kinds(txns, reader, final, src, commits)
    assert "atomicity" in found and set(found) <= {"atomicity", "offsets"}


def test_unknown_outcome_wholly_absent_is_fine_with_matching_offsets():
    txns, reader, final, src, commits = clean()
    txns[2]["outcome"] = "unknown"
    final = {0: final[0][:2], 1: final[1][:1]}
    reader = [v for v in reader if not v.startswith("t3")]
    assert txn.check(txns, reader, final, src, {0: 2, 1: 1}) == []


def test_uncommitted_read_detected():
    txns, reader, final, src, commits = clean()
    txns.append({"no": 4, "values": ["t4|1:2"], "outcome": "unknown", "deliberate": False})
    reader.append("t4|1:2")
    assert kinds(txns, reader, final, src, commits) == ["uncommitted-read"]


def test_duplicate_transformation_detected():
    txns, reader, final, src, commits = clean()
    txns.append({"no": 4, "values": ["t4|1:2"], "outcome": "committed", "deliberate": False})
    final[1].append((6, "t4|1:2"))
    assert kinds(txns, reader, final, src, commits) == ["duplicate"]


def test_offsets_not_moving_with_the_transactions_detected():
    txns, reader, final, src, commits = clean()
    assert kinds(txns, reader, final, src, {0: 2, 1: 3}) == ["offsets"]
    assert kinds(txns, reader, final, src, {0: 3, 1: 4}) == ["offsets"]


def test_unknown_record_detected():
    txns, reader, final, src, commits = clean()
    final[0].append((9, "t99|0:9"))
    assert "unknown-record" in kinds(txns, reader, final, src, commits)


def test_check_does_not_modify_its_input():
    run = clean()
    before = copy.deepcopy(run)
    txn.check(*run)
    assert run == before


def test_txn_workload_clients_use_the_secured_client_settings(tmp_path, monkeypatch):
    """On a secured cluster (RAFTKA_CLIENT_CONFIG set, as scripts/chaos/verify does) the txn
    workload's transactional producer and consumers connect with its SASL_SSL settings, like
    the other workloads' clients."""
    import confluent_kafka

    props = tmp_path / "client.properties"
    props.write_text("security.protocol=SASL_SSL\nsasl.mechanisms=SCRAM-SHA-512\n"
                     "sasl.username=chaos\nsasl.password=secret\n")
    monkeypatch.setenv("RAFTKA_CLIENT_CONFIG", str(props))
    seen = []

    class Client:
        def __init__(self, conf):
            seen.append(conf)

        def init_transactions(self, timeout):
            pass

        def subscribe(self, topics):
            pass

        def committed(self, tps, timeout):
            return []

        def close(self):
            pass

    monkeypatch.setattr(confluent_kafka, "Producer", Client)
    monkeypatch.setattr(confluent_kafka, "Consumer", Client)
    t = txn.Transformer(None, "127.0.0.1:1", "src", "out", "g", "tid", 1, None)
    t._producer()
    t._consumer()
    txn.committed("127.0.0.1:1", "g", "src", 0)
    assert len(seen) == 3
    for conf in seen:
        assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.username"] == "chaos", conf
        assert conf["bootstrap.servers"] == "127.0.0.1:1"


def test_txn_workload_against_process_cluster(tmp_path):
    env = dict(os.environ)
    env.setdefault("RAFTKA_BIN", str(REPO / "target" / "debug" / "raftka"))
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "chaos" / "verify"), "--workload", "txn", "--duration", "30",
         "--faults", "kill,pause", "--interval", "2,4", "--hold", "2,4", "--rate", "100",
         "--out", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{proc.stderr[-4000:]}"
    assert "RESULT: OK" in out
    committed = int(re.search(r"committed (\d+)", out).group(1))
    faults = int(re.search(r"faults: (\d+)", out).group(1))
    assert committed > 0 and faults >= 2, out
