"""Dynamic metadata-quorum voters (KIP-853): AddRaftVoter (key 80) and RemoveRaftVoter (key 81).

`scripts/cluster up 4` with RAFTKA_CLUSTER_VOTERS=3: brokers 1-3 are the voters, broker 4 joins
as a learner. The test promotes broker 4 to voter (through a broker that is not the quorum
leader: the request is forwarded over the inter-broker gRPC service), checks Kafka's errors
(DUPLICATE_VOTER, VOTER_NOT_FOUND), kills a voter and removes it, then kills the quorum leader:
the three remaining voters (one of them the former learner) elect a new leader, every running
broker's DescribeQuorum agrees on the voters and the leader, and the cluster keeps serving
(a topic is created and written). Finally the quorum shrinks to one voter, which cannot be
removed (INVALID_REQUEST), nor may a removal leave the live voters without a majority.

No client library has these two APIs, so they are sent as raw requests (flexible v0 layout).
"""

import socket
import struct
import time
import pytest
from confluent_kafka.admin import NewTopic

from conftest import CLUSTER3_ENV, Cluster, free_port_base
from helpers import admin, produce_all, producer, topic_name, wait_until
from test_cluster_ops import describe_quorum

BROKERS = [1, 2, 3, 4]
DUPLICATE_VOTER = 126
VOTER_NOT_FOUND = 127
INVALID_REQUEST = 42
REQUEST_TIMED_OUT = 7


@pytest.fixture(scope="module")
def cluster4(request, tmp_path_factory):
    env = {**CLUSTER3_ENV, "RAFTKA_CLUSTER_VOTERS": "3"}
    c = Cluster(tmp_path_factory.mktemp("cluster4-voters"), free_port_base(4), env)
    request.module._raftka_cluster = c
    c.up(4)
    try:
        c.wait_brokers(expected=BROKERS)
        yield c
    finally:
        c.down()


def _uvarint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _read_uvarint(buf, pos):
    shift = n = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7


def _compact_str(s):
    b = s.encode()
    return _uvarint(len(b) + 1) + b


def _voter_request(address, api_key, body, timeout=60.0):
    """One flexible v0 request (header v2) to `address`; returns (error code, message)."""
    header = struct.pack(">hhi", api_key, 0, 11) + struct.pack(">h", 5) + b"tests" + _uvarint(0)
    frame = header + body
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(frame)) + frame)
        data = b""
        while len(data) < 4:
            chunk = s.recv(4 - len(data))
            assert chunk, "connection closed"
            data += chunk
        size = struct.unpack(">i", data)[0]
        data = b""
        while len(data) < size:
            chunk = s.recv(size - len(data))
            assert chunk, "connection closed"
            data += chunk
    corr = struct.unpack(">i", data[:4])[0]
    assert corr == 11
    _tags, pos = _read_uvarint(data, 4)
    pos += 4  # throttle_time_ms
    error = struct.unpack(">h", data[pos:pos + 2])[0]
    pos += 2
    n, pos = _read_uvarint(data, pos)
    message = data[pos:pos + n - 1].decode() if n else None
    return error, message


def add_voter(address, voter_id, timeout_ms=30000):
    body = (_uvarint(0)  # cluster_id: null
            + struct.pack(">ii", timeout_ms, voter_id)
            + bytes(16)  # voter_directory_id
            + _uvarint(1 + 1) + _compact_str("CONTROLLER") + _compact_str("127.0.0.1")
            + struct.pack(">H", 9093) + _uvarint(0)  # one listener (not used by raftka)
            + _uvarint(0))
    return _voter_request(address, 80, body)


def remove_voter(address, voter_id):
    body = _uvarint(0) + struct.pack(">i", voter_id) + bytes(16) + _uvarint(0)
    return _voter_request(address, 81, body)


def quorum_view(c, via):
    """(leader, epoch, voters, observers) as broker `via` reports it, or None on an error."""
    part, _nodes = describe_quorum(c, via)
    if part["error_code"] != 0:
        return None
    return (part["leader_id"], part["leader_epoch"],
            tuple(sorted(v["replica_id"] for v in part["current_voters"])),
            tuple(sorted(o["replica_id"] for o in part["observers"])))


def agreed_view(c, brokers, voters):
    """Waits until every broker in `brokers` reports the same leader and epoch with exactly
    `voters` as voters; returns that view."""
    def agreed():
        views = {b: quorum_view(c, b) for b in brokers}
        if any(v is None for v in views.values()):
            return None
        if len(set(views.values())) != 1:
            return None
        view = next(iter(views.values()))
        return view if view[2] == tuple(sorted(voters)) and view[0] in voters else None

    return wait_until(agreed, timeout=60, interval=0.2,
                      what=f"brokers {brokers} agreeing on voters {sorted(voters)}")


def test_voters_are_added_and_removed_and_the_quorum_keeps_electing(cluster4):
    c = cluster4
    leader, epoch, voters, observers = agreed_view(c, BROKERS, [1, 2, 3])
    assert 4 in observers, "the fourth broker joined as a learner (observer)"

    # Promote the learner through a broker that is not the leader (forwarded over gRPC).
    via = next(b for b in [1, 2, 3] if b != leader)
    timed_out = []

    def added():
        # REQUEST_TIMED_OUT while the learner has not caught up yet: retry, as Kafka's tools do
        # (then DUPLICATE_VOTER means an earlier attempt committed after all).
        err, msg = add_voter(c.address(via), 4)
        if err == REQUEST_TIMED_OUT:
            timed_out.append(msg)
            return None
        assert err == 0 or (err == DUPLICATE_VOTER and timed_out), (err, msg)
        return True

    wait_until(added, timeout=60, interval=0.5, what="broker 4 added as a voter")
    leader, epoch, voters, observers = agreed_view(c, BROKERS, [1, 2, 3, 4])
    assert 4 not in observers

    # Kafka's refusals.
    err, msg = add_voter(c.address(4), 4)
    assert err == DUPLICATE_VOTER, (err, msg)
    err, msg = remove_voter(c.address(via), 9)
    assert err == VOTER_NOT_FOUND, (err, msg)
    err, msg = add_voter(c.address(via), 9)
    assert err == INVALID_REQUEST and "learner" in msg, (err, msg)

    # A voter dies and is removed; the quorum of the other three commits the change.
    dead = next(b for b in [1, 2, 3] if b != leader)
    c.kill(dead)
    alive = [b for b in BROKERS if b != dead]
    err, msg = remove_voter(c.address(next(b for b in alive if b != leader)), dead)
    assert err == 0, (err, msg)
    remaining = [b for b in [1, 2, 3, 4] if b != dead]
    leader, epoch, voters, _ = agreed_view(c, alive, remaining)

    # The leader dies too: two of the three remaining voters (one the former learner) elect
    # a new leader in a later epoch, and every running broker agrees.
    old_leader, old_epoch = leader, epoch
    c.kill(old_leader)
    alive = [b for b in alive if b != old_leader]
    leader, epoch, voters, _ = agreed_view(c, alive, remaining)
    assert leader != old_leader and leader in alive and epoch > old_epoch

    # And the cluster serves: a new topic is created and written through the survivors. The
    # new controller places replicas on every unfenced broker, and the two dead ones stay
    # unfenced until their leases (carried over from the old controller) run out: wait for
    # that, or a partition may be placed on the dead pair only (as Kafka would place it).
    wait_until(lambda: sorted(b["node_id"] for b in c.metadata(leader)["brokers"]) == sorted(alive),
               timeout=30, what=f"the dead brokers fenced (Metadata lists only {alive})")
    bootstrap = ",".join(c.address(b) for b in alive)
    name = topic_name("voters")
    a = admin(bootstrap)
    a.create_topics([NewTopic(name, num_partitions=2, replication_factor=2)],
                    operation_timeout=30)[name].result(timeout=60)
    produce_all(producer(bootstrap, acks="all"), name,
                [{"value": f"v{i}".encode(), "partition": i % 2} for i in range(20)])
    print(f"\nvoters now {voters}, leader {leader} (epoch {epoch}) after killing {dead} and "
          f"{old_leader}")

    # Down to one voter: the dead one goes, then a live one (asked through itself: it stays a
    # learner, an observer, and keeps its broker role); the last voter cannot be removed.
    # Removing a live voter now would leave {dead old leader, leader}: no live majority, the
    # change could never commit (and would wedge the quorum in the joint configuration).
    other = next(v for v in remaining if v not in (old_leader, leader))

    def old_leader_silent():
        part, _ = describe_quorum(c, leader)
        [v] = [v for v in part["current_voters"] if v["replica_id"] == old_leader]
        return v["last_fetch_timestamp"] < time.time() * 1000 - 3000

    wait_until(old_leader_silent, timeout=30, what=f"the controller's lease of {old_leader} expired")
    err, msg = remove_voter(c.address(other), other)
    assert err == INVALID_REQUEST and "majority" in msg, (err, msg)
    assert remove_voter(c.address(leader), old_leader) == (0, None)
    assert remove_voter(c.address(other), other) == (0, None)
    _, _, voters, observers = agreed_view(c, alive, [leader])
    assert other in observers
    err, msg = remove_voter(c.address(other), leader)
    assert err == INVALID_REQUEST and "last voter" in msg, (err, msg)
    name2 = topic_name("one-voter")
    a.create_topics([NewTopic(name2, num_partitions=1, replication_factor=2)],
                    operation_timeout=30)[name2].result(timeout=60)
