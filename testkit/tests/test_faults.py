"""raftkit.chaos.faults and raftkit.chaos.state without docker or brokers: a fake docker that
keeps the containers' state and records every command, a fake cluster state that records
what was shown and waited for."""

import json
import subprocess

import pytest
from raftkit.chaos import faults as F
from raftkit.chaos import state as S
from raftkit.docker import ComposeCluster


class FakeDocker(ComposeCluster):
    """Containers c1..c3 of services broker1..3 on network proj_raftka; docker commands change
    their state like the engine would and are recorded in ``calls`` (lookups in ``lookups``)."""

    def __init__(self, status=None, connected=None, **kw):
        self.calls = []
        self.lookups = []
        self.st = dict(status or {1: "running", 2: "running", 3: "running"})
        self.on_net = dict(connected or {1: True, 2: True, 3: True})
        super().__init__("h:1,h:2,h:3", project="proj", **kw)

    def _b(self, c):
        return int(c.removeprefix("c"))

    def docker(self, *args, check=True, timeout=120):
        out = ""
        if args[:2] == ("ps", "-aq"):
            self.lookups.append(args)
            out = f"c{args[-1].rsplit('broker', 1)[1]}\n"
        elif args[:2] == ("network", "ls"):
            self.lookups.append(args)
            out = "proj_raftka\n"
        elif args[0] == "inspect":
            self.lookups.append(args)
            fmt, b = args[2], self._b(args[3])
            if fmt == "{{.State.Status}}":
                out = self.st[b]
            elif fmt.startswith("{{.State.Status}}/"):
                out = f"{self.st[b]}/{'healthy' if self.st[b] == 'running' else 'unhealthy'}"
            elif fmt == "{{.Name}}":
                out = f"/proj-broker{b}-1"
            elif fmt.startswith("{{range"):
                out = "proj_raftka " if self.on_net[b] else ""
            elif "com.docker.compose.service" in fmt:
                out = f"broker{b}"
            elif fmt == "{{json .NetworkSettings.Networks}}":
                out = json.dumps({"proj_raftka": {"IPAddress": "", "Aliases": [f"broker{b}", "abc123"]}}
                                 if self.on_net[b] else {})
            else:
                raise AssertionError(f"unexpected inspect format {fmt}")
            out += "\n"
        else:
            self.calls.append(args)
            b = self._b(args[-1])
            verb = args[0] if args[0] != "network" else args[1]
            if verb == "kill" or verb == "stop":
                assert self.st[b] in ("running", "paused") or verb == "stop", (args, self.st[b])
                self.st[b] = "exited"
            elif verb == "start":
                assert self.on_net[b], "started while cut off"
                self.st[b] = "running"
            elif verb == "pause":
                self.st[b] = "paused"
            elif verb == "unpause":
                assert self.st[b] == "paused", args
                self.st[b] = "running"
            elif verb == "disconnect":
                self.on_net[b] = False
            elif verb == "connect":
                self.on_net[b] = True
            else:
                raise AssertionError(f"unexpected docker command {args}")
        return subprocess.CompletedProcess(args, 0, out, "")


class FakeState:
    """ClusterState's interface; ``waits`` maps a condition name to its result (default True)
    or to an exception to raise."""

    def __init__(self, controller=2, leader=1, waits=None):
        self.shown = []
        self.waited = []
        self._controller = controller
        self._leader = leader
        self.waits = waits or {}

    def show(self, title=None, timeout=2.0, internal=False):
        self.shown.append(title)

    def wait(self, what, *args, timeout=60.0, since=None, brokers=None):
        self.waited.append((what, *args))
        r = self.waits.get(what, True)
        if isinstance(r, BaseException):
            raise r
        return r

    def controller(self):
        return self._controller

    def leader(self, topic, partition):
        return self._leader


class Clock:
    def __init__(self, t=1000.0):
        self.t = t
        self.slept = []

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.slept.append(s)
        self.t += s


def faults(docker=None, state=None, clock=None):
    clock = clock or Clock()
    return F.Faults(docker or FakeDocker(), state or FakeState(), timeout=5, clock=clock, sleep=clock.sleep)


def verbs(d):
    return [a[1] if a[0] == "network" else a[0] for a in d.calls]


# ---- arguments


def test_broker_ids_and_seconds_are_checked_like_the_bash_scripts():
    assert F.check_id("3") == 3
    for bad in ("0", "4", "x", "", "01", None):
        with pytest.raises(F.ChaosError, match="broker id must be 1..3"):
            F.check_id(bad)
    assert F.check_seconds("6") == 6.0 and F.check_seconds("0.5") == 0.5 and F.check_seconds(None) is None
    for bad in ("x", "-1", "1e3", ".5"):
        with pytest.raises(F.ChaosError, match="--seconds needs a number"):
            F.check_seconds(bad)


def test_parse_each_command():
    a = F.parse("pause-broker", ["2", "--seconds", "6"])
    assert (a.id, a.seconds) == (2, 6.0)
    assert F.parse("pause-broker", ["2"]).seconds is None
    assert F.parse("kill-broker", ["3", "--graceful"]).graceful is True
    assert F.parse("heal", ["--all"]).all_ is True and F.parse("heal", []).all_ is False
    assert F.parse("rolling-restart", ["--kill"]).kill is True
    a = F.parse("kill-leader", ["smoke", "0"])
    assert (a.topic, a.partition) == ("smoke", 0)
    # an unknown argument is an error (exit 1) where bash said so, a usage error (2) elsewhere
    with pytest.raises(F.ChaosError, match="unknown argument: --bogus"):
        F.parse("kill-broker", ["3", "--bogus"])
    with pytest.raises(F.ChaosError, match="broker id"):
        F.parse("partition-broker", ["9"])
    for name, argv in (("heal", ["--bogus"]), ("kill-leader", ["smoke", "x"]), ("kill-leader", ["smoke"]),
                       ("restart-broker", ["1", "2"]), ("kill-controller", ["1"]), ("unpause-broker", [])):
        with pytest.raises(SystemExit) as e:
            F.parse(name, argv)
        assert e.value.code == 2, (name, argv)
    with pytest.raises(F.ChaosError, match="unknown command"):
        F.parse("kill-everything", [])


def test_main_exit_codes_and_killed_line(capsys):
    st = FakeState(leader=3)
    d = FakeDocker()
    assert F.main(["kill-leader", "smoke", "0"], connect=lambda: faults(d, st)) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "killed=3"
    assert ("kill", "c3") in d.calls
    assert F.main(["kill-controller"], connect=lambda: faults(FakeDocker(), FakeState(controller=1))) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "killed=1"
    # the cluster does not react in time: 1, no killed= line
    slow = FakeState(controller=1, waits={"controller-moved": False})
    assert F.main(["kill-controller"], connect=lambda: faults(FakeDocker(), slow)) == 1
    assert "killed=" not in capsys.readouterr().out
    # a request that does not fit the state: 1 with the reason
    assert F.main(["unpause-broker", "2"], connect=lambda: faults()) == 1
    assert "[chaos] error: broker2 is running, not paused" in capsys.readouterr().err
    assert F.main(["kill-broker", "7"], connect=lambda: pytest.fail("connected")) == 1
    assert F.main(["kill-leader", "smoke", "0"], connect=lambda: faults(FakeDocker(), FakeState(leader=-1))) == 1
    assert "smoke-0 has no leader (got '-1')" in capsys.readouterr().err


# ---- what each command does to the containers


def test_rolling_restart_goes_controller_last_and_heals_between_brokers():
    assert F.restart_order([1, 2, 3], 2) == [1, 3, 2]
    assert F.restart_order([1, 2, 3], 1) == [2, 3, 1]
    assert F.restart_order([3, 1, 2], -1) == [1, 2, 3]
    d, st = FakeDocker(), FakeState(controller=2)
    assert faults(d, st).rolling_restart() == [1, 3, 2]
    assert d.calls == [("stop", "-t", "30", "c1"), ("start", "c1"), ("stop", "-t", "30", "c3"), ("start", "c3"),
                       ("stop", "-t", "30", "c2"), ("start", "c2")]
    assert st.waited == [("healed",)] * 3
    assert st.shown[-1] == "after restarting broker2"
    d = FakeDocker()
    faults(d, FakeState(controller=3)).rolling_restart(kill=True)
    assert d.calls == [("kill", "c1"), ("start", "c1"), ("kill", "c2"), ("start", "c2"), ("kill", "c3"), ("start", "c3")]


def test_rolling_restart_stops_when_the_cluster_does_not_heal():
    d, st = FakeDocker(), FakeState(controller=1, waits={"healed": False})
    with pytest.raises(F.NotReached):
        faults(d, st).rolling_restart()
    assert d.calls == [("stop", "-t", "30", "c2"), ("start", "c2")]


def test_kill_broker_unpauses_first_and_graceful_stops():
    d = FakeDocker(status={1: "running", 2: "paused", 3: "running"})
    st = FakeState()
    faults(d, st).kill_broker(2)
    assert d.calls == [("unpause", "c2"), ("kill", "c2")] and st.waited == [("no-leader-on", 2)]
    d = FakeDocker()
    faults(d, FakeState()).kill_broker(1, graceful=True)
    assert d.calls == [("stop", "-t", "30", "c1")]
    with pytest.raises(F.ChaosError, match="broker1 is exited, not running"):
        faults(d, FakeState()).kill_broker(1)


def test_pause_with_seconds_holds_for_the_requested_time_then_unpauses_and_heals():
    clock = Clock()
    d, st = FakeDocker(), FakeState()
    faults(d, st, clock).pause_broker(2, 6.0)
    assert d.calls == [("pause", "c2"), ("unpause", "c2")]
    assert clock.slept == [6.0]  # the fake wait took no time: all of S is slept
    assert st.waited == [("no-leader-on", 2), ("healed",)]
    assert d.st[2] == "running"


def test_pause_with_seconds_is_undone_when_interrupted():
    clock = Clock()

    def interrupted(s):
        raise KeyboardInterrupt

    clock.sleep = interrupted
    d = FakeDocker()
    with pytest.raises(KeyboardInterrupt):
        faults(d, FakeState(), clock).pause_broker(3, 10.0)
    assert d.calls == [("pause", "c3"), ("unpause", "c3")] and d.st[3] == "running"


def test_partition_with_seconds_is_undone_when_the_wait_fails():
    d = FakeDocker()
    st = FakeState(waits={"no-leader-on": F.ChaosError("boom")})
    with pytest.raises(F.ChaosError, match="boom"):
        faults(d, st).partition_broker(1, 6.0)
    assert verbs(d) == ["disconnect", "connect"] and d.on_net[1]
    assert ("network", "connect", "--alias", "broker1", "--alias", "abc123", "proj_raftka", "c1") in d.calls


def test_partition_refuses_a_broker_already_cut_off():
    d = FakeDocker(connected={1: False, 2: True, 3: True})
    with pytest.raises(F.ChaosError, match="broker1 is already cut off"):
        faults(d).partition_broker(1)
    assert d.calls == []


def test_heal_reconnects_a_broker_cut_off_by_another_process_with_its_service_alias():
    # partition-broker ran in another process: this one remembers no aliases
    d = FakeDocker(status={1: "running", 2: "paused", 3: "exited"}, connected={1: False, 2: True, 3: True})
    st = FakeState()
    faults(d, st).heal()
    assert d.calls == [("network", "connect", "--alias", "broker1", "proj_raftka", "c1"), ("unpause", "c2")]
    assert st.waited == []  # broker3 is down on purpose: no full heal to wait for
    faults(d, st).heal(all_=True)
    assert d.calls[-1] == ("start", "c3") and st.waited == [("healed",)]


def test_restart_waits_only_for_its_broker_when_another_is_down():
    d = FakeDocker(status={1: "exited", 2: "running", 3: "exited"})
    st = FakeState()
    faults(d, st).restart_broker(3)
    assert d.calls == [("start", "c3")] and st.waited == []  # broker1 is still down
    d = FakeDocker(connected={1: True, 2: True, 3: False})
    faults(d, st).restart_broker(3)
    assert verbs(d) == ["kill", "connect", "start"] and st.waited == [("healed",)]


def test_wait_healthy_has_a_deadline():
    d = FakeDocker(status={1: "exited", 2: "running", 3: "running"})
    f = F.Faults(d, FakeState(), timeout=0.3, sleep=lambda s: None)
    with pytest.raises(F.ChaosError, match="broker1 is exited/unhealthy after 0.3s"):
        f.wait_healthy(1)


# ---- where the cluster is: the state file


def test_env_file_parsing_undoes_bash_printf_q(tmp_path):
    text = subprocess.run(["bash", "-c", "printf 'A=%q\\nB=%q\\nC=%q\\n' plain '/x/a b.properties' ''"],
                          capture_output=True, text=True, check=True).stdout
    text += "# a comment\nexport D=4\nnot a line\n"
    assert S.parse_env_file(text) == {"A": "plain", "B": "/x/a b.properties", "C": "", "D": "4"}


def test_load_target_reads_the_projects_state_file_which_wins(tmp_path):
    (tmp_path / ".run" / "docker").mkdir(parents=True)
    (tmp_path / ".run" / "docker" / "p2.env").write_text(
        "RAFTKA_DOCKER_PROJECT=p2\nRAFTKA_EXTERNAL_HOST=127.0.0.1\nRAFTKA_EXTERNAL_PORT_1=18392\n"
        "RAFTKA_EXTERNAL_PORT_2=18393\nRAFTKA_EXTERNAL_PORT_3=18394\nRAFTKA_CLIENT_CONFIG=/c.properties\n")
    env = {"COMPOSE_PROJECT_NAME": "p2", "RAFTKA_DOCKER_PROJECT": "other", "RAFTKA_EXTERNAL_PORT_1": "1"}
    t = S.load_target(env, repo=tmp_path)
    assert t.project == "p2" and t.bootstrap == "127.0.0.1:18392,127.0.0.1:18393,127.0.0.1:18394"
    assert env["RAFTKA_CLIENT_CONFIG"] == "/c.properties" and env["RAFTKA_DOCKER_PROJECT"] == "p2"
    # no state file: the environment's ports, else the defaults
    t = S.load_target({"RAFTKA_DOCKER_PROJECT": "p3", "RAFTKA_EXTERNAL_PORT_2": "20000"}, repo=tmp_path)
    assert t.project == "p3" and t.bootstrap == "localhost:19092,localhost:20000,localhost:19094"
    assert S.load_target({}, repo=tmp_path).project == "raftka"
    with pytest.raises(ValueError, match="RAFTKA_EXTERNAL_PORT_1"):
        S.load_target({"RAFTKA_EXTERNAL_PORT_1": "x"}, repo=tmp_path)


def test_chaos_timeout_from_the_environment():
    assert F.chaos_timeout({}) == 60.0 and F.chaos_timeout({"RAFTKA_CHAOS_TIMEOUT": "5"}) == 5.0
    with pytest.raises(F.ChaosError):
        F.chaos_timeout({"RAFTKA_CHAOS_TIMEOUT": "soon"})


# ---- the state's conditions and CLI


def view(b, controller, leader=1, isr=(1, 2, 3)):
    return {"broker": b, "answered_by": b, "controller": controller, "brokers": {1: "", 2: "", 3: ""},
            "topics": {"t": {"partitions": {0: {"leader": leader, "replicas": [1, 2, 3], "isr": list(isr)}}}}}


def snap(views, statuses=("running",) * 3):
    return {"containers": {i + 1: {"status": s, "health": "healthy"} for i, s in enumerate(statuses)},
            "views": views, "best": S.best(views)}


def test_best_view_and_conditions():
    # a cut-off former controller (broker 1) still names itself: the controller's own view wins
    stale = dict(view(1, 1), answered_by=2)
    vs = {1: stale, 2: view(2, 2, leader=2), 3: view(3, 2, leader=2)}
    assert S.best(vs)["controller"] == 2
    s = snap(vs)
    assert S.cond_no_leader_on(s, 1)[0] and not S.cond_no_leader_on(s, 2)[0]
    assert S.cond_leader_moved(s, "t", 0, 1)[0] and not S.cond_leader_moved(s, "t", 0, 2)[0]
    assert S.cond_controller_moved(s, 1)[0]
    ok, why = S.cond_healed(s, 3)
    assert not ok and "disagree" in why
    healed = snap({b: view(b, 2) for b in (1, 2, 3)})
    assert S.cond_healed(healed, 3)[0]
    assert not S.cond_healed(snap({b: view(b, 2, isr=(1, 2)) for b in (1, 2, 3)}), 3)[0]
    assert S.cond_healed(snap({b: view(b, 2) for b in (1, 2, 3)}, ("running", "paused", "running")), 3) == \
        (False, "broker2 container is paused")


class CliState(FakeState):
    def snapshot(self, timeout=2.0, settle=None):
        return {"time": 0, "containers": {}, "views": {}, "best": None}

    def print(self, line="", err=False):
        print(line)


def test_state_cli_defaults_to_show_and_reports_waits(capsys):
    st = CliState()
    assert S.main([], state=st) == 0 and st.shown == [None]
    assert S.main(["--json"], state=st) == 0
    assert json.loads(capsys.readouterr().out)["best"] is None
    assert S.main(["controller"], state=st) == 0 and capsys.readouterr().out.strip() == "2"
    assert S.main(["wait", "ready", "--brokers", "3"], state=st) == 0 and st.waited[-1] == ("ready",)
    st.waits["healed"] = False
    assert S.main(["wait", "healed"], state=st) == 1
    with pytest.raises(SystemExit) as e:
        S.main(["wait", "leader-moved", "t"], state=st)
    assert e.value.code == 2
