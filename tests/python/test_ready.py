"""/health and /ready of the HTTP admin listener on a three-broker cluster, and what the others
report about a paused broker: /ready is 200 on working members; a paused broker is shown fenced
by the others, with the failover in their event timeline, and answers 503 itself when it
resumes, until it has heard from the controller; a broker left alone in a minority
answers /ready 503 "no quorum", reports no controller (Kafka's -1) instead of naming itself, and
is ready again once the others are back."""

import json
import socket

from confluent_kafka.admin import NewTopic

from helpers import admin, topic_name, wait_until
from httpkit import cluster_view, ready


def _all_ready(c, ids):
    return all(ready(c, b)[0] == 200 for b in ids)


def test_working_members_are_ready_and_live(cluster3):
    c = cluster3
    wait_until(lambda: _all_ready(c, c.ids()), timeout=20, what="every broker ready")
    status, body = ready(c, 1)
    assert status == 200 and body["ready"] is True and body["reasons"] == []
    assert c.http_get(2, "/health")[0] == 200
    assert c.http_get(2, "/nope")[0] == 404


def test_a_paused_broker_is_shown_fenced_with_the_failover_in_the_events(cluster3):
    c = cluster3
    name = topic_name("ready-pause")
    a = admin(c.address(1))  # kept alive until the future is done
    a.create_topics([NewTopic(name, num_partitions=3, replication_factor=3)],
                    operation_timeout=15)[name].result(30)
    c.wait_settled(name, via=c.ids())
    ctl = c.controller()
    paused = next(b for b in (3, 2, 1) if b != ctl)
    watcher = ctl
    c.pause(paused)
    try:
        def fenced():
            v = cluster_view(c, watcher)
            state = {b["id"]: b["state"] for b in v["brokers"]}
            return v if state[paused] == "fenced" else None

        v = wait_until(fenced, timeout=15, what=f"broker {paused} shown fenced")
        kinds = [(e["kind"], e.get("broker"), e.get("old")) for e in v["events"]]
        assert ("broker_fenced", paused, None) in kinds
        moved = [e for e in v["events"] if e["kind"] == "leader_changed" and e["old"] == paused
                 and e["topic"] == name]
        assert moved, "the partition the paused broker led got a new leader"
        assert all(e["new"] != paused for e in moved)
        [part] = [p for t in v["topics"] if t["name"] == name for p in t["partitions"]
                  if p["partition"] == moved[0]["partition"]]
        assert part["leader"] == moved[0]["new"] and paused not in part["isr"]
        assert ready(c, watcher)[0] == 200
        # Ask the paused broker itself: the kernel queues the request, and the broker answers
        # it on resuming — before it can have heard from the controller (a network round trip
        # away), so it must not claim to be ready.
        host, port = c.http_address(paused).split(":")
        with socket.create_connection((host, int(port)), timeout=15) as s:
            s.sendall(b"GET /ready HTTP/1.0\r\nHost: raftka\r\n\r\n")
            c.resume(paused)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        head, _, payload = answer.decode().partition("\r\n\r\n")
        status, body = int(head.split()[1]), json.loads(payload)
        assert status == 503 and not body["ready"], body
        assert any("heartbeat" in r or "fenced" in r for r in body["reasons"]), body
    finally:
        c.resume(paused)
    last = []

    def ready_again():
        last[:] = [ready(c, paused)]
        return last[0][0] == 200

    wait_until(ready_again, timeout=20, what=f"the resumed broker ready again (last: {last})")


def test_a_broker_in_a_minority_is_not_ready_and_names_no_controller(cluster3):
    c = cluster3
    wait_until(lambda: _all_ready(c, c.ids()), timeout=20, what="every broker ready")
    lone = 3
    c.kill(1)
    c.kill(2)

    def no_quorum():
        status, body = ready(c, lone)
        return body if status == 503 and any("no quorum" in r for r in body["reasons"]) else None

    body = wait_until(no_quorum, timeout=15, what="the lone broker's /ready 503 no quorum")
    assert body["ready"] is False
    assert c.http_get(lone, "/health")[0] == 200, "still live"
    # Metadata names no controller rather than the lone broker itself
    wait_until(lambda: c.controller(via=lone) == -1, timeout=10, what="controller_id -1 in Metadata")
    assert cluster_view(c, lone)["controller"] is None

    c.start(1)
    c.start(2)
    wait_until(lambda: _all_ready(c, c.ids()), timeout=30, what="every broker ready again")
    assert c.controller(via=lone) in (1, 2, 3)
