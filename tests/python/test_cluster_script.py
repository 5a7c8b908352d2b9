"""scripts/cluster's own contract (other tools parse its output)."""

import re

from helpers import kcat


def test_status_pause_resume(cluster):
    [(bid, (port, pid, state))] = cluster.status().items()
    assert (bid, state) == (1, "running") and pid and port == cluster.port_base
    assert cluster.bootstrap == f"127.0.0.1:{cluster.port_base}"
    assert cluster.run("bootstrap").stdout.strip() == f"bootstrap={cluster.bootstrap}"

    cluster.pause(1)
    assert cluster.status()[1] == (port, pid, "paused")
    cluster.resume(1)
    assert cluster.status()[1] == (port, pid, "running")
    assert "broker 1 at" in kcat("-b", cluster.bootstrap, "-L", "-m", "5").stdout.decode()


def test_refuses_double_start_and_bad_ids(cluster):
    assert cluster.run("start", 1, check=False).returncode != 0
    assert cluster.run("up", 1, check=False).returncode != 0
    assert cluster.run("stop", 2, check=False).returncode != 0
    assert cluster.status()[1][2] == "running"


def test_stop_kill_start_cycle(cluster):
    pid = cluster.status()[1][1]
    cluster.stop(1)
    assert cluster.status()[1][1:] == (None, "stopped")
    cluster.stop(1)  # stopping a stopped broker is fine
    assert cluster.start(1) == cluster.bootstrap
    cluster.kill(1)
    assert cluster.status()[1][2] == "stopped"
    out = cluster.run("start", 1)
    assert out.stdout.strip().splitlines()[-1] == f"bootstrap={cluster.bootstrap}"
    new_pid = cluster.status()[1][1]
    assert new_pid and new_pid != pid
    log = cluster.log()
    starts = re.findall(r"^=== scripts/cluster: starting broker 1 .*--node\.id 1 --listeners PLAINTEXT://127\.0\.0\.1:\d+ --log\.dirs \S+/broker-1/data", log, re.M)
    assert len(starts) == 3
