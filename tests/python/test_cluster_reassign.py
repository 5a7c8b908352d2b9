"""Partition reassignment (KIP-455) and broker decommission on a four-broker cluster.

kafka-python's KafkaAdminClient (alter/list_partition_reassignments, describe_log_dirs) and
confluent-kafka (topics with explicit replica assignments, an idempotent acks=all producer,
consumers, describe_cluster) drive it; UnregisterBroker, which neither client has, is sent as a
raw request. Brokers 1-3 are the metadata-quorum voters, broker 4 a learner
(RAFTKA_CLUSTER_VOTERS=3), so stopping or decommissioning broker 4 never touches the quorum.

- Moves under load: an RF=1 partition from broker 1 to broker 2, and an RF=3 partition from
  [1, 2, 3] to [4, 3, 2] (its leader and preferred leader leave), while an idempotent acks=all
  producer writes to both. Afterwards every acknowledged record reads back exactly once, in
  order, at its acknowledged offset; no reassignment is listed; broker 1 no longer holds either
  partition (DescribeLogDirs).
- A move to a stopped (fenced) broker stays in progress: every broker's Metadata shows the
  union, List shows adding/removing; cancelling reverts it; a new target replaces a stuck move.
- Invalid reassignments get Kafka's errors.
- A follower replication throttle makes a move take at least about size / rate.
- `raftka admin decommission --broker 4` moves every replica off broker 4 and unregisters it:
  Metadata and DescribeCluster no longer list it and every partition is fully replicated.
"""

import socket
import struct
import time

import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from kafka import KafkaAdminClient, TopicPartition
from kafka.errors import (
    InvalidReplicationAssignmentError,
    NoReassignmentInProgressError,
    UnknownTopicOrPartitionError,
)

from cli import raftka
from conftest import CLUSTER3_ENV, Cluster, free_port_base
from helpers import admin, consume_to_end, produce_all, producer, topic_name, wait_until
from test_cluster_failover import IdempotentLoad, verify_read_back

BROKERS = [1, 2, 3, 4]


@pytest.fixture(scope="module")
def cluster4(request, tmp_path_factory):
    env = {**CLUSTER3_ENV, "RAFTKA_CLUSTER_VOTERS": "3"}
    c = Cluster(tmp_path_factory.mktemp("cluster4-reassign"), free_port_base(4), env)
    request.module._raftka_cluster = c
    c.up(4)
    try:
        c.wait_brokers(expected=BROKERS)
        yield c
    finally:
        c.down()


def kadmin(c, via=1):
    return KafkaAdminClient(bootstrap_servers=c.address(via), request_timeout_ms=30000)


def create(c, assignment, config=None):
    """A topic with an explicit replica assignment (partition → broker list)."""
    name = topic_name("ra")
    a = admin(c.address(1))
    a.create_topics([NewTopic(name, num_partitions=len(assignment), replica_assignment=assignment,
                             config=config or {})],
                    operation_timeout=15)[name].result(timeout=30)
    c.wait_settled(name, via=c.running(), timeout=60)
    return name


def ongoing(c):
    k = kadmin(c)
    try:
        return k.list_partition_reassignments()
    finally:
        k.close()


def reassign(c, moves):
    k = kadmin(c)
    try:
        return k.alter_partition_reassignments(moves)
    finally:
        k.close()


def log_dir_partitions(c, broker):
    """(topic, partition) pairs broker's DescribeLogDirs lists."""
    k = kadmin(c)
    try:
        [b] = k.describe_log_dirs(brokers=[broker])
    finally:
        k.close()
    return {(t["name"], p["partition_index"])
            for d in b["log_dirs"] for t in d["topics"] for p in t["partitions"]}


def unregister_broker(c, via, broker_id):
    """UnregisterBroker v0 (flexible) as a raw request: (error_code, error_message)."""
    client_id = b"raftka-tests-raw"
    # Header v2: api key, version, correlation id, client id (nullable string), no tags.
    header = struct.pack(">hhih", 64, 0, 99, len(client_id)) + client_id + b"\x00"
    body = struct.pack(">i", broker_id) + b"\x00"
    frame = header + body
    with socket.create_connection(("127.0.0.1", c.port(via)), timeout=30) as s:
        s.settimeout(30)
        s.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", _recv(s, 4))[0]
        resp = _recv(s, size)
    # Response header v1: correlation id, tags; body: throttle, error code, message, tags.
    corr, = struct.unpack(">i", resp[:4])
    assert corr == 99
    pos = 4 + 1
    _throttle, code = struct.unpack(">ih", resp[pos:pos + 6])
    pos += 6
    n = resp[pos]  # compact nullable string: length + 1 (messages here are < 127 bytes or null)
    msg = None
    if n & 0x80:
        # A two-byte uvarint length.
        n = (n & 0x7F) | (resp[pos + 1] << 7)
        pos += 1
    if n > 0:
        msg = resp[pos + 1:pos + n].decode()
    return code, msg


def _recv(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def test_moves_under_idempotent_load_lose_and_duplicate_nothing(cluster4):
    c = cluster4
    rf1 = create(c, [[1]])
    rf3 = create(c, [[1, 2, 3]], {"min.insync.replicas": "2"})
    load1 = IdempotentLoad(c.address(2), rf1, partitions=1).start()
    load3 = IdempotentLoad(c.address(2), rf3, partitions=1).start()
    try:
        wait_until(lambda: load1.acked_count(0) > 50 and load3.acked_count(0) > 50,
                   timeout=60, what="acknowledged writes before the moves")
        before = c.partitions(1, rf3)[0]
        result = reassign(c, {TopicPartition(rf1, 0): [2], TopicPartition(rf3, 0): [4, 3, 2]})
        assert result == {TopicPartition(rf1, 0): None, TopicPartition(rf3, 0): None}, result
        # The moves complete: the target replicas, all in the ISR, the first one leading
        # (broker 1 left both partitions, so leadership had to move).
        after1 = c.wait_settled(rf1, via=BROKERS, timeout=90,
                                check=lambda v: v[0][2] == (2,))
        after3 = c.wait_settled(rf3, via=BROKERS, timeout=90,
                                check=lambda v: v[0][2] == (4, 3, 2))
        assert after1[0][0] == 2 and after3[0][0] == 4
        assert after3[0][1] > before[1], "the leader epoch did not grow when leadership moved"
        wait_until(lambda: not ongoing(c), timeout=60, what="no reassignment listed")
        # Writes keep being acknowledged by the new leaders.
        marks = (load1.acked_count(0), load3.acked_count(0))
        wait_until(lambda: load1.acked_count(0) > marks[0] + 50
                   and load3.acked_count(0) > marks[1] + 50,
                   timeout=60, what="acknowledged writes after the moves")
    finally:
        load1.stop()
        load3.stop()
    for load in (load1, load3):
        summary = verify_read_back(c.address(2), load)
        assert all(acked > 100 for acked, _read in summary.values()), summary
        assert not load.failed, load.failed[:5]
    # The removed replicas' data is gone from broker 1.
    wait_until(lambda: not ({(rf1, 0), (rf3, 0)} & log_dir_partitions(c, 1)), timeout=60,
               what="broker 1 to delete the moved replicas")
    assert (rf1, 0) in log_dir_partitions(c, 2)
    assert (rf3, 0) in log_dir_partitions(c, 4)


def test_a_move_to_a_stopped_broker_shows_the_union_and_cancel_reverts(cluster4):
    c = cluster4
    name = create(c, [[1, 2]])
    c.stop(4)
    try:
        c.wait_brokers(expected=[1, 2, 3], via=[1, 2, 3], timeout=60)
        assert reassign(c, {TopicPartition(name, 0): [4, 2]}) == {TopicPartition(name, 0): None}
        listed = wait_until(lambda: ongoing(c), timeout=30, what="the reassignment listed")
        assert listed == {TopicPartition(name, 0): {
            "replicas": [4, 2, 1], "adding_replicas": [4], "removing_replicas": [1]}}, listed
        # The CLI lists it too (broker 1 answers from its applied image, which may lag the
        # controller's by a moment).
        def cli_lists():
            out = raftka("--bootstrap", c.address(1), "admin", "reassignments").stdout
            return f"{name}/0" in out and "adding [4]" in out and "removing [1]" in out and out

        wait_until(cli_lists, timeout=30, what="the CLI to list the move")
        # Every broker's Metadata shows the union; 4 is not in the ISR, 1 still leads.
        view = c.wait_settled(name, via=[1, 2, 3], full_isr=False, preferred=False,
                              check=lambda v: v[0][2] == (4, 2, 1))
        assert view[0][0] == 1 and view[0][3] == (1, 2), view
        # Cancel: back to the replicas before the move.
        assert reassign(c, {TopicPartition(name, 0): None}) == {TopicPartition(name, 0): None}
        wait_until(lambda: not ongoing(c), timeout=30, what="the cancelled reassignment gone")
        reverted = c.wait_settled(name, via=[1, 2, 3], preferred=False,
                                  check=lambda v: set(v[0][2]) == {1, 2})
        assert reverted[0][0] == 1
        # Stuck again; a new target replaces the running move and completes without broker 4.
        assert reassign(c, {TopicPartition(name, 0): [4, 2]}) == {TopicPartition(name, 0): None}
        wait_until(lambda: ongoing(c), timeout=30, what="the reassignment listed again")
        assert reassign(c, {TopicPartition(name, 0): [3, 2]}) == {TopicPartition(name, 0): None}
        replaced = c.wait_settled(name, via=[1, 2, 3], timeout=60,
                                  check=lambda v: v[0][2] == (3, 2))
        assert replaced[0][0] == 3
        wait_until(lambda: not ongoing(c), timeout=30, what="the replacing move complete")
        # Nothing left to cancel.
        assert reassign(c, {TopicPartition(name, 0): None}) == {
            TopicPartition(name, 0): NoReassignmentInProgressError}
    finally:
        c.start(4)
        c.wait_brokers(expected=BROKERS, timeout=60)


def test_invalid_reassignments_get_kafkas_errors(cluster4):
    c = cluster4
    name = create(c, [[1, 2]])
    tp = TopicPartition(name, 0)
    assert reassign(c, {tp: [2, 2]}) == {tp: InvalidReplicationAssignmentError}
    assert reassign(c, {tp: [2, 9]}) == {tp: InvalidReplicationAssignmentError}
    # (An empty list is refused by kafka-python itself; the broker's answer is unit-tested.)
    assert reassign(c, {TopicPartition(name, 5): [1, 2]}) == {
        TopicPartition(name, 5): UnknownTopicOrPartitionError}
    missing = topic_name("nope")
    assert reassign(c, {TopicPartition(missing, 0): [1]}) == {
        TopicPartition(missing, 0): UnknownTopicOrPartitionError}
    assert not ongoing(c)
    assert c.partitions(1, name)[0][2] == (1, 2)
    # UnregisterBroker: unknown ids and brokers that still host replicas are refused.
    code, _msg = unregister_broker(c, 1, 77)
    assert code == 102  # BROKER_ID_NOT_REGISTERED
    code, msg = unregister_broker(c, 2, 1)
    assert code == 42 and "reassign" in (msg or ""), (code, msg)  # INVALID_REQUEST
    assert c.broker_ids_seen(1) == BROKERS


def _alter(c, via, res, entries):
    a = admin(c.address(via))  # kept referenced until its future is done
    r = ConfigResource(res[0], res[1], incremental_configs=entries)
    a.incremental_alter_configs([r])[r].result(timeout=20)


def test_a_follower_throttle_slows_a_move_down(cluster4):
    """follower.replication.throttled.rate on the receiving broker, with the topic's
    follower.replication.throttled.replicas naming the moving replica: the copy takes at least
    about (size - one fetch) / rate: the first fetch (up to replica.fetch.max.bytes, 1 MiB) is
    paid for afterwards. The same move unthrottled first, for comparison (printed with -s)."""
    c = cluster4
    name = create(c, [[1]])
    p = producer(c.address(1), acks="all", **{"linger.ms": 20})
    produce_all(p, name, [{"value": b"x" * 1000, "partition": 0} for _ in range(3000)])
    # Unthrottled first (1 → 3), for comparison.
    t0 = time.monotonic()
    assert reassign(c, {TopicPartition(name, 0): [3]}) == {TopicPartition(name, 0): None}
    c.wait_settled(name, via=BROKERS, timeout=120, check=lambda v: v[0][2] == (3,))
    fast = time.monotonic() - t0
    rate = 150_000
    set_op = AlterConfigOpType.SET
    _alter(c, 2, ("broker", "2"),
           [ConfigEntry("follower.replication.throttled.rate", str(rate), incremental_operation=set_op)])
    _alter(c, 1, ("topic", name),
           [ConfigEntry("follower.replication.throttled.replicas", "*", incremental_operation=set_op)])
    try:
        t0 = time.monotonic()
        assert reassign(c, {TopicPartition(name, 0): [2]}) == {TopicPartition(name, 0): None}
        c.wait_settled(name, via=BROKERS, timeout=120, check=lambda v: v[0][2] == (2,))
        elapsed = time.monotonic() - t0
        print(f"moving 3 MB took {fast:.1f} s, throttled at {rate} B/s {elapsed:.1f} s")
        assert elapsed >= (3_000_000 - 1_100_000) / rate, f"the move took only {elapsed:.1f} s"
    finally:
        delete = AlterConfigOpType.DELETE
        _alter(c, 2, ("broker", "2"),
               [ConfigEntry("follower.replication.throttled.rate", None, incremental_operation=delete)])
    got = consume_to_end(c.address(2), name, [0], timeout=60)
    assert len(got[0]) == 3000


def test_decommission_moves_everything_off_broker_4_and_unregisters_it(cluster4):
    c = cluster4
    spread = topic_name("decom")
    a = admin(c.address(1))
    a.create_topics([NewTopic(spread, num_partitions=4, replication_factor=2)],
                    operation_timeout=15)[spread].result(timeout=30)
    on4 = create(c, [[4, 1, 2]], {"min.insync.replicas": "2"})
    c.wait_settled(spread, via=BROKERS, timeout=60)
    hosted = [t for t in (spread, on4)
              if any(4 in v[2] for v in c.partitions(1, t).values())]
    assert on4 in hosted
    load = IdempotentLoad(c.address(1), on4, partitions=1).start()
    try:
        wait_until(lambda: load.acked_count(0) > 50, timeout=60, what="writes before")
        out = raftka("--bootstrap", c.address(1), "admin", "decommission", "--broker", "4",
                     "--timeout", "180", timeout=240)
        assert "broker 4 unregistered" in out.stdout, out.stdout
    finally:
        load.stop()
    verify_read_back(c.address(1), load)
    assert not load.failed, load.failed[:5]
    for via in (1, 2, 3):
        wait_until(lambda: c.broker_ids_seen(via) == [1, 2, 3], timeout=30,
                   what=f"broker {via}'s Metadata without broker 4")
    for via in (1, 2, 3):
        a = admin(c.address(via))  # kept referenced until its future is done
        desc = a.describe_cluster(request_timeout=10).result(timeout=20)
        assert sorted(n.id for n in desc.nodes) == [1, 2, 3], desc
        assert desc.controller is not None and desc.controller.id in (1, 2, 3), desc
    md = c.metadata(1)
    for t in md["topics"]:
        for p in t["partitions"]:
            assert 4 not in p["replica_nodes"], (t["name"], p)
            assert sorted(p["isr_nodes"]) == sorted(p["replica_nodes"]), (t["name"], p)
            assert p["leader_id"] in (1, 2, 3)
    # Replication factors kept.
    assert len(c.partitions(1, on4)[0][2]) == 3
    assert all(len(v[2]) == 2 for v in c.partitions(1, spread).values())
    assert not ongoing(c)
