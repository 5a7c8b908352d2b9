"""scripts/chaos/verify: the run (set up, load, faults, heal, catch up, check, summary).

See the usage text in scripts/chaos/verify and scripts/chaos/VERIFY.md.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from .. import clientconf, kafkameta
from . import checker
from .backends import KINDS, BackendError, DockerBackend, ProcessBackend
from .history import Health, History
from .nemesis import Nemesis
from .workload import CommittedPoller, ConsumerWorker, ProducerWorker, Recorder, end_offsets, final_read

REPO = Path(__file__).resolve().parents[3]
now = time.monotonic


def log(msg):
    print(f"[verify {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _pair(s):
    a, b = (float(x) for x in s.split(","))
    if not 0 <= a <= b:
        raise argparse.ArgumentTypeError(f"want MIN,MAX with 0 <= MIN <= MAX, got {s}")
    return a, b


def parse_args(argv):
    doc = (sys.modules["__main__"].__doc__ or "") if hasattr(sys.modules.get("__main__"), "__doc__") else ""
    ap = argparse.ArgumentParser(prog="scripts/chaos/verify", description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60, help="seconds of faults (default 60)")
    ap.add_argument("--faults", default="kill,pause,partition",
                    help="comma-separated fault kinds: kill, pause, partition; 'none' for none "
                         "(default all three)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the fault schedule and key choice "
                    "(default: random, printed)")
    ap.add_argument("--target", choices=["process", "docker"], default="process")
    ap.add_argument("--bootstrap", help="Kafka bootstrap servers, broker 1 first (process: default from "
                    "the cluster; docker: 127.0.0.1 and the EXTERNAL ports of .run/docker/<project>.env, "
                    "else 19092,19093,19094)")
    ap.add_argument("--run-dir", help="process: use the scripts/cluster cluster in this RAFTKA_RUN_DIR "
                    "instead of starting one")
    ap.add_argument("--brokers", type=int, default=3, help="process: brokers of the cluster it starts (3)")
    ap.add_argument("--docker-project", default=os.environ.get("COMPOSE_PROJECT_NAME", "raftka"),
                    help="docker: compose project (default COMPOSE_PROJECT_NAME or raftka)")
    ap.add_argument("--containers", help="docker: broker containers in node.id order (default: found by "
                    "compose labels, services broker1..3 of the project)")
    ap.add_argument("--docker-network", help="docker: the network to disconnect brokers from (default: the "
                    "project's compose network, found by label)")
    ap.add_argument("--topic", help="test topic (default verify-<random>; created)")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--replication-factor", type=int, default=3)
    ap.add_argument("--min-insync", type=int, default=2, help="min.insync.replicas of the topic (2)")
    ap.add_argument("--keys", type=int, default=32, help="number of keys k0..k<N-1> (32)")
    ap.add_argument("--rate", type=float, default=200, help="records per second produced (200)")
    ap.add_argument("--consumers", type=int, default=2, help="members of the consumer group (2)")
    ap.add_argument("--interval", type=_pair, default=(3.0, 10.0), metavar="MIN,MAX",
                    help="quiet seconds before each fault (3,10)")
    ap.add_argument("--hold", type=_pair, default=(2.0, 8.0), metavar="MIN,MAX",
                    help="seconds each fault lasts (2,8)")
    ap.add_argument("--heal-timeout", type=float, default=120, help="seconds to wait for the cluster to heal")
    ap.add_argument("--tail", type=float, default=5, help="seconds of load after the heal (5)")
    ap.add_argument("--out", help="directory for history.json and summary.txt (default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="process: keep the cluster's run directory")
    ap.add_argument("--check", metavar="HISTORY", help="only re-run the checker on a saved history.json")
    ap.add_argument("--client-config", metavar="FILE",
                    help="librdkafka settings (key=value lines) for every client, e.g. security.protocol="
                         "SASL_SSL and its ssl./sasl. settings for a secured cluster (default: "
                         "$RAFTKA_CLIENT_CONFIG; the file a secured cluster wrote: "
                         "<run dir>/secure/client.properties, .run/docker/<project>.client.properties)")
    ap.add_argument("--workload", choices=["plain", "txn"], default="plain",
                    help="plain: idempotent producer + consumer group (default); txn: a transactional "
                         "consume-transform-produce pipeline with a read_committed reader "
                         "(raftkit/chaos/txn.py)")
    args = ap.parse_args(argv)
    if args.client_config:
        os.environ[clientconf.ENV] = str(Path(args.client_config).resolve())
    if args.faults.strip() in ("", "none"):
        args.kinds = []
    else:
        args.kinds = [k.strip() for k in args.faults.split(",") if k.strip()]
        bad = [k for k in args.kinds if k not in KINDS]
        if bad:
            ap.error(f"unknown fault kind(s) {bad}; known: {', '.join(KINDS)}")
    return args


# ---------------------------------------------------------------------------------------------


def make_backend(args):
    if args.target == "docker":
        found = REPO / ".run" / "docker" / f"{args.docker_project}.client.properties"
        if found.exists() and clientconf.ENV not in os.environ:
            os.environ[clientconf.ENV] = str(found)
        containers = [c.strip() for c in (args.containers or "").split(",") if c.strip()] or None
        return DockerBackend(args.bootstrap or docker_bootstrap(args.docker_project), containers,
                             args.docker_network, project=args.docker_project, log=log)
    env = {}
    if "RAFTKA_BIN" not in os.environ:
        for cand in ("target/release/raftka", "target/debug/raftka"):
            if (REPO / cand).exists():
                env["RAFTKA_BIN"] = str(REPO / cand)
                break
    run_dir = args.run_dir
    if run_dir is None and args.bootstrap:
        run_dir = os.environ.get("RAFTKA_RUN_DIR") or str(REPO / ".run" / "cluster")
    found = clientconf.find_for_run_dir(run_dir)
    if found and clientconf.ENV not in os.environ:
        os.environ[clientconf.ENV] = found
    return ProcessBackend(REPO, run_dir=run_dir, n=args.brokers, keep=args.keep, env=env, log=log,
                          bootstrap=args.bootstrap)


def docker_bootstrap(project):
    """The EXTERNAL listeners scripts/docker-cluster publishes: 127.0.0.1:<RAFTKA_EXTERNAL_PORT_i>
    from .run/docker/<project>.env (or the environment), default 19092, 19093, 19094."""
    ports = {i: os.environ.get(f"RAFTKA_EXTERNAL_PORT_{i}", str(p)) for i, p in ((1, 19092), (2, 19093), (3, 19094))}
    state = REPO / ".run" / "docker" / f"{project}.env"
    if state.exists():
        for line in state.read_text().splitlines():
            for i in ports:
                if line.startswith(f"RAFTKA_EXTERNAL_PORT_{i}="):
                    ports[i] = line.split("=", 1)[1].strip().strip("'\"")
    return ",".join(f"127.0.0.1:{ports[i]}" for i in sorted(ports))


def create_topic(bootstrap, topic, partitions, rf, min_isr):
    from confluent_kafka.admin import AdminClient, NewTopic

    a = AdminClient(clientconf.secure({"bootstrap.servers": bootstrap}))
    fut = a.create_topics([NewTopic(topic, partitions, rf, config={"min.insync.replicas": str(min_isr)})],
                          operation_timeout=30)[topic]
    fut.result(60)


def cluster_problems(backend, topics):
    """[] when every broker is up, lists every broker in Metadata, and reports every partition
    of ``topics`` with a leader and a full ISR; else what is wrong."""
    problems = []
    for b in backend.brokers:
        if not backend.broker_up(b):
            problems.append(f"broker {b} is not running")
    if problems:
        return problems
    want = sorted(backend.brokers)
    views = {}
    for b in backend.brokers:
        try:
            md = kafkameta.metadata(backend.address(b), topics, timeout=3)
        except Exception as e:  # noqa: BLE001
            problems.append(f"broker {b} does not answer Metadata ({e})")
            continue
        seen = sorted(x["node_id"] for x in md["brokers"])
        if seen != want:
            problems.append(f"broker {b} lists brokers {seen}")
        for t in topics:
            parts = kafkameta.partitions(md, t)
            if parts is None:
                if t != "__consumer_offsets":
                    problems.append(f"broker {b} does not know topic {t}")
                continue
            views[(b, t)] = parts
            for p, (leader, _e, replicas, isr) in sorted(parts.items()):
                if leader < 0:
                    problems.append(f"broker {b}: {t}/{p} has no leader")
                elif set(isr) != set(replicas):
                    problems.append(f"broker {b}: {t}/{p} ISR {list(isr)} of replicas {list(replicas)}")
    return problems


def wait_healed(backend, topics, timeout):
    t0 = now()
    problems = ["never checked"]
    while now() - t0 < timeout:
        problems = cluster_problems(backend, topics)
        if not problems:
            return Health(True, "", now() - t0)
        time.sleep(0.5)
    return Health(False, "; ".join(problems[:10]), now() - t0)


def wait_until(pred, timeout, interval=0.2):
    deadline = now() + timeout
    while now() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()


# ---------------------------------------------------------------------------------------------


def run(args):
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    print(f"seed {seed} (replay with --seed {seed})", flush=True)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix=f"raftka-verify-{seed}-"))
    out.mkdir(parents=True, exist_ok=True)
    topic = args.topic or f"verify-{uuid.uuid4().hex[:8]}"
    group = f"{topic}-group"
    h = History(topic=topic, partitions=args.partitions, seed=seed, wall_t0=time.time(), t0=now(),
                config={k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()})
    rec = Recorder(h)
    backend = make_backend(args)
    workers = []
    try:
        backend.start()
        kinds = []
        for k in args.kinds:
            reason = backend.kinds().get(k)
            if reason:
                print(f"fault kind {k}: SKIPPED, not available on the {backend.name} backend: {reason}",
                      flush=True)
            else:
                kinds.append(k)
        h.config["kinds_used"] = kinds
        bootstrap = backend.bootstrap
        log(f"bootstrap {bootstrap}; topic {topic} ({args.partitions} partitions, RF {args.replication_factor}, "
            f"min.insync.replicas {args.min_insync}); group {group}")
        create_topic(bootstrap, topic, args.partitions, args.replication_factor, args.min_insync)
        health = wait_healed(backend, [topic], 60)
        if not health.healed:
            raise BackendError(f"the topic never settled: {health.detail}")

        consumers = [ConsumerWorker(rec, bootstrap, topic, group, f"consumer-{i + 1}", log=log)
                     for i in range(args.consumers)]
        producer = ProducerWorker(rec, bootstrap, topic, args.keys, args.rate, seed, log=log)
        poller = CommittedPoller(rec, bootstrap, topic, args.partitions, group)
        workers = [*consumers, producer, poller]
        for w in workers:
            w.start()
        if not wait_until(lambda: h.acks and len({a.partition for a in h.assigns}) >= args.partitions, 60):
            raise BackendError("no acknowledged write or no full group assignment within 60 s of starting")
        log("load running: acks flowing, every partition assigned")

        nemesis = Nemesis(backend, rec, topic, kinds, seed, args.duration, args.interval, args.hold, log=log)
        t_faults = now()
        if kinds:
            nemesis.start()
        while now() - t_faults < args.duration and (not kinds or nemesis.is_alive()):
            time.sleep(min(10, max(0.1, args.duration - (now() - t_faults))))
            with rec.lock:
                log(f"progress: {now() - t_faults:.0f}/{args.duration:.0f}s, acks {len(h.acks)}, "
                    f"produce errors {len(h.produce_errors)}, reads {len(h.reads)}, faults {len(h.faults)}")
        if kinds:
            nemesis.stop()
            if nemesis.error:
                log(f"the nemesis stopped on an error: {nemesis.error!r}")
                h.config["nemesis_error"] = repr(nemesis.error)
        backend.heal_all()
        log("faults over; waiting for the cluster to heal")
        h.health = wait_healed(backend, [topic, "__consumer_offsets"], args.heal_timeout)
        log(f"healed: {h.health.healed} after {h.health.seconds:.1f}s {h.health.detail}")
        time.sleep(args.tail)
        producer.stop()
        h.config["producer_fatal_errors"] = producer.fatal_errors
        log(f"producer stopped; {len(h.acks)} acks; {producer.producers} producer(s) used")

        # consumers catch up to the end of every partition
        try:
            marks = end_offsets(bootstrap, topic, args.partitions)
        except Exception as e:  # noqa: BLE001
            log(f"no end offsets for the catch-up ({e}); waiting 30 s instead")
            marks = None

        def caught_up():
            if marks is None:
                return False
            with rec.lock:
                best = {}
                for c in consumers:
                    for p, o in c.last_read.items():
                        best[p] = max(best.get(p, -1), o)
            return all(best.get(p, -1) >= hi - 1 for p, (_lo, hi) in marks.items() if hi > 0)

        if not wait_until(caught_up, 60 if marks else 30):
            log("consumers did not catch up within the limit (the final read still checks everything)")
        for c in consumers:
            c.stop()
        poller.stop()
        log("reading every partition back (final read)")
        h.final = final_read(bootstrap, topic, args.partitions, log=log)
    except KeyboardInterrupt:
        log("interrupted")
        h.health = h.health or Health(False, "interrupted")
    except Exception as e:  # noqa: BLE001 - the history is still saved and checked
        log(f"run aborted: {e!r}")
        h.health = h.health or Health(False, f"run aborted: {e}")
    finally:
        for w in workers:
            w.stop_ev.set()
        try:
            backend.heal_all()
        except Exception as e:  # noqa: BLE001
            log(f"heal_all failed: {e!r}")
    hist_path = out / "history.json"
    with rec.lock:
        h.dump(hist_path)
    report = checker.check(h)
    text = summary(h, report, backend.name, hist_path)
    (out / "summary.txt").write_text(text)
    print(text, flush=True)
    if not report.ok and isinstance(backend, ProcessBackend) and backend.own:
        backend.keep = True  # keep the broker logs of a failed run
    try:
        backend.close()
    except Exception as e:  # noqa: BLE001
        log(f"teardown failed: {e!r}")
    return 0 if report.ok else 1


def summary(h, report, target, hist_path):
    s = report.stats
    lines = []
    cfg = h.config or {}
    lines.append(f"raftka chaos verify: seed {h.seed}, target {target}, duration {cfg.get('duration')} s, "
                 f"faults {','.join(cfg.get('kinds_used', [])) or 'none'}, topic {h.topic} "
                 f"({h.partitions} partitions)")
    lines.append(f"history: {hist_path}")
    lines.append(f"records: sent {s['sent']}, acknowledged {s['acknowledged']}, failed {s['failed (indeterminate)']} "
                 f"(indeterminate; {s['failed but present']} of them in the log), unacknowledged but in the log "
                 f"{s['unacknowledged but present']}, final read {s['final read records']}")
    lines.append(f"consumers: reads {s['consumer reads']} ({s['distinct values read by consumers']} distinct), "
                 f"assignments {s['assignments']}, commits acknowledged {s['commits acknowledged']}, "
                 f"failed {s['commits failed']}, committed-offset polls {s['committed-offset polls']}")
    unanswered = s["sent"] - s["acknowledged"] - s["failed (indeterminate)"]
    if unanswered:
        lines.append(f"  {unanswered} record(s) never answered (indeterminate, like failed ones)")
    fatal = cfg.get("producer_fatal_errors") or []
    if fatal:
        lines.append(f"producer: {len(fatal)} fatal error(s), producer recreated each time; first: {fatal[0][:300]}")
    by_kind = Counter(f.kind for f in h.faults)
    lines.append(f"faults: {len(h.faults)}" + (" (" + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())) + ")"
                                               if by_kind else ""))
    if report.failovers:
        lines.append("failover (fault -> first ack of a record sent after it, on the partitions the broker "
                     "led, else on any):")
        for k, (n, med, mx) in sorted(report.failover_summary().items(), key=lambda kv: kv[0] == "all"):
            lines.append(f"  {k:<10} n={n:<3} median {med:6.3f} s  max {mx:6.3f} s")
        none = [f for f in report.failovers if f.seconds is None]
        if none:
            lines.append(f"  {len(none)} fault(s) with no acknowledged write after them")
        for i, f in enumerate(report.failovers, 1):
            secs = "no ack" if f.seconds is None else f"{f.seconds:.3f} s"
            fault = h.faults[i - 1] if i - 1 < len(h.faults) else None
            roles = ""
            if fault is not None:
                roles = (" led " + ",".join(map(str, fault.led)) if fault.led else " led nothing") + \
                        (", controller" if fault.controller else "")
            lines.append(f"  #{i:<3} t={f.t_start - h.t0:7.1f}s {f.kind:<9} broker {f.broker}{roles}: {secs} "
                         f"({f.scope})")
    if cfg.get("nemesis_error"):
        lines.append(f"the nemesis stopped early on an error: {cfg['nemesis_error']}")
    if h.health is not None:
        lines.append(f"cluster healed: {'yes' if h.health.healed else 'NO'} after {h.health.seconds:.1f} s"
                     + (f" ({h.health.detail})" if h.health.detail else ""))
    lines.append("checks:")
    for k in checker.KINDS:
        lines.append(f"  {k:<22} {report.counts.get(k, 0)}")
    if report.ok:
        lines.append("RESULT: OK (no violation)")
    else:
        lines.append(f"RESULT: FAIL ({sum(report.counts.values())} violation(s)); examples:")
        for v in report.violations:
            lines.append(f"  [{v.kind}] {v.message}")
    return "\n".join(lines) + "\n"


def check_only(path):
    h = History.load(path)
    report = checker.check(h)
    print(summary(h, report, (h.config or {}).get("target", "?"), path), flush=True)
    return 0 if report.ok else 1


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.check:
        return check_only(args.check)
    # SIGTERM like Ctrl-C: heal (iptables rules, paused brokers), save the history, tear down
    signal.signal(signal.SIGTERM, _terminate)
    if args.workload == "txn":
        from . import txn

        return txn.run(args, log)
    return run(args)
