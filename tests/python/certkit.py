"""Certificates for TLS tests, made with openssl through scripts/make-certs.

``make_ca(dir)`` makes ``dir/ca.pem``; ``make_server(dir, name)`` and
``make_client(dir, name, subject)`` make ``dir/<name>.pem`` and ``dir/<name>.key`` signed by it.
"""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAKE_CERTS = REPO / "scripts" / "make-certs"


def _run(*args):
    subprocess.run([str(MAKE_CERTS), *map(str, args)], check=True, capture_output=True, timeout=60)


def make_ca(directory):
    _run("ca", directory)
    return Path(directory) / "ca.pem"


def make_server(directory, name, *hosts):
    """(certificate path, key path) of a server certificate for localhost/127.0.0.1 (+ hosts)."""
    _run("server", directory, name, *hosts)
    return Path(directory) / f"{name}.pem", Path(directory) / f"{name}.key"


def make_client(directory, name, subject):
    """(certificate path, key path) of a client certificate with ``subject`` (/O=x/CN=y)."""
    _run("client", directory, name, subject)
    return Path(directory) / f"{name}.pem", Path(directory) / f"{name}.key"
