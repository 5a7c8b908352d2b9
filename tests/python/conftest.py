"""Fixtures: one fresh single-broker raftka per test module, run through scripts/cluster.

A module may set ``BROKER_ENV = {"RAFTKA_...": "..."}`` to start its broker with extra settings.

``cluster3`` instead starts a fresh three-broker cluster (`scripts/cluster up 3`, every broker a
Raft voter) per module, with ``CLUSTER3_ENV`` plus the module's ``CLUSTER_ENV`` as settings, and
returns once every broker's Metadata lists all three brokers. Its ``Cluster`` object also reads
raw Metadata (leader epochs included) from one chosen broker and polls for settled partitions.
Set KEEP_CLUSTER_RUN_DIR=1 to keep the run directories (broker logs) after the tests.
The broker binary comes from ``RAFTKA_BIN`` (CI: target/debug/raftka); without it
scripts/cluster builds and uses target/release/raftka.

When a test fails, the tail of the broker's log is attached to the report.
"""

import os

import pytest
from raftkit import CLUSTER_SCRIPT, REPO  # noqa: F401 - REPO, CLUSTER_SCRIPT: kept for test modules
from raftkit.cluster import LOG_TAIL_LINES, ProcessCluster
from raftkit.ports import free_port_base  # noqa: F401 - test modules import it from here
from raftkit.wait import wait_until


class Cluster(ProcessCluster):
    """scripts/cluster for one run directory and port base (raftkit.cluster.ProcessCluster);
    a failed command or wait is a test failure (AssertionError)."""

    def __init__(self, run_dir, port_base, extra_env=None):
        super().__init__(run_dir, port_base, extra_env, start_timeout=60, error=AssertionError)


def _poll(pred, timeout, what, interval=0.1):
    return wait_until(pred, timeout, what, interval=interval)


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    env = dict(getattr(request.module, "BROKER_ENV", {}))
    name = request.module.__name__.rsplit(".", 1)[-1]
    c = Cluster(tmp_path_factory.mktemp(f"cluster-{name}"), free_port_base(), env)
    request.module._raftka_cluster = c
    c.up(1)
    yield c
    c.down(wipe=True)


@pytest.fixture(scope="module")
def bootstrap(cluster):
    return cluster.bootstrap


# Settings for every cluster3 fixture: preferred leaders come back within about a second.
CLUSTER3_ENV = {"RAFTKA_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS": "1"}


@pytest.fixture(scope="module")
def cluster3(request, tmp_path_factory):
    """A fresh three-broker cluster for the module; every broker lists all three in Metadata."""
    env = {**CLUSTER3_ENV, **getattr(request.module, "CLUSTER_ENV", {})}
    name = request.module.__name__.rsplit(".", 1)[-1]
    c = Cluster(tmp_path_factory.mktemp(f"cluster3-{name}"), free_port_base(3), env)
    request.module._raftka_cluster = c
    c.up(3)
    try:
        c.wait_brokers()
        yield c
    finally:
        c.down(wipe=os.environ.get("KEEP_CLUSTER_RUN_DIR") != "1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        c = getattr(item.module, "_raftka_cluster", None)
        if isinstance(c, Cluster):
            for bid in range(1, max(c.n, 1) + 1):
                rep.sections.append(
                    (f"raftka broker {bid} log (last {LOG_TAIL_LINES} lines)", c.log_tail(bid))
                )
