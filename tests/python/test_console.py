"""The web console (GET / on the HTTP admin listener) in a real browser: headless Chromium from
Debian, driven through the DevTools protocol, loads the page from broker 1 of a three-broker
cluster, shows the three brokers and the topic's partitions, and — without a reload — shows a
killed broker as down and the new leaders of its partitions within a few seconds. Screenshots
before and after are kept in the test's tmp directory (printed with -s)."""

import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.request

import pytest
import websocket
from confluent_kafka.admin import NewTopic

from helpers import admin, topic_name, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test installs it)")


class Browser:
    """One headless Chromium with one page, spoken to over the DevTools protocol."""

    def __init__(self, url, tmp):
        profile = tmp / "chromium-profile"
        self.log = open(tmp / "chromium.log", "wb")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--remote-debugging-port=0", "--remote-allow-origins=*",
             f"--user-data-dir={profile}", "--window-size=1500,1000", url],
            stdout=self.log, stderr=subprocess.STDOUT)
        port_file = profile / "DevToolsActivePort"
        port = wait_until(lambda: port_file.exists() and port_file.read_text().split("\n")[0],
                          timeout=30, what="Chromium's DevTools port")

        def page():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                return next((t for t in json.load(r) if t["type"] == "page"), None)

        target = wait_until(page, timeout=15, what="Chromium's page target")
        self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=15, suppress_origin=True)
        self.ids = itertools.count(1)

    def call(self, method, **params):
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == i:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg["result"]

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path):
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.log.close()


BROKERS_JS = ("JSON.stringify(Array.from(document.querySelectorAll('#brokers tbody tr'))"
              ".map(r => [Number(r.dataset.broker), r.dataset.state]))")


def partitions_js(topic):
    return ("JSON.stringify(Array.from(document.querySelectorAll('#partitions tbody tr'))"
            f".filter(r => r.dataset.topic === {json.dumps(topic)})"
            ".map(r => [Number(r.dataset.partition), Number(r.dataset.leader), r.dataset.isr]))")


def test_console_shows_a_failover_live(cluster3, tmp_path):
    c = cluster3
    name = topic_name("console")
    a = admin(c.address(1))  # kept alive until the future is done
    a.create_topics([NewTopic(name, num_partitions=3, replication_factor=3)],
                    operation_timeout=15)[name].result(30)
    view = c.wait_settled(name, via=c.ids())
    victim = next(b for b in (3, 2) if any(v[0] == b for v in view.values()))
    led = sorted(p for p, v in view.items() if v[0] == victim)

    b = Browser(f"http://{c.http_address(1)}/", tmp_path)
    try:
        brokers = wait_until(lambda: dict(json.loads(b.eval(BROKERS_JS) or "[]")) or None, timeout=15,
                             what="the console's broker table")
        assert brokers == {1: "up", 2: "up", 3: "up"}, brokers
        parts = json.loads(b.eval(partitions_js(name)))
        assert sorted(p for p, _, _ in parts) == [0, 1, 2]
        assert {p: leader for p, leader, _ in parts} == {p: v[0] for p, v in view.items()}
        print("console before:", b.screenshot(tmp_path / "console-before.png"))

        c.kill(victim)
        killed = time.monotonic()

        def failed_over():
            states = dict(json.loads(b.eval(BROKERS_JS)))
            leaders = {p: leader for p, leader, _ in json.loads(b.eval(partitions_js(name)))}
            moved = all(leaders[p] not in (victim, -1) for p in led)
            return (states, leaders) if states.get(victim) == "fenced" and moved else None

        states, leaders = wait_until(failed_over, timeout=15, interval=0.2,
                                     what=f"the console showing broker {victim} down and new leaders")
        seconds = time.monotonic() - killed
        assert states == {**{i: "up" for i in (1, 2, 3) if i != victim}, victim: "fenced"}
        text = b.eval("document.querySelector('#brokers tr[data-broker=\"%d\"]').innerText" % victim)
        assert "down" in text, text
        kinds = json.loads(b.eval("JSON.stringify(Array.from(document.querySelectorAll('#events div'))"
                                  ".map(d => d.dataset.kind))"))
        assert "broker_fenced" in kinds and "leader_changed" in kinds, kinds
        print(f"console showed the failover {seconds:.1f} s after the kill:",
              b.screenshot(tmp_path / "console-after.png"))
    finally:
        b.close()
