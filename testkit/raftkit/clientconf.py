"""Client security settings for every Kafka client of the chaos scripts (issue 13).

A secured cluster (``RAFTKA_SECURE=1 scripts/cluster up``, ``scripts/docker-cluster`` with
``RAFTKA_SECURE=1``) serves clients on SASL_SSL only. Its librdkafka settings live in a
properties file (one ``key=value`` a line, ``#`` comments), e.g.::

    security.protocol=SASL_SSL
    ssl.ca.location=/path/to/ca.pem
    sasl.mechanisms=SCRAM-SHA-512
    sasl.username=admin
    sasl.password=...

``RAFTKA_CLIENT_CONFIG`` names that file (``scripts/chaos/verify --client-config FILE`` sets
it; both secured clusters write one, see ``find_for_run_dir`` and .run/docker/<project>.env).
``secure(conf)`` adds its settings to a confluent-kafka config; ``kafkameta`` uses them for its
raw Metadata requests (TLS, then SASL with the mechanism named).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "RAFTKA_CLIENT_CONFIG"


def load(path=None):
    """The settings of the file ``path`` (default: $RAFTKA_CLIENT_CONFIG); {} without one."""
    path = path or os.environ.get(ENV)
    if not path:
        return {}
    out = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def secure(conf):
    """``conf`` plus the security settings (they win over nothing in conf: a caller's own
    security settings are kept)."""
    extra = load()
    return {**extra, **conf} if extra else conf


def find_for_run_dir(run_dir):
    """The client settings a secured ``scripts/cluster`` wrote in ``run_dir``, if any."""
    if run_dir:
        p = Path(run_dir) / "secure" / "client.properties"
        if p.exists():
            return str(p)
    return None
