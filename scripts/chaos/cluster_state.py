#!/usr/bin/env python3
"""State of the docker compose raftka cluster, seen from the host.

Used by scripts/chaos/* and scripts/docker-cluster; also handy on its own.

    cluster_state.py show [--json] [--internal]
        containers (status, health, restarts, networks), then each broker's answer to a
        Metadata request through its EXTERNAL listener: controller, brokers, and per partition
        leader / replicas / ISR. Brokers that do not answer within the timeout are listed.
    cluster_state.py wait ready [--brokers N]      a controller and N registered brokers
    cluster_state.py wait healed                   every container running and healthy, every
                                                   broker answers, all N brokers registered,
                                                   every partition has a leader and a full ISR
    cluster_state.py wait leader-moved TOPIC PARTITION OLD
                                                   the partition has a leader other than OLD
    cluster_state.py wait controller-moved OLD     a controller other than OLD
    cluster_state.py wait no-leader-on BROKER      BROKER leads no partition and is not controller
    cluster_state.py leader TOPIC PARTITION        print the leader's id
    cluster_state.py controller                    print the controller's id
  every `wait` takes --timeout SECONDS (default 60), polls every 0.1 s, prints the time it took
  and exits 1 with the last state when the deadline passes.

Environment (scripts/chaos/lib.sh sets these from scripts/docker-cluster's state file):
    RAFTKA_DOCKER_PROJECT      compose project name (default raftka)
    RAFTKA_EXTERNAL_HOST       host of the EXTERNAL listeners (default localhost)
    RAFTKA_EXTERNAL_PORT_1..3  their ports (default 19092, 19093, 19094)

Needs confluent-kafka (tests/python/requirements.txt) and the docker CLI.
"""

import argparse
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed, wait

try:
    from confluent_kafka.admin import AdminClient
except ImportError:
    sys.exit(
        f"scripts/chaos needs the Python Kafka client confluent-kafka, which {sys.executable} "
        "cannot import.\nInstall it with:  pip install confluent-kafka\n"
        "(or every test dependency: pip install -r tests/python/requirements.txt)"
    )

N_BROKERS = 3
PROJECT = os.environ.get("RAFTKA_DOCKER_PROJECT", "raftka")
HOST = os.environ.get("RAFTKA_EXTERNAL_HOST", "localhost")
PORTS = {
    i: int(os.environ.get(f"RAFTKA_EXTERNAL_PORT_{i}", f"{i}9092")) for i in range(1, N_BROKERS + 1)
}
# Destroying a librdkafka client waits for its broker threads, which can take seconds while a
# broker is paused or cut off: clients are dropped on this thread instead, and the process ends
# with os._exit, so neither a poll nor the exit waits for them.
_GRAVEYARD = queue.SimpleQueue()


def _reap():
    while True:
        _GRAVEYARD.get()  # the last reference goes here, and the client is destroyed


threading.Thread(target=_reap, daemon=True).start()
QUIET = logging.getLogger("raftka-chaos-librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


# --------------------------------------------------------------------------------------------
# containers


def containers():
    """{broker id: dict(status, health, restarts, networks, id)} for the project's brokers."""
    out = {}
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    if not ids:
        return out
    info = json.loads(
        subprocess.run(["docker", "inspect", *ids], check=True, capture_output=True, text=True).stdout
    )
    for c in info:
        service = c["Config"]["Labels"].get("com.docker.compose.service", "")
        if not service.startswith("broker"):
            continue
        try:
            bid = int(service[len("broker"):])
        except ValueError:
            continue
        state = c["State"]
        out[bid] = {
            "container": c["Name"].lstrip("/"),
            "status": state["Status"],  # running | paused | exited | restarting | created
            "health": (state.get("Health") or {}).get("Status", "-"),
            "restarts": c.get("RestartCount", 0),
            "networks": sorted((c["NetworkSettings"].get("Networks") or {}).keys()),
        }
    return out


# --------------------------------------------------------------------------------------------
# Kafka metadata through each EXTERNAL listener


def metadata_from(bid, timeout):
    """One broker's Metadata answer (through its own external listener) as a dict, or None."""
    admin = AdminClient({
        "bootstrap.servers": f"{HOST}:{PORTS[bid]}",
        "socket.timeout.ms": int(timeout * 1000),
        "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
        "reconnect.backoff.max.ms": 200,
        "logger": QUIET,
    })
    try:
        md = admin.list_topics(timeout=timeout)
    except Exception as e:  # KafkaException on timeout / transport failure
        return {"broker": bid, "error": str(e)}
    finally:
        _GRAVEYARD.put(admin)
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


def views(timeout=2.0, settle=None):
    """{broker id: metadata dict} asked in parallel, so a paused broker costs one timeout.
    With `settle`, returns at most `settle` seconds after the first good answer (brokers still
    silent then are reported as not answering): polling stays fast while one broker is down."""
    pool = ThreadPoolExecutor(max_workers=N_BROKERS)
    futures = {pool.submit(metadata_from, b, timeout): b for b in PORTS}
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


def snapshot(timeout=2.0, settle=None):
    vs = views(timeout, settle)
    return {"time": time.time(), "containers": containers(), "views": vs, "best": best(vs)}


# --------------------------------------------------------------------------------------------
# printing


def fmt_ids(ids):
    return "[" + ",".join(str(i) for i in ids) + "]"


def print_snapshot(s, internal=False, out=sys.stdout):
    w = lambda line="": print(line, file=out)  # noqa: E731
    w(f"  time {time.strftime('%H:%M:%S', time.localtime(s['time']))}")
    cs = s["containers"]
    for bid in sorted(PORTS):
        c = cs.get(bid)
        if c is None:
            w(f"  broker{bid}: no container")
            continue
        nets = ",".join(n.removeprefix(f"{PROJECT}_") for n in c["networks"]) or "NONE"
        w(f"  broker{bid}: {c['status']:<8} health={c['health']:<9} restarts={c['restarts']} "
          f"networks={nets}")
    for bid in sorted(PORTS):
        v = s["views"].get(bid)
        if v is None or "error" in v:
            why = (v or {}).get("error", "not asked")
            w(f"  via {HOST}:{PORTS[bid]} (broker{bid}): no answer ({why.splitlines()[0][:90]})")
        else:
            w(f"  via {HOST}:{PORTS[bid]} (broker{bid}): controller={v['controller']} "
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
        t = b["topics"][name]
        for pid in sorted(t["partitions"]):
            p = t["partitions"][pid]
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


# --------------------------------------------------------------------------------------------
# conditions for `wait`


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
    for bid in sorted(PORTS):
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


def wait_for(cond, timeout, label, since=None, need_all=False):
    """Polls cond(snapshot) until true or timeout; `since` (epoch seconds, e.g. when the fault
    was injected) is where the reported time is measured from."""
    start = time.monotonic()
    origin = time.time() if since is None else since
    deadline = start + timeout
    while True:
        s = snapshot(timeout=1.0, settle=None if need_all else 0.05)
        ok, why = cond(s)
        if ok:
            print(f"[chaos] {label}: {why} after {time.time() - origin:.1f}s")
            return 0
        if time.monotonic() >= deadline:
            print(f"[chaos] {label}: NOT reached within {timeout:.0f}s: {why}", file=sys.stderr)
            print_snapshot(s, out=sys.stderr)
            return 1
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sh = sub.add_parser("show")
    sh.add_argument("--json", action="store_true")
    sh.add_argument("--internal", action="store_true", help="also show __consumer_offsets")
    sh.add_argument("--title", default=None)
    sh.add_argument("--timeout", type=float, default=2.0,
                    help="seconds to wait for each broker's answer (default 2)")
    wt = sub.add_parser("wait")
    wt.add_argument("what", choices=["ready", "healed", "leader-moved", "controller-moved", "no-leader-on"])
    wt.add_argument("args", nargs="*")
    wt.add_argument("--timeout", type=float, default=60)
    wt.add_argument("--brokers", type=int, default=N_BROKERS)
    wt.add_argument("--since", type=float, default=None,
                    help="epoch seconds to measure the time from (default: now)")
    ld = sub.add_parser("leader")
    ld.add_argument("topic")
    ld.add_argument("partition", type=int)
    sub.add_parser("controller")
    a = ap.parse_args()

    if a.cmd == "show":
        s = snapshot(timeout=a.timeout)
        if a.json:
            json.dump(s, sys.stdout, indent=1, default=str)
            print()
        else:
            if a.title:
                print(f"---- {a.title} ----")
            print_snapshot(s, internal=a.internal)
        return 0
    if a.cmd == "leader":
        p = partition_of(snapshot(), a.topic, a.partition)
        if p is None:
            print(f"{a.topic}-{a.partition} not found in metadata", file=sys.stderr)
            return 1
        print(p["leader"])
        return 0
    if a.cmd == "controller":
        b = snapshot()["best"]
        if b is None:
            print("no broker answers Metadata", file=sys.stderr)
            return 1
        print(b["controller"])
        return 0
    # wait
    need = {"ready": 0, "healed": 0, "leader-moved": 3, "controller-moved": 1, "no-leader-on": 1}[a.what]
    if len(a.args) != need:
        ap.error(f"wait {a.what} takes {need} argument(s)")
    if a.what == "ready":
        cond = lambda s: cond_ready(s, a.brokers)  # noqa: E731
    elif a.what == "healed":
        cond = lambda s: cond_healed(s, a.brokers)  # noqa: E731
    elif a.what == "leader-moved":
        topic, part, old = a.args[0], int(a.args[1]), int(a.args[2])
        cond = lambda s: cond_leader_moved(s, topic, part, old)  # noqa: E731
    elif a.what == "controller-moved":
        cond = lambda s: cond_controller_moved(s, int(a.args[0]))  # noqa: E731
    else:
        cond = lambda s: cond_no_leader_on(s, int(a.args[0]))  # noqa: E731
    label = f"{a.what} {' '.join(a.args)}".strip()
    return wait_for(cond, a.timeout, label, since=a.since, need_all=a.what == "healed")


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
