"""raftkit: the one Python test kit of raftka, used by tests/python, scripts/chaos and the
bench scripts (scripts/bench, scripts/failover-bench, scripts/group-bench).

Modules, in dependency order (each imports only the ones above it; none imports a Kafka
client at import time):

- ``ports``      free port bases below Linux's ephemeral range (``free_port_base``).
- ``wait``       ``wait_until``: poll a condition with a deadline, never a fixed sleep.
- ``kafkameta``  raw Kafka requests to exactly one broker (kafka-python's protocol classes,
                 no client logic): Metadata views, leaders, ISRs, the controller.
- ``clients``    librdkafka (confluent-kafka) configuration dicts, plain and secured
                 (SASL_SSL, SASL_PLAINTEXT, mTLS).
- ``cluster``    ``ProcessCluster``: the local process cluster of scripts/cluster (up, start,
                 stop, kill, pause, resume, status, logs, per-broker Metadata, settle waits).
- ``docker``     ``ComposeCluster``: the docker compose cluster of scripts/docker-cluster
                 (containers and network by compose labels, kill/start, pause/unpause,
                 network disconnect/connect).
- ``chaos``      the Jepsen-style checker of scripts/chaos/verify (history, checker, fault
                 backends, workload, nemesis, cli), and the docker fault commands behind
                 scripts/chaos/* (state, faults).

How it is found (testkit/README.md): ``pip install -e testkit`` (scripts/test does it);
tests/python also finds it through ``pythonpath`` in its pytest.ini, and the scripts fall back
to ``<repo>/testkit`` when it is not installed.
"""

from pathlib import Path

#: The repository checkout this kit belongs to (the kit is installed in editable mode only).
REPO = Path(__file__).resolve().parents[2]
#: The bash driver of the local process cluster.
CLUSTER_SCRIPT = REPO / "scripts" / "cluster"
