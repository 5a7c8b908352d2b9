"""A secured three-broker cluster (`RAFTKA_SECURE=1 scripts/cluster up 3`): SASL_SSL with
SCRAM-SHA-512 for clients, a CA and broker certificates made by the script, and a super user
whose password `up` prints. A SCRAM user created through one broker's AlterUserScramCredentials
is replicated through the metadata quorum and can log in on another broker.
"""

import os
import subprocess

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from conftest import Cluster, free_port_base
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
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": lines["ca"],
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
    }


def test_up_prints_ca_admin_and_sasl_ssl_bootstrap(secured):
    c, lines = secured
    assert os.path.isfile(lines["ca"])
    user, password = lines["admin"].split(":", 1)
    assert user == "admin" and len(password) >= 16
    # The admin logs in on every broker (kcat, SCRAM-SHA-512 over TLS checked against the CA).
    for bootstrap in lines["bootstrap"].split(","):
        out = subprocess.run(
            ["kcat", "-L", "-b", bootstrap, "-m", "10",
             "-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={lines['ca']}",
             "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", f"sasl.username={user}",
             "-X", f"sasl.password={password}"],
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
