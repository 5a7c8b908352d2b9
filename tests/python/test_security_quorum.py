"""DescribeQuorum on a secured cluster (`RAFTKA_SECURE=1 scripts/cluster up 3`: SASL_SSL with
SCRAM-SHA-512 only). A broker that is not the quorum leader forwards the request to the leader
over the authenticated inter-broker gRPC service — a plain Kafka connection to the leader's
SASL_SSL listener could not log in — so kafka-python's describe_metadata_quorum, connected to
any broker, gets the leader's full answer.
"""

import os

import pytest
from kafka.admin import KafkaAdminClient

from conftest import Cluster, free_port_base
from helpers import wait_until


@pytest.fixture(scope="module")
def secured(request, tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster3-secure-quorum"), free_port_base(3),
                {"RAFTKA_SECURE": "1"})
    request.module._raftka_cluster = c
    c.n = 3
    proc = c.run("up", 3)
    lines = dict(line.split("=", 1) for line in proc.stdout.strip().splitlines() if "=" in line)
    try:
        yield c, lines
    finally:
        c.down(wipe=os.environ.get("KEEP_CLUSTER_RUN_DIR") != "1")


def test_describe_quorum_is_forwarded_to_the_leader_over_sasl_ssl(secured):
    c, lines = secured
    user, password = lines["admin"].split(":", 1)
    answers = {}
    # Each admin client sends to a broker of its choosing (kafka-python picks one at random
    # once it knows them all): nine clients, so that nearly surely several ask a broker that
    # is not the leader, which must forward.
    for bootstrap in lines["bootstrap"].split(",") * 3:
        def ask():
            # Connected to this broker alone at first, the admin sends to it.
            a = KafkaAdminClient(bootstrap_servers=bootstrap, security_protocol="SASL_SSL",
                                 sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=user,
                                 sasl_plain_password=password, ssl_cafile=lines["ca"],
                                 request_timeout_ms=10000)
            try:
                [topic] = a.describe_metadata_quorum()["topics"]
                [part] = topic["partitions"]
                return part
            finally:
                a.close()

        # Retried only if the client cannot connect; an answer must be the leader's.
        part = wait_until(ask, timeout=60, interval=0.5, what=f"DescribeQuorum via {bootstrap}")
        assert part["error"] is None, part
        answers[len(answers)] = (part["leader_id"], part["leader_epoch"],
                                 sorted(v["replica_id"] for v in part["current_voters"]))
    views = set((leader, epoch, tuple(voters)) for leader, epoch, voters in answers.values())
    assert len(views) == 1, answers
    leader, epoch, voters = views.pop()
    assert voters == (1, 2, 3) and leader in voters and epoch >= 1
