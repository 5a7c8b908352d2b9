"""The fault commands of scripts/chaos/* against the docker compose cluster of
scripts/docker-cluster: kill-broker, restart-broker, pause-broker, unpause-broker,
partition-broker, heal, kill-leader, kill-controller, rolling-restart (and state, which is
``raftkit.chaos.state``'s CLI).

Each command injects or undoes one fault with the docker CLI (``raftkit.docker.ComposeCluster``:
containers and the network by compose labels), prints what it did and the cluster state
before and after (``raftkit.chaos.state.ClusterState``), and waits, polling with a deadline
(RAFTKA_CHAOS_TIMEOUT seconds, default 60), until the cluster has reacted or healed; the only
plain sleep is the fault duration a caller asks for with ``--seconds``. Exit status: 0 done,
1 the cluster did not react or heal in time, a docker command failed or the request does not
fit the cluster's state (e.g. pausing a stopped broker), 2 bad usage.

``run(name, argv)`` is what each scripts/chaos/<name> calls; ``python3 -m
raftkit.chaos.faults NAME ARGS...`` does the same. Depends on ``docker`` and ``chaos.state`` of
this kit.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time

from ..docker import ComposeCluster, DockerError
from . import state as cstate

N_BROKERS = 3
DEFAULT_TIMEOUT = 60.0


class ChaosError(RuntimeError):
    """The command cannot go on: printed as ``[chaos] error: ...``, exit status 1."""


class NotReached(ChaosError):
    """A wait's deadline passed (the wait has printed why and the last state already)."""


def say(msg, out=None):
    t = time.time()
    stamp = time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
    print(f"[chaos] {stamp} {msg}", file=out or sys.stdout, flush=True)


def chaos_timeout(environ=None):
    """RAFTKA_CHAOS_TIMEOUT (seconds, default 60)."""
    raw = (os.environ if environ is None else environ).get("RAFTKA_CHAOS_TIMEOUT") or str(DEFAULT_TIMEOUT)
    try:
        value = float(raw)
    except ValueError:
        raise ChaosError(f"RAFTKA_CHAOS_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ChaosError(f"RAFTKA_CHAOS_TIMEOUT must be positive, got {raw!r}")
    return value


def check_id(raw, n=N_BROKERS):
    """A broker id 1..n from the command line; ChaosError otherwise."""
    if not re.fullmatch(r"[1-9][0-9]*", raw or "") or int(raw) > n:
        raise ChaosError(f"broker id must be 1..{n}, got '{raw or ''}'")
    return int(raw)


def check_seconds(raw):
    """The --seconds value (a non-negative decimal number) or None; ChaosError otherwise."""
    if raw is None:
        return None
    if not re.fullmatch(r"[0-9]+([.][0-9]+)?", raw):
        raise ChaosError("--seconds needs a number")
    return float(raw)


def restart_order(brokers, controller):
    """The rolling restart's order: every broker but the controller in id order, the controller
    last (no controller, -1: id order)."""
    order = [b for b in sorted(brokers) if b != controller]
    if controller in brokers:
        order.append(controller)
    return order


class Faults:
    """The commands. ``compose`` is a ``ComposeCluster`` (docker), ``state`` a
    ``ClusterState`` (Metadata views, waits); ``timeout`` bounds every wait for the cluster;
    ``clock`` and ``sleep`` are time.time and time.sleep (a test passes its own)."""

    def __init__(self, compose, state, timeout=DEFAULT_TIMEOUT, clock=time.time, sleep=time.sleep):
        self.compose = compose
        self.state = state
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep

    @property
    def brokers(self):
        return self.compose.brokers

    def say(self, msg):
        say(msg)

    # ---- building blocks

    def show(self, title, timeout=2.0):
        self.state.show(title, timeout=timeout)

    def wait_until(self, what, *args, since=None, timeout=None):
        """Waits for a ``state`` condition; NotReached when its deadline passes."""
        if not self.state.wait(what, *args, timeout=self.timeout if timeout is None else timeout, since=since):
            raise NotReached(f"{what} {' '.join(map(str, args))}".strip())

    def status(self, b):
        return self.compose.status(b)

    def wait_healthy(self, b):
        """Waits until broker b's container is running and its healthcheck says healthy."""
        deadline = time.monotonic() + self.timeout
        while True:
            st = self.compose.health(b)
            if st == "running/healthy":
                return
            if time.monotonic() >= deadline:
                raise ChaosError(f"broker{b} is {st} after {self.timeout:g}s")
            self.sleep(0.2)

    def do_kill(self, b):
        """SIGKILL (``docker kill``: a deliberate stop, so restart: unless-stopped leaves it
        dead); a paused broker is unpaused first."""
        if self.status(b) == "paused":
            self.compose.unpause(b)
        self.compose.kill(b)
        self.say(f"broker{b}: SIGKILL (docker kill {self.compose.name(b)})")

    def do_start(self, b):
        """``docker start``, reconnecting it to the cluster network first if it was cut off."""
        if not self.compose.is_connected(b):
            self.reconnect(b)
        self.compose.start(b, wait=False)
        self.say(f"broker{b}: docker start")

    def reconnect(self, b):
        self.compose.connect(b)
        self.say(f"broker{b}: network reconnected (docker network connect --alias broker{b})")

    def wait_healed_unless_down(self, b, since):
        """After undoing a fault on broker b: waits until the whole cluster has healed, or, when
        some broker is deliberately down (killed, stopped), only until b is healthy, since a
        full heal cannot happen then."""
        for other in self.brokers:
            st = self.status(other)
            if st != "running":
                self.say(f"broker{other} is {st}: waiting only for broker{b} to be healthy, not for a full heal")
                self.wait_healthy(b)
                self.say(f"broker{b}: healthy")
                return
        self.wait_until("healed", since=since)

    def hold(self, b, t0, seconds, what):
        """The first part of a ``--seconds`` fault: waits (at most ``seconds``) for the others to
        take over b's leadership, shows the state, then sleeps out the rest of the requested
        duration (the fault's length, not a wait for a condition)."""
        if not self.state.wait("no-leader-on", b, timeout=seconds, since=t0):
            self.say(f"(leadership had not moved within {seconds:g}s)")
        self.show(f"during: broker{b} {what}", timeout=0.5)
        left = max(0.0, t0 + seconds - self.clock())
        self.sleep(left)

    # ---- the commands

    def kill_broker(self, b, graceful=False):
        st = self.status(b)
        if st not in ("running", "paused"):
            raise ChaosError(f"broker{b} is {st}, not running")
        self.show(f"before: kill broker{b}")
        t0 = self.clock()
        if graceful:
            self.compose.stop(b, grace=30)
            self.say(f"broker{b}: docker stop (SIGTERM)")
        else:
            self.do_kill(b)
        self.wait_until("no-leader-on", b, since=t0)
        self.show(f"after: kill broker{b}")

    def restart_broker(self, b):
        self.show(f"before: restart broker{b}")
        t0 = self.clock()
        if self.status(b) in ("running", "paused"):
            self.do_kill(b)
        self.do_start(b)
        self.wait_healed_unless_down(b, t0)
        self.show(f"after: restart broker{b}")

    def pause_broker(self, b, seconds=None):
        st = self.status(b)
        if st != "running":
            raise ChaosError(f"broker{b} is {st}, not running")
        self.show(f"before: pause broker{b}")
        t0 = self.clock()
        self.compose.pause(b)
        self.say(f"broker{b}: paused (docker pause)")
        if seconds is None:
            self.wait_until("no-leader-on", b, since=t0)
            self.show(f"after: pause broker{b} (still paused; scripts/chaos/unpause-broker {b})")
            return
        undone = False
        try:  # --seconds promises an unpause: keep it even if something below fails
            self.hold(b, t0, seconds, "paused")
            t1 = self.clock()
            self.compose.unpause(b)
            undone = True
        finally:
            if not undone:
                try:
                    self.compose.unpause(b)
                except DockerError:
                    pass
        self.say(f"broker{b}: unpaused after {self.clock() - t0:.1f}s")
        self.wait_healed_unless_down(b, t1)
        self.show(f"after: pause broker{b} for {seconds:g}s")

    def unpause_broker(self, b):
        st = self.status(b)
        if st != "paused":
            raise ChaosError(f"broker{b} is {st}, not paused")
        t0 = self.clock()
        self.compose.unpause(b)
        self.say(f"broker{b}: unpaused")
        self.wait_healed_unless_down(b, t0)
        self.show(f"after: unpause broker{b}")

    def partition_broker(self, b, seconds=None):
        st = self.status(b)
        if st != "running":
            raise ChaosError(f"broker{b} is {st}, not running")
        if not self.compose.is_connected(b):
            raise ChaosError(f"broker{b} is already cut off")
        self.show(f"before: partition broker{b} from the others")
        t0 = self.clock()
        self.compose.disconnect(b)
        self.say(f"broker{b}: disconnected from the cluster network (docker network disconnect)")
        if seconds is None:
            self.wait_until("no-leader-on", b, since=t0)
            self.show(f"after: partition broker{b} (still cut off; scripts/chaos/heal)")
            return
        undone = False
        try:  # --seconds promises a reconnect: keep it even if something below fails
            self.hold(b, t0, seconds, "cut off")
            t1 = self.clock()
            cut = self.clock() - t0
            self.reconnect(b)
            undone = True
        finally:
            if not undone and not self.compose.is_connected(b):
                self.reconnect(b)
        self.say(f"broker{b}: was cut off for {cut:.1f}s")
        self.wait_healed_unless_down(b, t1)
        self.show(f"after: partition broker{b} for {seconds:g}s")

    def heal(self, all_=False):
        t0 = self.clock()
        did = False
        for b in self.brokers:
            if not self.compose.is_connected(b):
                self.reconnect(b)
                did = True
            st = self.status(b)
            if st == "paused":
                self.compose.unpause(b)
                self.say(f"broker{b}: unpaused")
                did = True
            elif all_ and st != "running":
                self.do_start(b)
                did = True
        if not did:
            self.say("nothing to undo")
        if not all_:
            for b in self.brokers:
                st = self.status(b)
                if st != "running":
                    self.say(f"broker{b} is {st}: not waiting for a full heal (heal --all starts it)")
                    self.show("after: heal")
                    return
        self.wait_until("healed", since=t0)
        self.show("after: heal")

    def kill_leader(self, topic, partition):
        """Returns the id of the broker it killed (the caller prints killed=ID)."""
        self.show(f"before: kill the leader of {topic}-{partition}")
        leader = self.state.leader(topic, partition)
        if leader is None or leader < 1:
            raise ChaosError(f"{topic}-{partition} has no leader (got '{'' if leader is None else leader}')")
        self.say(f"{topic}-{partition} is led by broker{leader}")
        t0 = self.clock()
        self.do_kill(leader)
        self.wait_until("leader-moved", topic, partition, leader, since=t0)
        self.show(f"after: kill the leader of {topic}-{partition} (broker{leader})")
        return leader

    def kill_controller(self):
        """Returns the id of the broker it killed (the caller prints killed=ID)."""
        self.show("before: kill the controller")
        ctl = self.state.controller()
        if ctl is None or ctl < 1:
            raise ChaosError(f"no controller (got '{'' if ctl is None else ctl}')")
        self.say(f"controller is broker{ctl}")
        t0 = self.clock()
        self.do_kill(ctl)
        self.wait_until("controller-moved", ctl, since=t0)
        self.wait_until("no-leader-on", ctl, since=t0)
        self.show(f"after: kill the controller (broker{ctl})")
        return ctl

    def rolling_restart(self, kill=False):
        self.show("before: rolling restart")
        ctl = self.state.controller()
        if ctl is None:
            raise ChaosError("no broker answers Metadata: cannot find the controller")
        order = restart_order(self.brokers, ctl)
        self.say(f"order: {' '.join(map(str, order))} (controller broker{ctl} last)")
        start_all = self.clock()
        for b in order:
            t0 = self.clock()
            if kill:
                self.do_kill(b)
            else:
                self.compose.stop(b, grace=30)
                self.say(f"broker{b}: stopped cleanly (docker stop)")
            self.do_start(b)
            self.wait_healthy(b)
            self.wait_until("healed", since=t0)
            self.show(f"after restarting broker{b}")
        self.say(f"rolling restart done in {self.clock() - start_all:.1f}s")
        return order


# --------------------------------------------------------------------------------------------
# the command line: one parser per command, as each scripts/chaos/<name> is one command

HELP = {
    "kill-broker": """\
Kills one broker with SIGKILL (a crash: no flush, no goodbye) and waits until the cluster has
moved partition leadership and the controller away from it. The broker stays dead until
scripts/chaos/restart-broker ID (docker kill marks the container stopped, so the restart
policy leaves it alone). Prints the state before and after, and how long after the kill
leadership had moved.""",
    "restart-broker": """\
Starts a broker again (after kill-broker; a paused one is unpaused, a partitioned one
reconnected, a running one is killed first) and waits until the cluster has healed: every
broker healthy and registered, every partition with a leader and its full ISR (only until
this broker is healthy when another broker is down on purpose).""",
    "pause-broker": """\
Freezes one broker (docker pause: the cgroup freezer, like SIGSTOP for every process in the
container; sockets stay open but nothing answers), a long GC pause or a stalled VM.

  pause-broker ID                 pause; resume with scripts/chaos/unpause-broker ID
  pause-broker ID --seconds S     pause, wait until the others took over its leadership (or S
                                  seconds passed), keep it paused for S seconds in all (a
                                  little more when the reaction took longer), unpause, wait
                                  until healed; it is unpaused even when something fails""",
    "unpause-broker": """\
Resumes a broker frozen by scripts/chaos/pause-broker and waits until the cluster has healed
(only until this broker is healthy when another broker is down on purpose).""",
    "partition-broker": """\
Cuts one broker off the compose network (docker network disconnect): the other two brokers
cannot reach it, it cannot reach them, and (because its published EXTERNAL port goes through
the same network) clients on the host cannot reach it either. The process keeps running and
believes what it believed before (a deposed controller or partition leader until it notices).

  partition-broker ID                 cut it off; undo with scripts/chaos/heal
  partition-broker ID --seconds S     cut it off, wait until the majority took over its
                                      leadership (or S seconds passed), reconnect after S
                                      seconds in all (a little more when the reaction itself
                                      took longer), wait until healed; it is reconnected even
                                      when something fails""",
    "heal": """\
Undoes network partitions and pauses: reconnects every broker cut off by partition-broker,
unpauses every paused broker, then waits until the cluster has healed (every broker healthy
and registered, every partition with a leader and its full ISR).

  heal          partitions and pauses only (a killed broker stays dead, and then the full
                heal is not waited for)
  heal --all    also starts brokers that were killed or stopped""",
    "kill-leader": """\
Kills (SIGKILL) the broker leading TOPIC's partition PARTITION and waits until another in-sync
replica leads it. The last line printed is killed=ID; restart it with
scripts/chaos/restart-broker ID.""",
    "kill-controller": """\
Kills (SIGKILL) the broker that is the controller (the Raft metadata quorum's leader) and
waits until another broker is controller and leads every partition the dead one led. The last
line printed is killed=ID; restart it with scripts/chaos/restart-broker ID.""",
    "rolling-restart": """\
Restarts every broker in turn, the way an upgrade would: the controller last, each one with a
clean stop (docker stop: SIGTERM, the broker flushes and leaves), then started again; the next
one only after the cluster has healed (every partition with a leader and its full ISR).""",
}

COMMON = """
Every wait polls with a deadline of RAFTKA_CHAOS_TIMEOUT seconds (default 60). The cluster is
the compose project COMPOSE_PROJECT_NAME (else RAFTKA_DOCKER_PROJECT, else raftka) with the
ports of .run/docker/<project>.env. Exit status: 0 done, 1 not reacted/healed in time or a
failed docker command, 2 bad usage. More: scripts/chaos/README.md."""

COMMANDS = tuple(HELP) + ("state",)


def _partition_number(raw):
    if not re.fullmatch(r"[0-9]+", raw):
        raise argparse.ArgumentTypeError(f"PARTITION must be a number, got {raw!r}")
    return int(raw)


def parser(name):
    """The argument parser of command ``name`` (as scripts/chaos/<name>)."""
    ap = argparse.ArgumentParser(prog=f"scripts/chaos/{name}", description=HELP[name], epilog=COMMON,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    if name in ("kill-broker", "restart-broker", "pause-broker", "unpause-broker", "partition-broker"):
        ap.add_argument("id", metavar="ID", help=f"broker id, 1..{N_BROKERS}")
    if name == "kill-broker":
        ap.add_argument("--graceful", action="store_true",
                        help="docker stop (SIGTERM, then SIGKILL after 30 s) instead of SIGKILL")
    if name in ("pause-broker", "partition-broker"):
        ap.add_argument("--seconds", metavar="S", help="undo the fault after S seconds and wait until healed")
    if name == "heal":
        ap.add_argument("--all", dest="all_", action="store_true", help="also start killed or stopped brokers")
    if name == "rolling-restart":
        ap.add_argument("--kill", action="store_true", help="SIGKILL instead of a clean stop (a rolling crash)")
    if name == "kill-leader":
        ap.add_argument("topic", metavar="TOPIC")
        ap.add_argument("partition", metavar="PARTITION", type=_partition_number)
    return ap


# the commands that said "unknown argument" (exit 1) rather than printing their usage (exit 2)
_DIE_ON_EXTRA = ("kill-broker", "pause-broker", "partition-broker")


def parse(name, argv):
    """(argparse namespace) for command ``name``; SystemExit(2) on bad usage, ChaosError
    (exit 1) for a bad broker id or --seconds value, as the bash scripts had it."""
    if name not in HELP:
        raise ChaosError(f"unknown command {name!r}; one of {', '.join(COMMANDS)}")
    ap = parser(name)
    if name in _DIE_ON_EXTRA:
        a, extra = ap.parse_known_args(argv)
        if extra:
            raise ChaosError(f"unknown argument: {extra[0]}")
    else:
        a = ap.parse_args(argv)
    if hasattr(a, "id"):
        a.id = check_id(a.id)
    if hasattr(a, "seconds"):
        a.seconds = check_seconds(a.seconds)
    return a


def dispatch(faults, name, a):
    """Runs the parsed command on ``faults``; prints killed=ID for the killing ones."""
    if name == "kill-broker":
        faults.kill_broker(a.id, graceful=a.graceful)
    elif name == "restart-broker":
        faults.restart_broker(a.id)
    elif name == "pause-broker":
        faults.pause_broker(a.id, a.seconds)
    elif name == "unpause-broker":
        faults.unpause_broker(a.id)
    elif name == "partition-broker":
        faults.partition_broker(a.id, a.seconds)
    elif name == "heal":
        faults.heal(all_=a.all_)
    elif name == "rolling-restart":
        faults.rolling_restart(kill=a.kill)
    elif name == "kill-leader":
        print(f"killed={faults.kill_leader(a.topic, a.partition)}", flush=True)
    elif name == "kill-controller":
        print(f"killed={faults.kill_controller()}", flush=True)


def connect():
    """The Faults of the cluster the environment names (load_target: the state file's ports)."""
    target = cstate.load_target()
    cstate.require_client()
    compose = ComposeCluster(target.bootstrap, project=target.project, n=len(target.brokers))
    return Faults(compose, cstate.ClusterState(target), timeout=chaos_timeout())


def main(argv, connect=connect):
    """``NAME ARGS...``: runs one command; returns the exit status."""
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python3 -m raftkit.chaos.faults NAME ARGS...   NAME: {' '.join(COMMANDS)}\n\n"
              + __doc__, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, args = argv[0], argv[1:]
    try:
        if name == "state":
            try:
                return cstate.main(args)
            except cstate.ClientMissing as e:
                raise ChaosError(str(e)) from None
        a = parse(name, args)
        try:
            faults = connect()
        except (DockerError, ValueError, cstate.ClientMissing) as e:
            raise ChaosError(str(e)) from None
        dispatch(faults, name, a)
        return 0
    except NotReached:
        return 1  # the wait said why
    except (ChaosError, DockerError) as e:
        print(f"[chaos] error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def run(name, argv):
    """What scripts/chaos/<name> does: ``main([name, *argv])``, then ends the process at once
    (os._exit: no waiting for librdkafka clients still closing). SIGTERM ends it through the
    same cleanup as an error, so a ``--seconds`` fault is still undone."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        rc = main([name, *argv])
    except SystemExit as e:  # argparse (usage, --help) or SIGTERM
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(main([]))
    run(sys.argv[1], sys.argv[2:])
