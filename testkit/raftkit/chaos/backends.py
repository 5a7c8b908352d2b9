"""Fault injection backends: where the cluster runs and how a fault is made and healed.

Every backend offers the same small interface, used by the nemesis and the run:

    bootstrap            "host:port,..." for the clients
    brokers              broker ids (node.id), 1..N
    address(b)           Kafka address of broker b as the clients reach it
    kinds()              {kind: None if supported else the reason it is not}
    inject(kind, b)      make the fault (kill, pause, partition) on broker b
    heal(kind, b)        undo it (start, resume, reconnect); returns when done
    heal_all()           undo whatever is still in effect (used at the end and on errors)
    broker_up(b)         the broker's process/container is running and not paused
    close()              tear down what this backend started

``ProcessBackend`` drives the process cluster of scripts/cluster through ``raftkit.cluster``
(its own in a temporary run directory with free ports, or an existing one); "partition" isolates a broker with iptables
rules on loopback. ``DockerBackend`` drives the compose cluster of scripts/docker-cluster through
``raftkit.docker`` and is kept thin on purpose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .. import clientconf
from ..cluster import ClusterError, ProcessCluster
from ..docker import ComposeCluster, DockerError
from ..ports import free_port_base

KINDS = ("kill", "pause", "partition")


class BackendError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------
# process cluster (scripts/cluster)


class ProcessBackend:
    """The process cluster of scripts/cluster.

    Without ``run_dir`` it starts its own N-broker cluster in a fresh temporary RAFTKA_RUN_DIR
    on free ports and tears it down in ``close()`` (keeping the directory when ``keep``).
    With ``run_dir`` it uses the cluster already running there (its cluster.env gives N and
    the ports) and leaves it running.
    """

    name = "process"

    def __init__(self, repo, run_dir=None, n=3, keep=False, env=None, log=print, bootstrap=None):
        self.repo = Path(repo)
        self.log = log
        self.keep = keep
        self.own = run_dir is None
        if self.own:
            self.cluster = ProcessCluster(Path(tempfile.mkdtemp(prefix="raftka-verify-")),
                                          free_port_base(n, offsets=(0, 1)), env, error=BackendError)
            self.cluster.n = n
        else:
            try:
                self.cluster = ProcessCluster.existing(run_dir, env, error=BackendError)
            except ClusterError as e:
                raise BackendError(str(e)) from None
        self.run_dir = self.cluster.run_dir
        self.port_base = self.cluster.port_base
        self.n = self.cluster.n
        self._bootstrap = bootstrap
        self.partitioner = IptablesPartitioner(f"RKV-{self.port_base}", log=log)
        self.partitioned = set()

    def run(self, *args, check=True, timeout=180):
        return self.cluster.run(*args, check=check, timeout=timeout)

    def start(self):
        if self.own:
            self.log(f"starting a {self.n}-broker process cluster in {self.run_dir} "
                     f"(Kafka ports {self.port_base}+100*i, binary {self.cluster.env.get('RAFTKA_BIN', 'release')})")
            self.cluster.up(self.n, timeout=600)
            # RAFTKA_SECURE=1: the clients log in with what `up` wrote
            found = clientconf.find_for_run_dir(self.run_dir)
            if found and clientconf.ENV not in os.environ:
                os.environ[clientconf.ENV] = found
                self.log(f"secured cluster: clients use {found}")
        else:
            self.log(f"using the process cluster in {self.run_dir} ({self.n} brokers)")

    def close(self):
        self.heal_all()
        if self.own:
            self.cluster.down(wipe=not self.keep)
            if self.keep:
                self.log(f"kept the cluster's run directory {self.run_dir} (broker logs)")

    @property
    def bootstrap(self):
        return self._bootstrap or self.cluster.bootstrap_servers()

    @property
    def brokers(self):
        return self.cluster.ids()

    def port(self, b):
        return self.cluster.port(b)

    def address(self, b):
        return self.cluster.address(b)

    def status(self):
        """{id: (pid or None, state)} with state running|paused|stopped."""
        return {b: (pid, state) for b, (_port, pid, state) in self.cluster.status().items()}

    def broker_up(self, b):
        return self.status().get(b, (None, "stopped"))[1] == "running"

    def log_path(self, b):
        return self.cluster.log_path(b)

    # -- faults -------------------------------------------------------------------------------

    def kinds(self):
        return {"kill": None, "pause": None, "partition": self.partitioner.unusable_reason()}

    def inject(self, kind, b):
        if kind == "kill":
            self.run("kill", b)
        elif kind == "pause":
            self.run("pause", b)
        elif kind == "partition":
            pid = self.status()[b][0]
            if pid is None:
                raise BackendError(f"broker {b} has no process to partition")
            self.partitioner.isolate(b, pid, [self.port(b), self.port(b) + 1])
            self.partitioned.add(b)
        else:
            raise BackendError(f"unknown fault kind {kind}")

    def heal(self, kind, b):
        if kind == "kill":
            if self.status()[b][1] == "stopped":
                self.cluster.start(b, timeout=600)
        elif kind == "pause":
            if self.status()[b][1] == "paused":
                self.run("resume", b)
        elif kind == "partition":
            self.partitioner.heal(b)
            self.partitioned.discard(b)

    def heal_all(self):
        for b in list(self.partitioned):
            self.heal("partition", b)
        self.partitioner.heal_all()
        try:
            st = self.status()
        except BackendError as e:
            self.log(f"heal_all: status failed: {e}")
            return
        for b, (_pid, state) in st.items():
            try:
                if state == "paused":
                    self.cluster.resume(b)
                elif state == "stopped":
                    self.cluster.start(b, timeout=600)
            except BackendError as e:
                self.log(f"heal_all: broker {b}: {e}")


class IptablesPartitioner:
    """Cuts one broker process off the loopback network, both ways, with iptables.

    All brokers share 127.0.0.1, so addresses cannot tell them apart. A partitioned broker's
    traffic is recognised in three ways, each a DROP rule in a private chain jumped to from
    OUTPUT on ``lo`` (every loopback packet passes OUTPUT once):
      1. its listener ports (Kafka, gRPC = Kafka + 1), as source or destination port: every
         connection *to* the broker, from clients and peers;
      2. the exact 4-tuples (local port, peer port) of the connections the broker had open
         when the partition began (read with ``ss -tanp``), both directions: its outgoing
         connections to peers (Raft, heartbeats, replica fetches);
      3. a cgroup-v2 match on a cgroup the broker process is moved into at that moment:
         every socket it opens during the partition (sockets belong to the cgroup of the
         process that created them, so older sockets need rule 2).
    Healing deletes the chain and moves the process back to the root cgroup. Needs root,
    iptables with the cgroup match and a writable cgroup v2 hierarchy.
    """

    def __init__(self, chain, log=print):
        self.chain = chain[:28]
        self.log = log
        self.cgroup_root = self._cgroup2_root()
        self.active = {}  # broker -> (pid, cgroup dir)
        self._reason = None
        self._checked = False

    @staticmethod
    def _cgroup2_root():
        try:
            for line in Path("/proc/self/mounts").read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "cgroup2":
                    return Path(parts[1])
        except OSError:
            pass
        return None

    def _ipt(self, *args, check=True):
        p = subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True, timeout=30)
        if check and p.returncode != 0:
            raise BackendError(f"iptables {' '.join(args)}: {p.stderr.strip()}")
        return p

    def unusable_reason(self):
        """None when partitions can be made here, else why not (checked once, for real)."""
        if self._checked:
            return self._reason
        self._checked = True
        if shutil.which("iptables") is None or shutil.which("iptables-restore") is None:
            self._reason = "iptables is not installed"
        elif os.geteuid() != 0:
            self._reason = "iptables needs root"
        elif shutil.which("ss") is None:
            self._reason = "ss (iproute2) is not installed"
        elif self.cgroup_root is None:
            self._reason = "no cgroup v2 hierarchy is mounted"
        else:
            probe = f"{self.chain[:22]}-PRB"
            cg = self.cgroup_root / f"{probe.lower()}"
            try:
                cg.mkdir(exist_ok=True)
                self._ipt("-N", probe)
                self._ipt("-A", probe, "-m", "cgroup", "--path", cg.name, "-j", "DROP")
            except (BackendError, OSError, subprocess.TimeoutExpired) as e:
                self._reason = f"iptables/cgroup probe failed: {e}"
            finally:
                self._ipt("-F", probe, check=False)
                self._ipt("-X", probe, check=False)
                try:
                    cg.rmdir()
                except OSError:
                    pass
        return self._reason

    def _chain(self, b):
        return f"{self.chain[:24]}-B{b}"

    def isolate(self, b, pid, ports):
        chain = self._chain(b)
        cg = self.cgroup_root / f"raftka-verify-{self.chain.lower()}-b{b}"
        cg.mkdir(exist_ok=True)
        # 3. new sockets: move the process (all its threads) into the cgroup first, so that
        # every socket not in the ss snapshot below is one it opened after the move.
        (cg / "cgroup.procs").write_text(str(pid))
        tuples = self._connections(pid, ports)
        rules = [f"-A {chain} -m cgroup --path {cg.relative_to(self.cgroup_root)} -j DROP"]
        for port in ports:  # 1. listeners
            rules.append(f"-A {chain} -p tcp --dport {port} -j DROP")
            rules.append(f"-A {chain} -p tcp --sport {port} -j DROP")
        for lport, rport in tuples:  # 2. its open connections
            rules.append(f"-A {chain} -p tcp --sport {lport} --dport {rport} -j DROP")
            rules.append(f"-A {chain} -p tcp --sport {rport} --dport {lport} -j DROP")
        rules.append(f"-I OUTPUT -o lo -j {chain}")
        # one atomic iptables-restore: the partition starts at once, not rule by rule
        script = "*filter\n" + f":{chain} - [0:0]\n" + "\n".join(rules) + "\nCOMMIT\n"
        p = subprocess.run(["iptables-restore", "-w", "5", "--noflush"], input=script, capture_output=True,
                           text=True, timeout=30)
        if p.returncode != 0:
            raise BackendError(f"iptables-restore: {p.stderr.strip()}")
        self.active[b] = (pid, cg)
        self.log(f"partition: broker {b} (pid {pid}) cut off: ports {ports}, {len(tuples)} open "
                 f"connection(s), cgroup {cg.name}")

    @staticmethod
    def _connections(pid, listen_ports):
        out = subprocess.run(["ss", "-tanpH"], capture_output=True, text=True, timeout=30).stdout
        tuples = set()
        for line in out.splitlines():
            if f"pid={pid}," not in line:
                continue
            parts = line.split()
            if len(parts) < 5 or parts[0] == "LISTEN":
                continue
            try:
                lport = int(parts[3].rsplit(":", 1)[1])
                rport = int(parts[4].rsplit(":", 1)[1])
            except (ValueError, IndexError):
                continue
            if lport in listen_ports:
                continue  # covered by the listener rules
            tuples.add((lport, rport))
        return sorted(tuples)

    def heal(self, b):
        chain = self._chain(b)
        while self._ipt("-D", "OUTPUT", "-o", "lo", "-j", chain, check=False).returncode == 0:
            pass
        self._ipt("-F", chain, check=False)
        self._ipt("-X", chain, check=False)
        pid, cg = self.active.pop(b, (None, None))
        if cg is not None:
            try:
                for p in (cg / "cgroup.procs").read_text().split():
                    try:
                        (self.cgroup_root / "cgroup.procs").write_text(p)
                    except OSError:
                        pass
                cg.rmdir()
            except OSError as e:
                self.log(f"partition heal: cgroup {cg}: {e}")
        self.log(f"partition: broker {b} reconnected")

    def heal_all(self):
        for b in list(self.active):
            self.heal(b)


# ---------------------------------------------------------------------------------------------
# docker compose cluster (scripts/docker-cluster)


class DockerBackend:
    """The compose cluster started by ``scripts/docker-cluster up`` (``raftkit.docker.
    ComposeCluster``): broker i is container ``containers[i-1]`` and is reached by the clients
    at the i-th ``bootstrap`` address.

    kill = ``docker kill`` / heal ``docker start``; pause = ``docker pause`` / ``unpause``;
    partition = ``docker network disconnect`` / ``connect`` (with the aliases and, when the
    network has a configured subnet, the IP address the container had).

    Defaults follow the compose file: project ``raftka`` (COMPOSE_PROJECT_NAME), services
    broker1..N, one network ``raftka``; containers and the network are found by compose's
    labels (so compose v1 and v2 container names both work) unless given explicitly.
    """

    name = "docker"
    compose_class = ComposeCluster

    def __init__(self, bootstrap, containers=None, network=None, project="raftka", n=3, log=print):
        self.log = log
        try:
            self.compose = self.compose_class(bootstrap, containers, network, project=project, n=n)
        except DockerError as e:
            raise BackendError(str(e)) from None
        self.project = project
        self.containers = self.compose.containers
        self.network = self.compose.network

    def start(self):
        self.compose.check()
        self.log(f"using the docker cluster: containers {', '.join(self.containers)}, network {self.network}")

    def close(self):
        self.heal_all()

    @property
    def bootstrap(self):
        return self.compose.bootstrap

    @property
    def brokers(self):
        return self.compose.brokers

    def address(self, b):
        return self.compose.address(b)

    def container(self, b):
        return self.compose.container(b)

    def state(self, b):
        return self.compose.state(b)

    def broker_up(self, b):
        return self.state(b) == "running" and b not in self.compose.disconnected

    def kinds(self):
        return {k: None for k in KINDS}

    def inject(self, kind, b):
        try:
            {"kill": self.compose.kill, "pause": self.compose.pause,
             "partition": self.compose.disconnect}[kind](b)
        except KeyError:
            raise BackendError(f"unknown fault kind {kind}") from None
        except DockerError as e:
            raise BackendError(str(e)) from None

    def heal(self, kind, b):
        try:
            if kind == "kill":
                if self.state(b) == "stopped":
                    self.compose.start(b)
            elif kind == "pause":
                if self.state(b) == "paused":
                    self.compose.unpause(b)
            elif kind == "partition":
                self.compose.connect(b)
        except DockerError as e:
            raise BackendError(str(e)) from None

    def heal_all(self):
        self.compose.heal_all()

    def log_path(self, b):
        return None
