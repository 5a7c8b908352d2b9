"""A secured three-broker cluster (`RAFTKA_SECURE=1 scripts/cluster up 3`): SASL_SSL with
SCRAM-SHA-512 for clients, a CA and broker certificates made by the script, a super user
whose password `up` prints, and mutual TLS between the brokers' gRPC ports. A SCRAM user
created through one broker's AlterUserScramCredentials is replicated through the metadata
quorum and can log in on another broker. The gRPC port takes only TLS connections with a broker
certificate of the cluster CA; over it the brokers replicate acks=all writes and survive the
loss of the partition leader (killed, then restarted and back in the ISR).
"""

import os
import re
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from conftest import Cluster, free_port_base
from raftkit import clients
from helpers import topic_name, wait_until


@pytest.fixture(scope="module")
def secured(request, tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster3-secure"), free_port_base(3), {"RAFTKA_SECURE": "1"})
    request.module._raftka_cluster = c
    c.n = 3
    proc = c.run("up", 3)
    lines = dict(line.split("=", 1) for line in proc.stdout.strip().splitlines() if "=" in line)
    assert proc.stdout.strip().splitlines()[-1].startswith("bootstrap="), proc.stdout
    try:
        yield c, lines
    finally:
        c.down(wipe=os.environ.get("KEEP_CLUSTER_RUN_DIR") != "1")


def conf(lines, bootstrap, user, password):
    return clients.sasl_ssl(bootstrap, lines["ca"], user, password)


def test_up_prints_ca_admin_and_sasl_ssl_bootstrap(secured):
    c, lines = secured
    assert os.path.isfile(lines["ca"])
    user, password = lines["admin"].split(":", 1)
    assert user == "admin" and len(password) >= 16
    # The admin logs in on every broker (kcat, SCRAM-SHA-512 over TLS checked against the CA).
    for bootstrap in lines["bootstrap"].split(","):
        out = subprocess.run(
            ["kcat", "-L", "-b", bootstrap, "-m", "10", *clients.kcat_args(conf(lines, bootstrap, user, password))],
            capture_output=True, text=True, timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.count(" broker ") >= 3
    # Plaintext clients get nothing.
    p = Producer({"bootstrap.servers": c.address(1)})
    with pytest.raises(KafkaException):
        p.list_topics(timeout=2)


def test_scram_user_created_on_one_broker_logs_in_on_another(secured):
    c, lines = secured
    user, password = lines["admin"].split(":", 1)
    admin = AdminClient(conf(lines, c.address(1), user, password))
    admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("erin", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"erin-pw")
    ])["erin"].result(timeout=20)

    erin3 = conf(lines, c.address(3), "erin", "erin-pw")

    def logs_in_on_broker3():
        Producer(erin3).list_topics(timeout=3)
        return True

    wait_until(logs_in_on_broker3, timeout=20, what="erin's credential on broker 3")
    topic = topic_name("secure")
    p = Producer(erin3)
    p.produce(topic, b"replicated credential")
    assert p.flush(20) == 0
    consumer = Consumer({**erin3, "group.id": topic})
    consumer.assign([TopicPartition(topic, 0, 0)])
    msg = wait_until(lambda: (lambda m: m if m is not None and not m.error() else None)(consumer.poll(0.5)),
                     timeout=20, what="the record back")
    consumer.close()
    assert msg.value() == b"replicated credential"
    # A wrong password is still refused there.
    errors = []
    bad = Producer({**conf(lines, c.address(2), "erin", "wrong"), "error_cb": errors.append})
    wait_until(lambda: (bad.poll(0.2), errors)[1], timeout=15, what="an authentication error")
    assert any("Authentication failed" in e.str() for e in errors)


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def grpc_answer(port, ca, cert=None):
    """Sends the HTTP/2 preface to a gRPC port over TLS (presenting ``cert``, a (pem, key)
    pair, or nothing) and returns the first bytes answered (b"" when the connection is closed
    or refused during or after the handshake)."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["h2"])
    if cert:
        ctx.load_cert_chain(*cert)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="broker-1") as s:
                s.settimeout(10)
                s.sendall(H2_PREFACE)
                return s.recv(64)
    except (ssl.SSLError, ConnectionError, socket.timeout):
        return b""


def test_brokers_speak_mutual_tls_between_them(secured):
    c, lines = secured
    for b in (1, 2, 3):
        assert re.search(r"inter-broker gRPC port.*mutual_tls=true", c.log(b)), c.log_tail(b)
        # The startup warning names only what is still open: no authorizer (scripts/cluster
        # sets none), not the SASL_SSL listener or the gRPC port.
        warn = [line for line in c.log(b).splitlines() if "SECURITY IS OFF" in line]
        assert warn and "authorizer" in warn[0], c.log_tail(b)
        assert "Kafka listener" not in warn[0] and "gRPC" not in warn[0], warn[0]
    ca = lines["ca"]
    certs = Path(ca).parent
    grpc = c.port(1) + 1
    # Broker 2's certificate: TLS with ALPN h2, and the server's HTTP/2 SETTINGS frame back.
    answer = grpc_answer(grpc, ca, (certs / "broker-2.pem", certs / "broker-2.key"))
    assert len(answer) >= 9 and answer[3] == 0x4, answer
    # No client certificate: nothing.
    assert grpc_answer(grpc, ca) == b""
    # Plain HTTP/2 (no TLS): nothing either.
    with socket.create_connection(("127.0.0.1", grpc), timeout=10) as s:
        s.settimeout(10)
        s.sendall(H2_PREFACE)
        try:
            got = s.recv(64)
        except (ConnectionError, socket.timeout):
            got = b""
    assert got[3:4] != b"\x04", got


def isr_of(a, topic):
    t = a.list_topics(topic=topic, timeout=5).topics.get(topic)
    if t is None or t.error is not None or 0 not in t.partitions:
        return None
    return t.partitions[0]


def test_replicates_over_mutual_tls_and_survives_a_leader_kill(secured):
    c, lines = secured
    user, password = lines["admin"].split(":", 1)
    everyone = conf(lines, lines["bootstrap"], user, password)
    a = AdminClient(everyone)
    topic = topic_name("mtls")
    a.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})])[topic].result(30)
    wait_until(lambda: (lambda p: p is not None and len(p.isrs) == 3)(isr_of(a, topic)),
               timeout=60, what="a full ISR of 3")

    def produce(values):
        errors = []
        p = Producer({**everyone, "acks": "all", "enable.idempotence": True,
                      "message.timeout.ms": 60000})
        for v in values:
            p.produce(topic, v, on_delivery=lambda err, _m: err and errors.append(err))
        assert p.flush(90) == 0 and not errors, errors

    first = [f"before-{i}".encode() for i in range(50)]
    produce(first)
    leader = isr_of(a, topic).leader
    c.kill(leader)
    survivors = [b for b in (1, 2, 3) if b != leader]
    # acks=all with min.insync.replicas=2 needs a new leader and both survivors in its ISR
    second = [f"after-{i}".encode() for i in range(50)]
    produce(second)
    seen = []
    consumer = Consumer({**conf(lines, c.address(survivors[0]), user, password),
                         "group.id": topic, "enable.partition.eof": False})
    consumer.assign([TopicPartition(topic, 0, 0)])

    def read_all():
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            seen.append(m.value())
        return len(seen) >= 100

    wait_until(read_all, timeout=60, what="the 100 acknowledged records")
    consumer.close()
    assert seen == first + second
    # The killed broker comes back and catches up over mutual TLS: the ISR is full again.
    c.start(leader)
    b = AdminClient(conf(lines, c.address(survivors[0]), user, password))
    wait_until(lambda: (lambda p: p is not None and len(p.isrs) == 3)(isr_of(b, topic)),
               timeout=90, what=f"broker {leader} back in the ISR")
