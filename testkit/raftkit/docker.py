"""``ComposeCluster``: the docker compose cluster of scripts/docker-cluster, driven with plain
docker commands (no compose client needed).

Broker i is the container of compose service ``broker<i>`` of the project (found by compose's
labels, so compose v1 and v2 container names both work, unless given explicitly) and is
reached by clients at the i-th address of ``bootstrap``. Faults: kill (``docker kill``) /
stop (``docker stop``) / start, pause / unpause, and network disconnect / connect (keeping the
container's aliases and, where the network has a configured subnet, its IP address; a
container cut off by another process gets its compose service name back as its alias).

Used by the chaos docker backend (``raftkit.chaos.backends``) and the fault commands
(``raftkit.chaos.faults``, scripts/chaos/*). Depends on ``kafkameta`` and ``wait`` of this kit.
"""

from __future__ import annotations

import json
import subprocess

from . import kafkameta
from .wait import wait_until


class DockerError(RuntimeError):
    """A docker command failed, or the compose project's containers or network are not there."""


def docker(*args, check=True, timeout=120):
    """Runs ``docker ARGS``; DockerError (with docker's message) when it fails and ``check``."""
    p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise DockerError(f"docker {' '.join(args)}: {p.stderr.strip()}")
    return p


def broker_containers(project, run=docker):
    """{broker id: docker inspect dict} of the compose project's ``broker<N>`` services (by
    compose's labels; any other service is left out). ``run`` runs a docker command (a test
    passes a fake)."""
    ids = run("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").stdout.split()
    if not ids:
        return {}
    out = {}
    for c in json.loads(run("inspect", *ids).stdout):
        service = (c.get("Config") or {}).get("Labels", {}).get("com.docker.compose.service", "")
        if service.startswith("broker") and service[len("broker"):].isdigit():
            out[int(service[len("broker"):])] = c
    return out


class ComposeCluster:
    def docker(self, *args, check=True, timeout=120):
        """``docker ARGS`` (a method, so a test can answer it from a script)."""
        return docker(*args, check=check, timeout=timeout)

    def __init__(self, bootstrap, containers=None, network=None, project="raftka", n=3):
        self.project = project
        self.containers = containers or [self._container_by_label(i) for i in range(1, n + 1)]
        self.addresses = [a.strip() for a in bootstrap.split(",") if a.strip()]
        if len(self.addresses) != len(self.containers):
            raise DockerError(f"--bootstrap names {len(self.addresses)} brokers but there are "
                              f"{len(self.containers)} containers; give one address per broker, in order")
        self.network = network or self._network_by_label()
        self.disconnected = {}  # broker -> (ip, aliases)

    def _container_by_label(self, i):
        out = self.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}",
                     "--filter", f"label=com.docker.compose.service=broker{i}").stdout.split()
        if len(out) != 1:
            raise DockerError(f"found {len(out)} containers for service broker{i} of compose project "
                              f"{self.project} (scripts/docker-cluster up; or pass --containers)")
        return out[0]

    def _network_by_label(self):
        out = self.docker("network", "ls", "--format", "{{.Name}}", "--filter",
                     f"label=com.docker.compose.project={self.project}").stdout.split()
        if len(out) != 1:
            raise DockerError(f"found networks {out} for compose project {self.project}; pass --docker-network")
        return out[0]

    def check(self):
        """DockerError unless every container exists."""
        for c in self.containers:
            self.docker("inspect", c)

    @property
    def bootstrap(self):
        return ",".join(self.addresses)

    @property
    def brokers(self):
        return list(range(1, len(self.containers) + 1))

    def address(self, b):
        return self.addresses[b - 1]

    def container(self, b):
        return self.containers[b - 1]

    def status(self, b):
        """docker's own ``State.Status``: running | paused | exited | created | restarting | ..."""
        return self.docker("inspect", "-f", "{{.State.Status}}", self.container(b)).stdout.strip()

    def health(self, b):
        """``status/health`` as docker reports it, e.g. ``running/healthy`` (health is empty
        for a container without a healthcheck)."""
        return self.docker("inspect", "-f", "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                           self.container(b)).stdout.strip()

    def name(self, b):
        """The container's name (without docker's leading slash)."""
        return self.docker("inspect", "-f", "{{.Name}}", self.container(b)).stdout.strip().lstrip("/")

    def is_connected(self, b):
        """True when broker b's container is attached to the cluster network."""
        nets = self.docker("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                           self.container(b)).stdout.split()
        return self.network in nets

    def state(self, b):
        """running | paused | stopped."""
        p = self.docker("inspect", "-f", "{{.State.Running}} {{.State.Paused}}", self.container(b), check=False)
        running, paused = (p.stdout.split() + ["false", "false"])[:2]
        return "paused" if paused == "true" else "running" if running == "true" else "stopped"

    def kill(self, b):
        self.docker("kill", self.container(b))

    def start(self, b, timeout=120, wait=True):
        """``docker start``, then (``wait``) waits until the broker answers Metadata."""
        self.docker("start", self.container(b))
        if wait:
            self.wait_answers(b, timeout)

    def stop(self, b, grace=30):
        """``docker stop``: SIGTERM (a clean shutdown), SIGKILL after ``grace`` seconds."""
        self.docker("stop", "-t", str(grace), self.container(b))

    def wait_answers(self, b, timeout=120):
        """Waits until broker b answers a Metadata request."""
        wait_until(lambda: kafkameta.metadata(self.address(b), [], timeout=2) is not None, timeout,
                   f"broker {b} ({self.container(b)}) to answer after docker start", interval=0.2,
                   error=DockerError)

    def pause(self, b):
        self.docker("pause", self.container(b))

    def unpause(self, b):
        self.docker("unpause", self.container(b))

    def disconnect(self, b):
        c = self.container(b)
        info = json.loads(self.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", c).stdout)
        net = info.get(self.network) or {}
        self.disconnected[b] = (net.get("IPAddress", ""), [a for a in (net.get("Aliases") or []) if a])
        self.docker("network", "disconnect", self.network, c)

    def service(self, b):
        """The compose service of broker b's container ("" when it has none)."""
        out = self.docker("inspect", "-f", '{{index .Config.Labels "com.docker.compose.service"}}',
                          self.container(b)).stdout.strip()
        return "" if out == "<no value>" else out

    def connect(self, b):
        """Reconnects broker b with the aliases (and IP) it had when this object cut it off;
        one cut off elsewhere (another process) gets its compose service name as its alias, so
        ``broker<b>`` resolves again on the network."""
        c = self.container(b)
        if b in self.disconnected:
            ip, aliases = self.disconnected.pop(b)
        else:
            ip, aliases = "", [a for a in [self.service(b)] if a]
        args = ["network", "connect"]
        for a in aliases:
            args += ["--alias", a]
        if ip and self.docker(*args, "--ip", ip, self.network, c, check=False).returncode == 0:
            return
        self.docker(*args, self.network, c)

    def heal_all(self):
        """Reconnects, unpauses and starts whatever is cut off, paused or stopped (best effort)."""
        for b in list(self.disconnected):
            self.connect(b)
        for b in self.brokers:
            st = self.state(b)
            if st == "paused":
                self.docker("unpause", self.container(b), check=False)
            elif st == "stopped":
                self.docker("start", self.container(b), check=False)
