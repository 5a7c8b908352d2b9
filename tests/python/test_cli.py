"""The `raftka` admin CLI against a three-broker cluster (scripts/cluster up 3):
`cluster health` exit codes, `topic produce/consume` round trips of keys and headers checked
against kcat in both directions, and `group describe` lag for offsets committed by
confluent-kafka. The broker-down test runs last: it kills broker 3.
"""

import json

from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from cli import raftka
from helpers import admin, consumer, kcat, produce_all, producer, topic_name, wait_until


def test_version_and_help():
    out = raftka("--version").stdout
    assert out.startswith("raftka ") and out.split()[1][0].isdigit(), out
    help_text = raftka("--help").stdout
    assert "9223372036854775807" not in help_text
    flush = [l for l in help_text.splitlines() if "fsync" in l or "flush to disk before" in l]
    assert any("never" in l for l in help_text[help_text.index("log.flush.interval.messages"):].splitlines()[:4]), flush
    assert "raftka cluster health" in help_text


def test_health_is_zero_on_a_healthy_cluster(cluster3):
    proc = raftka("--bootstrap", cluster3.bootstrap, "cluster", "health", "--exit-when-healthy",
                  "--timeout", "60", "--format", "json", timeout=90)
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["healthy"] is True, last
    assert last["all_nodes"] == [1, 2, 3] and last["nodes_down"] == [], last
    assert last["controller_id"] in (1, 2, 3)
    # one-shot, text
    out = raftka("--bootstrap", cluster3.bootstrap, "cluster", "health").stdout
    assert "Healthy:" in out and "true" in out


def create(cluster3, name, partitions):
    a = admin(cluster3.bootstrap)  # referenced until the futures are done
    for f in a.create_topics([NewTopic(name, partitions, 3)]).values():
        f.result(30)
    cluster3.wait_settled(name)


def test_cli_produce_is_read_by_kcat_with_keys_and_headers(cluster3):
    t = topic_name("cli-rt")
    create(cluster3, t, 3)
    lines = "".join(f"key{i}:value {i}\n" for i in range(20))
    raftka("--bootstrap", cluster3.bootstrap, "topic", "produce", t, "--key-separator", ":",
           "--header", "source=cli", "--header", "trace=abc=1", input=lines)
    out = kcat("-b", cluster3.bootstrap, "-C", "-t", t, "-o", "beginning", "-e", "-q",
               "-f", "%k|%s|%h\n").stdout.decode()
    got = sorted(out.strip().splitlines())
    want = sorted(f"key{i}|value {i}|source=cli,trace=abc=1" for i in range(20))
    assert got == want
    # the key decides the partition, as Kafka's Java client does (murmur2): one key, one partition
    parts = kcat("-b", cluster3.bootstrap, "-C", "-t", t, "-o", "beginning", "-e", "-q",
                 "-f", "%k %p\n").stdout.decode().split("\n")
    by_key = {}
    for line in filter(None, parts):
        k, p = line.split()
        by_key.setdefault(k, set()).add(p)
    assert all(len(ps) == 1 for ps in by_key.values())
    assert len({p for ps in by_key.values() for p in ps}) > 1, "20 keys all in one partition"


def test_cli_consume_reads_kcat_records_with_keys_and_headers(cluster3):
    t = topic_name("kcat-rt")
    create(cluster3, t, 2)
    data = "".join(f"k{i}=v{i}\n" for i in range(10)).encode()
    kcat("-b", cluster3.bootstrap, "-P", "-t", t, "-K", "=", "-H", "h1=x", "-H", "h2=y", input=data)
    kcat("-b", cluster3.bootstrap, "-P", "-t", t, "-p", "0", input=b"no-key\n")
    out = raftka("--bootstrap", cluster3.bootstrap, "topic", "consume", t, "--from-beginning",
                 "--num", "11", "--format", "json", timeout=60).stdout
    recs = [json.loads(l) for l in out.strip().splitlines()]
    assert len(recs) == 11
    keyed = sorted((r["key"], r["value"], tuple((h["key"], h["value"]) for h in r["headers"]))
                   for r in recs if r["key"] is not None)
    assert keyed == sorted((f"k{i}", f"v{i}", (("h1", "x"), ("h2", "y"))) for i in range(10))
    [plain] = [r for r in recs if r["key"] is None]
    assert plain["value"] == "no-key" and plain["headers"] == [] and plain["partition"] == 0
    # offsets are consecutive per partition, from 0
    for p in (0, 1):
        offs = sorted(r["offset"] for r in recs if r["partition"] == p)
        assert offs == list(range(len(offs)))
    # a template and --exit-at-end
    out = raftka("--bootstrap", cluster3.bootstrap, "topic", "consume", t, "-p", "0",
                 "--from-beginning", "--exit-at-end", "-f", "%p:%o %k %v %h\\n").stdout
    assert out.splitlines()[-1].endswith(" no-key "), out


def test_group_describe_shows_lag_of_confluent_commits(cluster3):
    t = topic_name("lag")
    create(cluster3, t, 2)
    produce_all(producer(cluster3.bootstrap), t,
                [{"value": b"a", "partition": 0}] * 10 + [{"value": b"b", "partition": 1}] * 6)
    group = topic_name("g")
    c = consumer(cluster3.bootstrap, **{"group.id": group})
    try:
        c.commit(offsets=[TopicPartition(t, 0, 4), TopicPartition(t, 1, 1)], asynchronous=False)
    finally:
        c.close()

    def described():
        out = raftka("--bootstrap", cluster3.bootstrap, "group", "describe", group,
                     "--format", "json").stdout
        [g] = json.loads(out)
        return g if len(g["partitions"]) == 2 else None

    g = wait_until(described, timeout=20, what="group offsets visible")
    lag = {p["partition"]: (p["current_offset"], p["log_end_offset"], p["lag"]) for p in g["partitions"]}
    assert lag == {0: (4, 10, 6), 1: (1, 6, 5)}, g
    assert g["total_lag"] == 11
    text = raftka("--bootstrap", cluster3.bootstrap, "group", "describe", group).stdout
    assert "TOTAL-LAG    11" in text
    listed = raftka("--bootstrap", cluster3.bootstrap, "group", "list").stdout
    assert group in listed


def test_topic_admin_commands(cluster3):
    t = topic_name("adm")
    out = raftka("--bootstrap", cluster3.bootstrap, "topic", "create", t, "-p", "2", "-r", "3",
                 "-c", "cleanup.policy=compact").stdout
    assert t in out and "OK" in out
    cluster3.wait_settled(t)
    assert t in raftka("--bootstrap", cluster3.bootstrap, "topic", "list").stdout
    d = json.loads(raftka("--bootstrap", cluster3.bootstrap, "topic", "describe", t,
                          "--format", "json").stdout)
    assert [p["partition"] for p in d["partitions"]] == [0, 1]
    assert all(sorted(p["replicas"]) == [1, 2, 3] for p in d["partitions"])
    again = raftka("--bootstrap", cluster3.bootstrap, "topic", "create", t, check=False)
    assert again.returncode == 1 and "TopicAlreadyExists" in again.stdout
    raftka("--bootstrap", cluster3.bootstrap, "topic", "delete", t)
    wait_until(lambda: t not in raftka("--bootstrap", cluster3.bootstrap, "topic", "list").stdout,
               what="topic deleted")
    st = json.loads(raftka("--bootstrap", cluster3.bootstrap, "cluster", "status", "--format",
                           "json").stdout)
    assert [b["node_id"] for b in st["brokers"]] == [1, 2, 3]


def test_health_is_nonzero_with_a_broker_down(cluster3):
    cluster3.kill(3)
    # every bootstrap address: broker 3 does not answer
    proc = raftka("--bootstrap", cluster3.bootstrap, "cluster", "health", "--format", "json", check=False)
    assert proc.returncode == 1, proc.stdout
    h = json.loads(proc.stdout)
    assert h["healthy"] is False and 3 in h["nodes_down"], h
    # through broker 1 only: broker 3 is fenced (missing from Metadata) and its partitions are
    # under-replicated; --exit-when-healthy gives up after --timeout with exit 1
    proc = raftka("--bootstrap", cluster3.address(1), "cluster", "health", "--exit-when-healthy",
                  "--timeout", "4", "--format", "json", check=False, timeout=60)
    assert proc.returncode == 1
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["nodes_down"] == [3] and last["under_replicated_partitions"], last
    # back: --exit-when-healthy waits for the recovery
    cluster3.start(3)
    proc = raftka("--bootstrap", cluster3.bootstrap, "cluster", "health", "--exit-when-healthy",
                  "--timeout", "60", timeout=90)
    assert proc.returncode == 0


def test_chaos_scripts_ask_for_their_python_client():
    """Without confluent-kafka (python3 -S: no site-packages) the chaos tools say what to
    install instead of printing a ModuleNotFoundError traceback."""
    import subprocess
    import sys

    from cli import REPO

    for script, args in (("state", []), ("kill-broker", ["2"]), ("verify", ["--duration", "1"])):
        proc = subprocess.run([sys.executable, "-S", str(REPO / "scripts" / "chaos" / script), *args],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0
        assert "pip install confluent-kafka" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
