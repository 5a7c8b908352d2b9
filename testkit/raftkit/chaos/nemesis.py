"""The nemesis: a seeded schedule of faults, one at a time.

Loop until the duration is used up: wait a quiet interval (uniform in ``interval``), pick a
fault kind (uniform over the requested kinds), pick a target, make the fault, hold it (uniform
in ``hold``), heal it. The target is, with equal odds, a random broker, the leader of a random
partition of the test topic, or the metadata controller (the quorum leader), as reported by
Metadata just before the fault. Every fault is recorded with the partitions its broker led and
whether it was the controller.

The random choices all come from ``random.Random(seed)``, so a seed replays the same sequence
of waits, kinds, holds and target policies; which broker a policy resolves to depends on the
cluster's state at that moment (leaders move), so a replay is close, not identical.
"""

from __future__ import annotations

import random
import threading
import time

from .. import kafkameta
from .history import Fault

now = time.monotonic


class Nemesis(threading.Thread):
    def __init__(self, backend, rec, topic, kinds, seed, duration, interval=(3.0, 10.0),
                 hold=(2.0, 8.0), log=print):
        super().__init__(name="nemesis", daemon=True)
        self.backend, self.rec, self.topic = backend, rec, topic
        self.kinds = list(kinds)
        self.rng = random.Random(seed)
        self.duration = duration
        self.interval, self.hold = interval, hold
        self.log = log
        self.stop_ev = threading.Event()
        self.error = None
        self.current = None

    def roles(self):
        """({broker: [partitions led]}, controller id) from the first broker that answers."""
        addrs = [self.backend.address(b) for b in self.backend.brokers]
        self.rng_shuffle_free(addrs)
        _a, md = kafkameta.first_answer(addrs, [self.topic])
        if md is None:
            return {}, None
        led = {}
        for p, (leader, _e, _r, _isr) in (kafkameta.partitions(md, self.topic) or {}).items():
            led.setdefault(leader, []).append(p)
        return led, md.get("controller_id")

    @staticmethod
    def rng_shuffle_free(xs):
        # not from the seeded generator: which broker answers must not shift the schedule
        random.shuffle(xs)

    def choose_target(self, policy, led, controller, u_part, u_broker):
        """The broker a policy resolves to; u_part, u_broker in [0, 1) are drawn for every
        fault whatever the policy, so the seeded sequence never depends on the cluster."""
        brokers = self.backend.brokers
        if policy == "leader":
            parts = sorted((p, b) for b, ps in led.items() for p in ps if b in brokers)
            if parts:
                return parts[int(u_part * len(parts))][1]
        if policy == "controller" and controller in brokers:
            return controller
        return brokers[int(u_broker * len(brokers))]

    def run(self):
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - reported by the run, which then heals
            self.error = e
            self.log(f"nemesis: error: {e!r}")

    def _run(self):
        t_end = now() + self.duration
        n = 0
        while not self.stop_ev.is_set():
            quiet = self.rng.uniform(*self.interval)
            kind = self.rng.choice(self.kinds)
            policy = self.rng.choice(["random", "leader", "controller"])
            hold = self.rng.uniform(*self.hold)
            u_part, u_broker = self.rng.random(), self.rng.random()
            if now() + quiet + hold > t_end:
                break
            if self.stop_ev.wait(quiet):
                break
            led, controller = self.roles()
            b = self.choose_target(policy, led, controller, u_part, u_broker)
            n += 1
            f = Fault(kind, b, now(), None, sorted(led.get(b, [])), controller == b,
                      note=f"target policy {policy}, hold {hold:.1f}s")
            self.current = f
            self.rec.add("faults", f)
            self.log(f"fault {n}: {kind} broker {b} ({policy}; leads {f.led or 'nothing'}"
                     f"{', controller' if f.controller else ''}) for {hold:.1f}s")
            try:
                self.backend.inject(kind, b)
                f.t_effect = now()
            except Exception as e:  # noqa: BLE001 - recorded; heal anyway, go on
                f.note += f"; inject failed: {e}"
                self.log(f"fault {n}: {kind} broker {b} failed: {e}")
            self.stop_ev.wait(hold)
            self.backend.heal(kind, b)
            f.t_heal = now()
            self.current = None
            self.log(f"fault {n}: healed ({kind} broker {b}) after {f.t_heal - f.t_start:.1f}s")

    def stop(self):
        self.stop_ev.set()
        self.join(900)
