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
import random
import socket
import struct
import subprocess
import time
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


def free_port_base(brokers=1):
    """A free port below Linux's ephemeral range, so client sockets cannot take it meanwhile.
    Every broker's Kafka, gRPC and HTTP admin port (base + 100*i, + 1, + 2) is free too."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000 - 100 * brokers)
        if all(_port_free(port + 100 * i + d) for i in range(brokers) for d in (0, 1, 2)):
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

    # -- multi-broker helpers -----------------------------------------------------------------

    def port(self, broker_id):
        return self.port_base + 100 * (broker_id - 1)

    def address(self, broker_id):
        return f"127.0.0.1:{self.port(broker_id)}"

    def http_address(self, broker_id):
        """host:port of the broker's HTTP admin listener (scripts/cluster: Kafka port + 2)."""
        return f"127.0.0.1:{self.port(broker_id) + 2}"

    def http_get(self, broker_id, path, timeout=5.0):
        """(status, body text) of GET http://<broker's http.listener><path>."""
        import urllib.error
        import urllib.request

        url = f"http://{self.http_address(broker_id)}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def ids(self):
        return list(range(1, self.n + 1))

    def running(self):
        """Ids of brokers that are running (not stopped, not paused)."""
        return [b for b, (_, _, state) in self.status().items() if state == "running"]

    def pid(self, broker_id):
        return self.status()[broker_id][1]

    def request(self, broker_id, req, version, timeout=5.0):
        """Sends one kafka-python protocol request object (``kafka.protocol.*``) to exactly this
        broker over a fresh connection and returns the decoded response (no client logic: no
        retries, no metadata refresh, no leader routing)."""
        from kafka.protocol.admin import DescribeAclsResponse, IncrementalAlterConfigsResponse
        from kafka.protocol.metadata import MetadataResponse
        from kafka.protocol.producer import ProduceResponse

        from kafka.protocol.consumer.group import OffsetFetchResponse

        resp_cls = {0: ProduceResponse, 3: MetadataResponse, 9: OffsetFetchResponse,
                    29: DescribeAclsResponse, 44: IncrementalAlterConfigsResponse}[req.API_KEY]
        req.with_header(correlation_id=4242, client_id="raftka-tests-raw")
        data = req.encode(version=version, header=True, framed=True)
        with socket.create_connection(("127.0.0.1", self.port(broker_id)), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(data)
            size = struct.unpack(">i", _recv_exact(s, 4))[0]
            body = _recv_exact(s, size)
        return resp_cls.decode(body, version=version, header=True)

    def metadata(self, broker_id, topics=None, timeout=3.0):
        """Metadata v9 from this broker, as a plain dict (kafka-python's to_dict): brokers,
        controller_id, topics with partitions (leader_id, leader_epoch, replica_nodes,
        isr_nodes). topics=None asks for every topic."""
        from kafka.protocol.metadata import MetadataRequest

        req = MetadataRequest(
            topics=None if topics is None else [MetadataRequest.MetadataRequestTopic(name=t) for t in topics],
            allow_auto_topic_creation=False,
        )
        return self.request(broker_id, req, 9, timeout=timeout).to_dict()

    def partitions(self, broker_id, topic, timeout=3.0):
        """{partition: (leader, leader_epoch, replicas tuple, sorted isr tuple)} of one topic as
        this broker reports it, or None when the broker does not know the topic."""
        md = self.metadata(broker_id, [topic], timeout=timeout)
        [t] = [t for t in md["topics"] if t["name"] == topic]
        if t["error_code"] != 0:
            return None
        return {
            p["partition_index"]: (
                p["leader_id"],
                p["leader_epoch"],
                tuple(p["replica_nodes"]),
                tuple(sorted(p["isr_nodes"])),
            )
            for p in t["partitions"]
        }

    def broker_ids_seen(self, broker_id, timeout=3.0):
        return sorted(b["node_id"] for b in self.metadata(broker_id, [], timeout=timeout)["brokers"])

    def wait_brokers(self, expected=None, via=None, timeout=30.0):
        """Polls until every broker in `via` (default: all) lists exactly `expected` brokers."""
        expected = sorted(expected or self.ids())
        via = via or self.ids()
        _poll(lambda: all(self.broker_ids_seen(b) == expected for b in via), timeout,
              f"brokers {via} to list brokers {expected} in Metadata")

    def wait_settled(self, topic, via=None, full_isr=True, preferred=True, timeout=30.0, check=None):
        """Polls until the brokers in `via` (default: every running broker) report identical
        partition states for `topic` in which every partition has a leader, and (full_isr) the
        ISR holds every replica, and (preferred) the leader is the first replica; `check`
        (view -> bool) may add a condition. Returns the agreed view."""

        def settled():
            brokers = via or self.running()
            views = [self.partitions(b, topic) for b in brokers]
            first = views[0]
            if first is None or any(v != first for v in views[1:]):
                return None
            for leader, _epoch, replicas, isr in first.values():
                if leader < 0:
                    return None
                if full_isr and set(isr) != set(replicas):
                    return None
                if preferred and leader != replicas[0]:
                    return None
            if check is not None and not check(first):
                return None
            return first

        return _poll(settled, timeout, f"topic {topic} settled (full_isr={full_isr}, preferred={preferred})")

    def leader_of(self, topic, partition, via=None):
        b = via or self.running()[0]
        return self.partitions(b, topic)[partition][0]

    def controller(self, via=None):
        return self.metadata(via or self.running()[0], [])["controller_id"]

    def peak_rss_kib(self, broker_id):
        """VmHWM of the broker's process in KiB (None when it is not running)."""
        pid = self.pid(broker_id)
        if not pid:
            return None
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return None


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def _poll(pred, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - reported if it never succeeds
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last!r}")
        time.sleep(interval)


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
