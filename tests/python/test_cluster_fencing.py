"""A dead broker stays fenced and out of every ISR until it really restarts, whatever happens to
the controller meanwhile (issue 10, item 10).

Four brokers, 1-3 voters of the metadata quorum and 4 a learner (`RAFTKA_CLUSTER_VOTERS=3`), so
the quorum survives broker 4 *and* one voter being down. Broker 4 is SIGKILLed and fenced; then

- the controller is paused for longer than half a session but shorter than an election timeout
  (the election timeout is raised for this module), so it keeps its leadership but resumes
  after a gap and becomes active afresh (the path of a missed leadership confirmation: it
  forgets every heartbeat it heard), and
- the controller is SIGKILLed, so another voter becomes controller with no heartbeats heard,

and through both, every running broker's Metadata is polled: broker 4 must never lead a partition
(Metadata may list a dead fenced broker for a moment but never names it leader) nor appear in an
ISR, and no controller may log that it unfenced broker 4. Kafka's rule: only a heartbeat from the broker itself unfences it. Finally
broker 4 restarts and does come back into every ISR, so the watched condition is reachable.
"""

import re
import time

import pytest
from confluent_kafka.admin import NewTopic

from conftest import CLUSTER3_ENV, Cluster, free_port_base
from helpers import admin, topic_name, wait_until

BROKERS = [1, 2, 3, 4]
DEAD = 4
PARTITIONS = 8
SESSION_MS = 1500
# An election timeout well above the short pause below, so that pause does not move leadership.
ELECTION_TIMEOUT_MS = 2500
# Longer than half a session (the controller's "long gap" reset) and than one session (every
# lease looks expired), shorter than the election timeout.
SHORT_PAUSE_SECONDS = 1.6
# How long to keep watching after each fault: two sessions and more, by which time a wrongly
# unfenced broker would have been unfenced (the old bug did it on the first controller tick).
WATCH_SECONDS = 2 * SESSION_MS / 1000 + 2


@pytest.fixture(scope="module")
def cluster4(request, tmp_path_factory):
    env = {
        **CLUSTER3_ENV,
        "RAFTKA_CLUSTER_VOTERS": "3",
        "RAFTKA_BROKER_SESSION_TIMEOUT_MS": str(SESSION_MS),
        "RAFTKA_CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS": str(ELECTION_TIMEOUT_MS),
    }
    c = Cluster(tmp_path_factory.mktemp("cluster4-fencing"), free_port_base(4), env)
    request.module._raftka_cluster = c
    c.up(4)
    try:
        c.wait_brokers(expected=BROKERS)
        yield c
    finally:
        c.down()


def dead_broker_sightings(c, topic, via):
    """Where the brokers in `via` show DEAD as live right now: leading, or in an ISR."""
    seen = []
    for b in via:
        try:
            md = c.metadata(b, [topic], timeout=1.0)
        except Exception:  # noqa: BLE001 - a broker catching up may not answer one poll
            continue
        for t in md["topics"]:
            for p in t["partitions"]:
                if p["leader_id"] == DEAD:
                    seen.append(f"broker {b}: {t['name']}-{p['partition_index']} led by {DEAD}")
                if DEAD in p["isr_nodes"]:
                    seen.append(f"broker {b}: {t['name']}-{p['partition_index']} ISR {p['isr_nodes']}")
    return seen


def watch(c, topic, via, seconds):
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        seen += dead_broker_sightings(c, topic, via)
        time.sleep(0.05)
    return seen


def unfencings_of_dead(c, offsets):
    """Log lines, written after `offsets` (bytes per broker log), saying broker DEAD was
    unfenced."""
    out = []
    pattern = re.compile(rf"unfencing broker.*\bbroker={DEAD}\b")
    for b, start in offsets.items():
        text = c.log(b)
        out += [f"broker {b}: {line}" for line in text[start:].splitlines() if pattern.search(line)]
    return out


def log_offsets(c, brokers):
    return {b: len(c.log(b)) for b in brokers}


def test_a_dead_broker_stays_fenced_through_controller_resets_and_changes(cluster4):
    c = cluster4
    name = topic_name("fencing")
    a = admin(c.bootstrap)  # kept referenced: the request fails if the client is collected
    a.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=3)],
                    operation_timeout=15)[name].result(timeout=30)
    before = c.wait_settled(name, via=BROKERS, full_isr=True, preferred=True, timeout=60)
    assert any(DEAD in replicas for _l, _e, replicas, _isr in before.values())

    c.kill(DEAD)
    live = [1, 2, 3]
    wait_until(lambda: not dead_broker_sightings(c, name, live), timeout=30,
               what=f"broker {DEAD} fenced and out of every ISR")
    offsets = log_offsets(c, live)

    # 1. The controller stalls past a session without losing leadership: it becomes active
    #    afresh when it resumes.
    controller = c.controller(via=1)
    active_lines = c.log(controller).count("controller active")
    c.pause(controller)
    time.sleep(SHORT_PAUSE_SECONDS)
    c.resume(controller)
    seen = watch(c, name, live, WATCH_SECONDS)
    assert not seen, f"dead broker back after the controller's pause: {seen[:5]}"
    assert c.controller(via=controller) == controller, "the short pause moved leadership"
    assert c.log(controller).count("controller active") > active_lines, (
        "the paused controller did not start its leases afresh (the scenario was not exercised)")

    # 2. The controller dies: another voter takes over, having heard no heartbeats.
    c.kill(controller)
    survivors = [b for b in live if b != controller]
    wait_until(lambda: c.controller(via=survivors[0]) in survivors, timeout=30,
               what="a new controller among the surviving voters")
    seen = watch(c, name, survivors, WATCH_SECONDS)
    assert not seen, f"dead broker back after the controller changed: {seen[:5]}"
    c.start(controller)
    seen = watch(c, name, live, WATCH_SECONDS)
    assert not seen, f"dead broker back after the old controller rejoined: {seen[:5]}"

    bad = unfencings_of_dead(c, offsets)
    assert not bad, f"a controller unfenced dead broker {DEAD}: {bad[:3]}"

    # The broker really restarts: it heartbeats, is unfenced and rejoins every ISR.
    c.start(DEAD)
    c.wait_settled(name, via=BROKERS, full_isr=True, preferred=False, timeout=60)
    assert unfencings_of_dead(c, offsets), "broker 4's restart was not logged as an unfencing"
