"""Fixtures: one fresh single-broker raftka per test module, run through scripts/cluster.

A module may set ``BROKER_ENV = {"RAFTKA_...": "..."}`` to start its broker with extra settings.
The broker binary comes from ``RAFTKA_BIN`` (CI: target/debug/raftka); without it
scripts/cluster builds and uses target/release/raftka.

When a test fails, the tail of the broker's log is attached to the report.
"""

import os
import random
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "scripts" / "cluster"
LOG_TAIL_LINES = 80


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    # nobody listening either (bind can succeed next to a SO_REUSEPORT listener)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def free_port_base():
    """A free port below Linux's ephemeral range, so client sockets cannot take it meanwhile."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        if _port_free(port) and _port_free(port + 1):
            return port
    raise RuntimeError("no free port found")


class Cluster:
    """Drives scripts/cluster for one run directory and port base."""

    def __init__(self, run_dir, port_base, extra_env=None):
        self.run_dir = Path(run_dir)
        self.port_base = port_base
        self.env = dict(os.environ)
        self.env["RAFTKA_RUN_DIR"] = str(self.run_dir)
        self.env["RAFTKA_PORT_BASE"] = str(port_base)
        self.env.setdefault("RAFTKA_START_TIMEOUT", "60")
        self.env.update(extra_env or {})
        self.bootstrap = None
        self.n = 0

    def run(self, *args, check=True, timeout=300):
        proc = subprocess.run(
            [str(CLUSTER_SCRIPT), *map(str, args)],
            env=self.env,
            cwd=str(REPO),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"scripts/cluster {' '.join(map(str, args))} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    @staticmethod
    def _bootstrap_of(proc):
        lines = proc.stdout.strip().splitlines()
        assert lines and lines[-1].startswith("bootstrap="), (
            f"last line is not bootstrap=...: {proc.stdout!r}\n{proc.stderr}"
        )
        return lines[-1][len("bootstrap="):]

    def up(self, n=1):
        self.n = n
        self.bootstrap = self._bootstrap_of(self.run("up", n))
        return self.bootstrap

    def start(self, broker_id=1):
        return self._bootstrap_of(self.run("start", broker_id))

    def stop(self, broker_id=1):
        return self.run("stop", broker_id)

    def kill(self, broker_id=1):
        return self.run("kill", broker_id)

    def pause(self, broker_id=1):
        return self.run("pause", broker_id)

    def resume(self, broker_id=1):
        return self.run("resume", broker_id)

    def status(self):
        """{id: (port, pid or None, state)}"""
        out = {}
        for line in self.run("status").stdout.splitlines():
            bid, port, pid, state = line.split()
            out[int(bid)] = (int(port), None if pid == "-" else int(pid), state)
        return out

    def down(self, wipe=True):
        return self.run("down", *(["--wipe"] if wipe else []), check=False)

    def log_path(self, broker_id=1):
        return self.run_dir / f"broker-{broker_id}" / "broker.log"

    def log(self, broker_id=1):
        try:
            return self.log_path(broker_id).read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, broker_id=1, lines=LOG_TAIL_LINES):
        return "\n".join(self.log(broker_id).splitlines()[-lines:])


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
