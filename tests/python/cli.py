"""Runs the `raftka` admin CLI (the broker binary's `cluster|topic|group` commands)."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def raftka_binary():
    """RAFTKA_BIN, else a built target/{debug,release}/raftka (the newer one)."""
    b = os.environ.get("RAFTKA_BIN")
    if b:
        return b if os.path.isabs(b) else str(REPO / b)
    cands = [REPO / "target" / d / "raftka" for d in ("debug", "release")]
    cands = [c for c in cands if c.exists()]
    if not cands:
        raise RuntimeError("no raftka binary: set RAFTKA_BIN or run cargo build --bin raftka")
    return str(max(cands, key=lambda c: c.stat().st_mtime))


def raftka(*args, input=None, timeout=60, check=True):
    """Runs `raftka ARGS…`; returns the CompletedProcess (text mode)."""
    proc = subprocess.run(
        [raftka_binary(), *map(str, args)],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"raftka {' '.join(map(str, args))} exited {proc.returncode}\n"
            f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}"
        )
    return proc
