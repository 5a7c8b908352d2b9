"""The docker compose cluster's state as seen from the host (formerly
scripts/chaos/cluster_state.py): the broker containers (docker inspect, by compose labels) and
each broker's own answer to a Metadata request through its EXTERNAL listener, plus the
conditions the fault commands wait for (``raftkit.chaos.faults``) and a small CLI
(``scripts/chaos/state``, ``scripts/docker-cluster``'s readiness check).

    state [show] [--json] [--internal] [--title T] [--timeout S]
        containers (status, health, restarts, networks), then each broker's answer to a
        Metadata request through its EXTERNAL listener: controller, brokers, and per partition
        leader / replicas / ISR. Brokers that do not answer within the timeout are listed.
    state wait ready [--brokers N]      a controller and N registered brokers
    state wait healed                   every container running and healthy, every broker
                                        answers, all N brokers registered, every partition has
                                        a leader and a full ISR
    state wait leader-moved TOPIC PARTITION OLD   the partition has a leader other than OLD
    state wait controller-moved OLD     a controller other than OLD
    state wait no-leader-on BROKER      BROKER leads no partition and is not controller
    state leader TOPIC PARTITION        print the leader's id
    state controller                    print the controller's id
  every `wait` takes --timeout SECONDS (default 60) and --since EPOCH (where the reported time
  is measured from), polls every 0.1 s, prints the time it took and exits 1 with the last
  state when the deadline passes.

Where the cluster is (``load_target``): the compose project is COMPOSE_PROJECT_NAME, else
RAFTKA_DOCKER_PROJECT, else raftka; ``.run/docker/<project>.env`` (written by
``scripts/docker-cluster up``) is read and its settings win over the environment, as sourcing
it did: RAFTKA_EXTERNAL_HOST (default localhost), RAFTKA_EXTERNAL_PORT_1..3 (default 19092,
19093, 19094), RAFTKA_CLIENT_CONFIG (a secured cluster's client settings, ``clientconf``).

Needs confluent-kafka (imported when a broker is first asked) and the docker CLI. Depends on
``clientconf`` and ``docker`` of this kit; the conditions are pure functions of a snapshot.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import shlex
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from pathlib import Path

from .. import REPO, clientconf
from ..docker import broker_containers, docker

N_BROKERS = 3
DEFAULT_PROJECT = "raftka"


class ClientMissing(RuntimeError):
    """confluent-kafka cannot be imported."""


def require_client():
    """ClientMissing (saying how to install it) unless confluent-kafka imports."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        raise ClientMissing(
            f"scripts/chaos needs the Python Kafka client confluent-kafka, which {sys.executable} "
            "cannot import.\nInstall it with:  pip install confluent-kafka\n"
            "(or every test dependency: pip install -r tests/python/requirements.txt)") from None


# --------------------------------------------------------------------------------------------
# where the cluster is


def parse_env_file(text):
    """{KEY: value} of a state file of ``KEY=VALUE`` lines as bash's ``printf %q`` wrote them
    (quotes and backslash escapes undone; ``export`` prefixes, blanks and ``#`` comments
    ignored)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier():
            continue
        try:
            words = shlex.split(value, comments=True)
            out[key] = " ".join(words)
        except ValueError:  # an unbalanced quote: keep the text as it is
            out[key] = value
    return out


class Target:
    """Where the compose cluster is: its project and its brokers' EXTERNAL listeners."""

    def __init__(self, project=DEFAULT_PROJECT, host="localhost", ports=None, n=N_BROKERS):
        self.project = project
        self.host = host
        self.ports = ports or {i: 19091 + i for i in range(1, n + 1)}

    @property
    def brokers(self):
        return sorted(self.ports)

    def address(self, b):
        return f"{self.host}:{self.ports[b]}"

    @property
    def bootstrap(self):
        return ",".join(self.address(b) for b in self.brokers)

    def __repr__(self):
        return f"Target({self.project!r}, {self.bootstrap})"


def project_name(environ=None):
    environ = os.environ if environ is None else environ
    return environ.get("COMPOSE_PROJECT_NAME") or environ.get("RAFTKA_DOCKER_PROJECT") or DEFAULT_PROJECT


def load_target(environ=None, repo=REPO, n=N_BROKERS):
    """The Target of the project named by the environment; the settings of
    ``<repo>/.run/docker/<project>.env`` are put into ``environ`` first (they win, as sourcing
    the file did), and RAFTKA_DOCKER_PROJECT is set to the project, so clients of this process
    (``clientconf``: RAFTKA_CLIENT_CONFIG) see the same cluster."""
    environ = os.environ if environ is None else environ
    project = project_name(environ)
    state_file = Path(repo) / ".run" / "docker" / f"{project}.env"
    if state_file.exists():
        environ.update(parse_env_file(state_file.read_text()))
    environ["RAFTKA_DOCKER_PROJECT"] = project
    host = environ.get("RAFTKA_EXTERNAL_HOST") or "localhost"
    ports = {}
    for i in range(1, n + 1):
        raw = environ.get(f"RAFTKA_EXTERNAL_PORT_{i}") or str(19091 + i)
        try:
            ports[i] = int(raw)
        except ValueError:
            raise ValueError(f"RAFTKA_EXTERNAL_PORT_{i} is not a port number: {raw!r}") from None
    return Target(project, host, ports, n)


# --------------------------------------------------------------------------------------------
# pure functions of a snapshot: which view to trust, the conditions waited for


def fmt_ids(ids):
    return "[" + ",".join(str(i) for i in ids) + "]"


def best(vs):
    """The view to trust for leaders/ISR: the controller's own answer if it gave one, else the
    answer naming the most frequent controller (a partitioned broker's view can be stale)."""
    good = [v for v in vs.values() if "error" not in v]
    if not good:
        return None
    for v in good:
        if v["controller"] == v["answered_by"]:
            return v
    counts = {}
    for v in good:
        counts[v["controller"]] = counts.get(v["controller"], 0) + 1
    top = max(counts, key=lambda c: (counts[c], c != -1))
    return next(v for v in good if v["controller"] == top)


def cond_ready(s, n):
    b = s["best"]
    if b is None:
        return False, "no broker answers Metadata"
    if b["controller"] < 0:
        return False, "no controller yet"
    if len(b["brokers"]) < n:
        return False, f"{len(b['brokers'])} of {n} brokers registered"
    return True, f"controller {b['controller']}, {len(b['brokers'])} brokers"


def cond_healed(s, n):
    for bid in range(1, n + 1):
        c = s["containers"].get(bid)
        if c is None or c["status"] != "running":
            return False, f"broker{bid} container is {c['status'] if c else 'missing'}"
        if c["health"] not in ("healthy", "-"):
            return False, f"broker{bid} is {c['health']}"
        v = s["views"].get(bid)
        if v is None or "error" in v:
            return False, f"broker{bid} does not answer Metadata"
    ok, why = cond_ready(s, n)
    if not ok:
        return ok, why
    controllers = {v["controller"] for v in s["views"].values()}
    if len(controllers) != 1:
        return False, f"brokers disagree on the controller: {sorted(controllers)}"
    for name, t in s["best"]["topics"].items():
        for pid, p in t["partitions"].items():
            if p["leader"] < 0:
                return False, f"{name}-{pid} has no leader"
            if sorted(p["isr"]) != sorted(p["replicas"]):
                return False, f"{name}-{pid} isr {fmt_ids(p['isr'])} != replicas {fmt_ids(p['replicas'])}"
    return True, "all brokers up, every partition has a leader and a full ISR"


def partition_of(s, topic, partition):
    b = s["best"]
    if b is None:
        return None
    t = b["topics"].get(topic)
    if t is None:
        return None
    return t["partitions"].get(partition)


def cond_leader_moved(s, topic, partition, old):
    p = partition_of(s, topic, partition)
    if p is None:
        return False, f"{topic}-{partition} not in metadata"
    if p["leader"] >= 0 and p["leader"] != old:
        return True, f"{topic}-{partition} leader {old} -> {p['leader']}, isr {fmt_ids(p['isr'])}"
    return False, f"{topic}-{partition} leader is {p['leader']}"


def cond_controller_moved(s, old):
    b = s["best"]
    if b is None:
        return False, "no broker answers Metadata"
    if b["controller"] >= 0 and b["controller"] != old:
        return True, f"controller {old} -> {b['controller']}"
    return False, f"controller is {b['controller']}"


def cond_no_leader_on(s, broker):
    b = s["best"]
    if b is None:
        return False, "no broker answers Metadata"
    if b["controller"] == broker:
        return False, f"broker {broker} is still the controller"
    for name, t in b["topics"].items():
        for pid, p in t["partitions"].items():
            if p["leader"] == broker:
                return False, f"broker {broker} still leads {name}-{pid}"
    return True, f"broker {broker} leads nothing, controller {b['controller']}"


#: wait WHAT -> (number of arguments, condition builder(args, brokers) -> cond(snapshot))
CONDITIONS = {
    "ready": (0, lambda args, n: lambda s: cond_ready(s, n)),
    "healed": (0, lambda args, n: lambda s: cond_healed(s, n)),
    "leader-moved": (3, lambda args, n: lambda s: cond_leader_moved(s, args[0], int(args[1]), int(args[2]))),
    "controller-moved": (1, lambda args, n: lambda s: cond_controller_moved(s, int(args[0]))),
    "no-leader-on": (1, lambda args, n: lambda s: cond_no_leader_on(s, int(args[0]))),
}


# --------------------------------------------------------------------------------------------
# asking the cluster

# Destroying a librdkafka client waits for its broker threads, which can take seconds while a
# broker is paused or cut off: clients are dropped on this thread instead, and the CLIs end
# with os._exit (``raftkit.chaos.faults.run``), so neither a poll nor the exit waits for them.
_GRAVEYARD = queue.SimpleQueue()
_REAPER = []
QUIET = logging.getLogger("raftka-chaos-librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def _reap():
    while True:
        _GRAVEYARD.get()  # the last reference goes here, and the client is destroyed


def _bury(client):
    if not _REAPER:
        _REAPER.append(threading.Thread(target=_reap, daemon=True, name="librdkafka-reaper"))
        _REAPER[0].start()
    _GRAVEYARD.put(client)


class ClusterState:
    """Reads the compose cluster at ``target``: containers through ``run`` (a docker command
    runner, ``raftkit.docker.docker``; a test passes a fake), Metadata through each broker's
    EXTERNAL listener with confluent-kafka's AdminClient. Prints to ``out`` (default stdout)."""

    def __init__(self, target, run=docker, out=None):
        self.target = target
        self.run = run
        self._out = out

    @property
    def out(self):
        return self._out or sys.stdout

    def print(self, line="", err=False):
        print(line, file=sys.stderr if err else self.out, flush=True)

    # ---- containers

    def containers(self):
        """{broker id: dict(container, status, health, restarts, networks)} of the project."""
        out = {}
        for bid, c in broker_containers(self.target.project, run=self.run).items():
            state = c["State"]
            out[bid] = {
                "container": c["Name"].lstrip("/"),
                "status": state["Status"],  # running | paused | exited | restarting | created
                "health": (state.get("Health") or {}).get("Status", "-"),
                "restarts": c.get("RestartCount", 0),
                "networks": sorted((c["NetworkSettings"].get("Networks") or {}).keys()),
            }
        return out

    # ---- Kafka metadata through each EXTERNAL listener

    def metadata_from(self, bid, timeout):
        """One broker's Metadata answer (through its own external listener) as a dict, or a
        dict with "error"."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(clientconf.secure({
            "bootstrap.servers": self.target.address(bid),
            "socket.timeout.ms": int(timeout * 1000),
            "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
            "reconnect.backoff.max.ms": 200,
            "logger": QUIET,
        }))
        try:
            md = admin.list_topics(timeout=timeout)
        except Exception as e:  # KafkaException on timeout / transport failure
            return {"broker": bid, "error": str(e)}
        finally:
            _bury(admin)
            del admin
        topics = {}
        for name, t in md.topics.items():
            parts = {}
            for pid, p in t.partitions.items():
                parts[pid] = {
                    "leader": p.leader,
                    "replicas": list(p.replicas),
                    "isr": list(p.isrs),
                    "error": str(p.error) if p.error else None,
                }
            topics[name] = {"partitions": parts, "error": str(t.error) if t.error else None}
        return {
            "broker": bid,
            # -1 = the bootstrap connection, i.e. the broker behind the port we asked
            "answered_by": md.orig_broker_id if md.orig_broker_id >= 0 else bid,
            "controller": md.controller_id,
            "brokers": {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()},
            "topics": topics,
        }

    def views(self, timeout=2.0, settle=None):
        """{broker id: metadata dict} asked in parallel, so a paused broker costs one timeout.
        With ``settle``, returns at most ``settle`` seconds after the first good answer (brokers
        still silent then are reported as not answering): polling stays fast while one broker
        is down."""
        brokers = self.target.brokers
        pool = ThreadPoolExecutor(max_workers=len(brokers))
        futures = {pool.submit(self.metadata_from, b, timeout): b for b in brokers}
        out = {}
        first_ok = None
        for f in as_completed(futures):
            r = f.result()
            out[r["broker"]] = r
            if "error" not in r and first_ok is None:
                first_ok = time.monotonic()
                if settle is not None:
                    break
        if settle is not None and first_ok is not None:
            rest = [f for f in futures if not f.done()]
            done, _ = wait(rest, timeout=max(0.0, first_ok + settle - time.monotonic()))
            for f in done:
                r = f.result()
                out[r["broker"]] = r
            for f, b in futures.items():
                if b not in out:
                    out[b] = {"broker": b, "error": "no answer yet"}
        pool.shutdown(wait=False)
        return out

    def snapshot(self, timeout=2.0, settle=None):
        vs = self.views(timeout, settle)
        return {"time": time.time(), "containers": self.containers(), "views": vs, "best": best(vs)}

    # ---- printing

    def print_snapshot(self, s, internal=False, err=False):
        w = lambda line="": self.print(line, err=err)  # noqa: E731
        t = self.target
        w(f"  time {time.strftime('%H:%M:%S', time.localtime(s['time']))}")
        cs = s["containers"]
        for bid in t.brokers:
            c = cs.get(bid)
            if c is None:
                w(f"  broker{bid}: no container")
                continue
            nets = ",".join(n.removeprefix(f"{t.project}_") for n in c["networks"]) or "NONE"
            w(f"  broker{bid}: {c['status']:<8} health={c['health']:<9} restarts={c['restarts']} "
              f"networks={nets}")
        for bid in t.brokers:
            v = s["views"].get(bid)
            if v is None or "error" in v:
                why = (v or {}).get("error", "not asked")
                w(f"  via {t.address(bid)} (broker{bid}): no answer ({why.splitlines()[0][:90]})")
            else:
                w(f"  via {t.address(bid)} (broker{bid}): controller={v['controller']} "
                  f"brokers={fmt_ids(sorted(v['brokers']))}")
        b = s["best"]
        if b is None:
            w("  no broker answered Metadata")
            return
        w(f"  controller: {b['controller']}   (view of broker {b['answered_by']})")
        shown = 0
        hidden = 0
        for name in sorted(b["topics"]):
            if name.startswith("__") and not internal:
                hidden += 1
                continue
            tp = b["topics"][name]
            for pid in sorted(tp["partitions"]):
                p = tp["partitions"][pid]
                flag = "" if sorted(p["isr"]) == sorted(p["replicas"]) else "  (under-replicated)"
                if p["leader"] == -1:
                    flag = "  (NO LEADER)"
                w(f"  {name}-{pid}: leader={p['leader']} replicas={fmt_ids(p['replicas'])} "
                  f"isr={fmt_ids(p['isr'])}{flag}")
                shown += 1
        if hidden:
            w(f"  ({hidden} internal topic(s) not shown; --internal shows them)")
        if not shown:
            w("  (no topics)")

    def show(self, title=None, timeout=2.0, internal=False):
        s = self.snapshot(timeout=timeout)
        if title:
            self.print(f"---- {title} ----")
        self.print_snapshot(s, internal=internal)
        return s

    # ---- waiting

    def wait_for(self, cond, timeout, label, since=None, need_all=False):
        """Polls cond(snapshot) until true (True) or ``timeout`` seconds pass (False, with the
        last state printed to stderr); ``since`` (epoch seconds, e.g. when the fault was
        injected) is where the reported time is measured from."""
        start = time.monotonic()
        origin = time.time() if since is None else since
        deadline = start + timeout
        while True:
            s = self.snapshot(timeout=1.0, settle=None if need_all else 0.05)
            ok, why = cond(s)
            if ok:
                self.print(f"[chaos] {label}: {why} after {time.time() - origin:.1f}s")
                return True
            if time.monotonic() >= deadline:
                self.print(f"[chaos] {label}: NOT reached within {timeout:.0f}s: {why}", err=True)
                self.print_snapshot(s, err=True)
                return False
            time.sleep(0.1)

    def wait(self, what, *args, timeout=60.0, since=None, brokers=None):
        """``wait WHAT ARGS``: one of CONDITIONS (ValueError for a wrong one or wrong count)."""
        if what not in CONDITIONS:
            raise ValueError(f"unknown condition {what!r}; one of {', '.join(CONDITIONS)}")
        need, build = CONDITIONS[what]
        if len(args) != need:
            raise ValueError(f"wait {what} takes {need} argument(s), got {len(args)}")
        cond = build([str(a) for a in args], brokers or len(self.target.brokers))
        label = f"{what} {' '.join(str(a) for a in args)}".strip()
        return self.wait_for(cond, timeout, label, since=since, need_all=what == "healed")

    def leader(self, topic, partition):
        """The partition's leader id from the trusted view, or None when it is not there."""
        p = partition_of(self.snapshot(), topic, partition)
        return None if p is None else p["leader"]

    def controller(self):
        """The controller id from the trusted view (-1: none), or None when no broker answers."""
        b = self.snapshot()["best"]
        return None if b is None else b["controller"]


# --------------------------------------------------------------------------------------------
# CLI (scripts/chaos/state)

SUBCOMMANDS = ("show", "wait", "leader", "controller")


def parser(prog="scripts/chaos/state"):
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sh = sub.add_parser("show", help="(the default) containers, every broker's view, leaders and ISR")
    sh.add_argument("--json", action="store_true", help="machine-readable: containers, every view, the trusted view")
    sh.add_argument("--internal", action="store_true", help="also show __consumer_offsets")
    sh.add_argument("--title", default=None)
    sh.add_argument("--timeout", type=float, default=2.0,
                    help="seconds to wait for each broker's answer (default 2)")
    wt = sub.add_parser("wait", help="poll a condition with a deadline")
    wt.add_argument("what", choices=list(CONDITIONS))
    wt.add_argument("args", nargs="*")
    wt.add_argument("--timeout", type=float, default=60)
    wt.add_argument("--brokers", type=int, default=N_BROKERS)
    wt.add_argument("--since", type=float, default=None,
                    help="epoch seconds to measure the time from (default: now)")
    ld = sub.add_parser("leader", help="print the partition's leader id")
    ld.add_argument("topic")
    ld.add_argument("partition", type=int)
    sub.add_parser("controller", help="print the controller's id")
    return ap


def main(argv, prog="scripts/chaos/state", state=None):
    """``state [show] [--json] [--internal] | wait ... | leader T P | controller``: exit code."""
    argv = list(argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["show", *argv]  # `state`, `state --json`: show
    ap = parser(prog)
    a = ap.parse_args(argv)
    if a.cmd == "wait":
        need = CONDITIONS[a.what][0]
        if len(a.args) != need:
            ap.error(f"wait {a.what} takes {need} argument(s)")
    if state is None:
        require_client()
        state = ClusterState(load_target())
    if a.cmd == "show":
        if a.json:
            s = state.snapshot(timeout=a.timeout)
            state.print(json.dumps(s, indent=1, default=str))
        else:
            state.show(a.title, timeout=a.timeout, internal=a.internal)
        return 0
    if a.cmd == "leader":
        leader = state.leader(a.topic, a.partition)
        if leader is None:
            state.print(f"{a.topic}-{a.partition} not found in metadata", err=True)
            return 1
        state.print(str(leader))
        return 0
    if a.cmd == "controller":
        ctl = state.controller()
        if ctl is None:
            state.print("no broker answers Metadata", err=True)
            return 1
        state.print(str(ctl))
        return 0
    ok = state.wait(a.what, *a.args, timeout=a.timeout, since=a.since, brokers=a.brokers)
    return 0 if ok else 1
