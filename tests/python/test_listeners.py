"""Named listeners (Kafka's INTERNAL/EXTERNAL pattern) on a three-broker cluster.

Every broker binds two listeners: INTERNAL on 127.0.0.1 and EXTERNAL on 127.0.0.2 (both
loopback), with different ports. A client's Metadata, FindCoordinator and DescribeCluster
answers must carry the addresses of the listener the client connected through, for every
broker, so that a client on either side of a docker network only ever dials addresses it can
reach. The brokers are started directly (not through scripts/cluster, which binds one listener).
"""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient

from conftest import free_port_base
from helpers import create_topic, topic_name, wait_until

REPO = Path(__file__).resolve().parents[2]
IDS = (1, 2, 3)
MAP = "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT"


def _bin():
    b = os.environ.get("RAFTKA_BIN")
    if b:
        return b
    subprocess.run(["cargo", "build", "--release", "--bin", "raftka"], cwd=REPO, check=True)
    return str(REPO / "target" / "release" / "raftka")


def _loopback2_usable():
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _loopback2_usable(), reason="127.0.0.2 is not bindable here")


class TwoListenerCluster:
    def __init__(self):
        self.base = free_port_base(brokers=len(IDS))
        self.dir = Path(tempfile.mkdtemp(prefix="raftka-listeners-"))
        self.procs = {}

    def internal(self, i):
        return ("127.0.0.1", self.base + 100 * (i - 1))

    def external(self, i):
        return ("127.0.0.2", self.base + 100 * (i - 1) + 2)

    def raft(self, i):
        return ("127.0.0.1", self.base + 100 * (i - 1) + 1)

    def bootstrap(self, kind):
        return ",".join("%s:%d" % getattr(self, kind)(i) for i in IDS)

    def start(self):
        voters = ",".join("%d@%s:%d" % ((i,) + self.raft(i)) for i in IDS)
        for i in IDS:
            ih, ip = self.internal(i)
            eh, ep = self.external(i)
            rh, rp = self.raft(i)
            args = [
                _bin(),
                "--node.id", str(i),
                "--listeners", f"INTERNAL://{ih}:{ip},EXTERNAL://{eh}:{ep}",
                "--advertised.listeners", f"INTERNAL://{ih}:{ip},EXTERNAL://{eh}:{ep}",
                "--listener.security.protocol.map", MAP,
                "--raft.listener", f"{rh}:{rp}",
                "--controller.quorum.voters", voters,
                "--broker.rack", f"rack-{i}",
                "--default.replication.factor", "3",
                "--log.dirs", str(self.dir / f"b{i}"),
            ]
            env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTKA_")}
            log = open(self.dir / f"b{i}.log", "wb")
            self.procs[i] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)

    def stop(self):
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def two_listeners():
    c = TwoListenerCluster()
    c.start()
    try:
        yield c
    finally:
        c.stop()


def _brokers_via(host_port):
    """(node id, host, port, rack) of every broker in DescribeCluster from exactly this address
    (kafka-python), checked against librdkafka's view of Metadata through the same address."""
    host, port = host_port
    admin = KafkaAdminClient(bootstrap_servers=f"{host}:{port}", request_timeout_ms=5000)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    described = sorted((b["broker_id"], b["host"], b["port"], b["rack"]) for b in cluster["brokers"])
    md = AdminClient({"bootstrap.servers": f"{host}:{port}"}).list_topics(timeout=5)
    listed = sorted((b.id, b.host, b.port) for b in md.brokers.values())
    assert listed == [d[:3] for d in described], (listed, described)
    return described


@pytest.mark.parametrize("kind", ["internal", "external"])
def test_every_broker_answers_with_the_addresses_of_the_listener_used(two_listeners, kind):
    c = two_listeners
    want = sorted((i,) + getattr(c, kind)(i) + (f"rack-{i}",) for i in IDS)
    for i in IDS:
        wait_until(lambda: _brokers_via(getattr(c, kind)(i)) == want, timeout=60,
                   what=f"broker {i}'s {kind} listener to list every broker at its {kind} address")


def test_clients_of_either_listener_produce_and_consume_in_a_group(two_listeners):
    c = two_listeners
    wait_until(lambda: len(_brokers_via(c.external(1))) == 3, timeout=60, what="three brokers")
    topic = create_topic(c.bootstrap("external"), topic_name("listeners"), partitions=3,
                         replication_factor=3)
    for kind in ("internal", "external"):
        p = Producer({"bootstrap.servers": c.bootstrap(kind), "acks": "all",
                      "enable.idempotence": True})
        for n in range(30):
            p.produce(topic, key=f"k{n}", value=f"{kind}-{n}")
        assert p.flush(30) == 0
    # The group coordinator is found through FindCoordinator on the EXTERNAL listener only.
    cons = Consumer({"bootstrap.servers": c.bootstrap("external"), "group.id": topic,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
    cons.subscribe([topic])
    seen = []
    try:
        def got_all():
            m = cons.poll(0.5)
            if m is not None and m.error() is None:
                seen.append(m.value().decode())
            return len(seen) >= 60
        wait_until(got_all, timeout=60, interval=0, what="60 records through the EXTERNAL listener")
        cons.commit(asynchronous=False)
    finally:
        cons.close()
    assert sorted(seen) == sorted([f"internal-{n}" for n in range(30)] + [f"external-{n}" for n in range(30)])
