"""``ProcessCluster``: the local process cluster of scripts/cluster, driven from Python.

One object stands for one run directory (RAFTKA_RUN_DIR) and port base (RAFTKA_PORT_BASE);
every command goes through scripts/cluster, which owns the processes, their arguments and
their readiness probe. On top of that: per-broker addresses and logs, each broker's own
Metadata view (``kafkameta``) and waits for brokers and partitions to settle.

Used by tests/python/conftest.py (``Cluster`` there is this class with AssertionError as its
error type), scripts/failover-bench, scripts/group-bench, scripts/bench and the chaos
process backend. Depends on ``wait`` and ``kafkameta`` of this kit.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import CLUSTER_SCRIPT, REPO, kafkameta
from .wait import wait_until

LOG_TAIL_LINES = 80


class ClusterError(RuntimeError):
    """A scripts/cluster command failed or did not finish in time."""


def read_state(run_dir):
    """The cluster.env that ``scripts/cluster up`` wrote in ``run_dir``, as a dict
    (CLUSTER_N, CLUSTER_PORT_BASE, CLUSTER_HOST, CLUSTER_SECURE); ClusterError when there is
    none."""
    f = Path(run_dir) / "cluster.env"
    if not f.exists():
        raise ClusterError(f"no scripts/cluster cluster in {run_dir} (no cluster.env; run scripts/cluster up)")
    out = {}
    for line in f.read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip().strip("'\"")
    return out


class ProcessCluster:
    """Drives scripts/cluster for one run directory and port base.

    ``extra_env`` reaches scripts/cluster (and through it the brokers: every RAFTKA_*
    variable). ``start_timeout`` sets RAFTKA_START_TIMEOUT unless the environment has it.
    ``error`` is the exception type raised when a command fails (tests: AssertionError).
    """

    def __init__(self, run_dir, port_base, extra_env=None, *, start_timeout=None, host=None,
                 error=ClusterError, n=0):
        self.run_dir = Path(run_dir)
        self.port_base = int(port_base)
        self.error = error
        self.env = dict(os.environ)
        self.env["RAFTKA_RUN_DIR"] = str(self.run_dir)
        self.env["RAFTKA_PORT_BASE"] = str(self.port_base)
        if start_timeout is not None:
            self.env.setdefault("RAFTKA_START_TIMEOUT", str(start_timeout))
        self.env.update(extra_env or {})
        self.host = host or self.env.get("RAFTKA_HOST", "127.0.0.1")
        self.bootstrap = None
        self.n = n

    @classmethod
    def existing(cls, run_dir, extra_env=None, **kw):
        """The cluster already running in ``run_dir`` (its cluster.env gives N, the ports and
        the host)."""
        run_dir = Path(run_dir).resolve()
        state = read_state(run_dir)
        c = cls(run_dir, int(state["CLUSTER_PORT_BASE"]), extra_env, host=state["CLUSTER_HOST"],
                n=int(state["CLUSTER_N"]), **kw)
        c.bootstrap = c.bootstrap_servers()
        return c

    # -- scripts/cluster ------------------------------------------------------------------------

    def run(self, *args, check=True, timeout=300):
        cmd = " ".join(map(str, args))
        try:
            proc = subprocess.run(
                [str(CLUSTER_SCRIPT), *map(str, args)],
                env=self.env,
                cwd=str(REPO),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise self.error(f"scripts/cluster {cmd} did not finish within {timeout} s") from None
        if check and proc.returncode != 0:
            raise self.error(
                f"scripts/cluster {cmd} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
            )
        return proc

    def _bootstrap_of(self, proc):
        lines = proc.stdout.strip().splitlines()
        if not (lines and lines[-1].startswith("bootstrap=")):
            raise self.error(f"last line is not bootstrap=...: {proc.stdout!r}\n{proc.stderr}")
        return lines[-1][len("bootstrap="):]

    def up(self, n=1, timeout=300):
        """``scripts/cluster up n``; returns (and keeps in ``bootstrap``) its bootstrap line."""
        self.n = n
        self.bootstrap = self._bootstrap_of(self.run("up", n, timeout=timeout))
        return self.bootstrap

    def start(self, broker_id=1, timeout=300):
        return self._bootstrap_of(self.run("start", broker_id, timeout=timeout))

    def stop(self, broker_id=1):
        return self.run("stop", broker_id)

    def kill(self, broker_id=1):
        return self.run("kill", broker_id)

    def pause(self, broker_id=1):
        return self.run("pause", broker_id)

    def resume(self, broker_id=1):
        return self.run("resume", broker_id)

    def status(self, timeout=60):
        """{id: (port, pid or None, state)} with state running|paused|stopped."""
        out = {}
        for line in self.run("status", timeout=timeout).stdout.splitlines():
            bid, port, pid, state = line.split()
            out[int(bid)] = (int(port), None if pid == "-" else int(pid), state)
        return out

    def down(self, wipe=True, timeout=300):
        return self.run("down", *(["--wipe"] if wipe else []), check=False, timeout=timeout)

    def restart_all(self, log=None, start_timeout=300):
        """Resumes every paused broker and starts every stopped one."""
        for b, (_port, _pid, state) in self.status().items():
            if state == "paused":
                self.resume(b)
            elif state == "stopped":
                if log:
                    log(f"restarting broker {b}")
                self.start(b, timeout=start_timeout)

    # -- logs -----------------------------------------------------------------------------------

    def log_path(self, broker_id=1):
        return self.run_dir / f"broker-{broker_id}" / "broker.log"

    def log(self, broker_id=1):
        try:
            return self.log_path(broker_id).read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, broker_id=1, lines=LOG_TAIL_LINES):
        return "\n".join(self.log(broker_id).splitlines()[-lines:])

    # -- addresses and processes ----------------------------------------------------------------

    def port(self, broker_id):
        return self.port_base + 100 * (broker_id - 1)

    def address(self, broker_id):
        return f"{self.host}:{self.port(broker_id)}"

    def bootstrap_servers(self, without=()):
        """"host:port,..." of every broker except those in ``without``."""
        return ",".join(self.address(b) for b in self.ids() if b not in without)

    def http_address(self, broker_id):
        """host:port of the broker's HTTP admin listener (scripts/cluster: Kafka port + 2)."""
        return f"{self.host}:{self.port(broker_id) + 2}"

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
        return self.status().get(broker_id, (None, None, "stopped"))[1]

    def peak_rss_kib(self, broker_id):
        """VmHWM of the broker's process in KiB (None when it is not running)."""
        pid = self.pid(broker_id)
        if not pid:
            return None
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    # -- each broker's own view -----------------------------------------------------------------

    def request(self, broker_id, req, version, timeout=5.0):
        """Sends one kafka-python protocol request object (``kafka.protocol.*``) to exactly this
        broker over a fresh connection and returns the decoded response (no client logic: no
        retries, no metadata refresh, no leader routing)."""
        return kafkameta.request(self.address(broker_id), req, version, timeout=timeout,
                                 client_id="raftka-tests-raw", correlation_id=4242)

    def metadata(self, broker_id, topics=None, timeout=3.0):
        """Metadata v9 from this broker, as a plain dict (kafka-python's to_dict): brokers,
        controller_id, topics with partitions (leader_id, leader_epoch, replica_nodes,
        isr_nodes). topics=None asks for every topic."""
        return kafkameta.metadata(self.address(broker_id), topics, timeout=timeout,
                                  client_id="raftka-tests-raw")

    def partitions(self, broker_id, topic, timeout=3.0):
        """{partition: (leader, leader_epoch, replicas tuple, sorted isr tuple)} of one topic as
        this broker reports it, or None when the broker does not know the topic."""
        md = self.metadata(broker_id, [topic], timeout=timeout)
        return kafkameta.partitions(md, topic)

    def broker_ids_seen(self, broker_id, timeout=3.0):
        return sorted(b["node_id"] for b in self.metadata(broker_id, [], timeout=timeout)["brokers"])

    def wait_brokers(self, expected=None, via=None, timeout=30.0):
        """Polls until every broker in `via` (default: all) lists exactly `expected` brokers."""
        expected = sorted(expected or self.ids())
        via = via or self.ids()
        wait_until(lambda: all(self.broker_ids_seen(b) == expected for b in via), timeout,
                   f"brokers {via} to list brokers {expected} in Metadata", interval=0.1, error=self.error)

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

        return wait_until(settled, timeout, f"topic {topic} settled (full_isr={full_isr}, preferred={preferred})",
                          interval=0.1, error=self.error)

    def leader_of(self, topic, partition, via=None):
        b = via or self.running()[0]
        return self.partitions(b, topic)[partition][0]

    def controller(self, via=None):
        return self.metadata(via or self.running()[0], [])["controller_id"]
