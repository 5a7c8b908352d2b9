"""Kafka's per-listener TLS settings: `listener.name.<listener>.ssl.*` (issue 13, item 6).

One broker binds two SSL listeners. INTERNAL uses the `ssl.*` settings (certificate
`broker`, no client certificates); EXTERNAL overrides its key and certificate in the config
file (`listener.name.external.ssl.key.location` …, certificate `other`) and asks for client
certificates through the environment (`RAFTKA_LISTENER_NAME_EXTERNAL_SSL_CLIENT_AUTH=required`).
Each listener must present its own certificate, and confluent-kafka without a certificate is
served on INTERNAL only.
"""

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer

import certkit
from conftest import free_port_base
from helpers import wait_until

REPO = Path(__file__).resolve().parents[2]


def _bin():
    b = os.environ.get("RAFTKA_BIN")
    if b:
        return b
    subprocess.run(["cargo", "build", "--release", "--bin", "raftka"], cwd=REPO, check=True)
    return str(REPO / "target" / "release" / "raftka")


@pytest.fixture(scope="module")
def broker():
    d = Path(tempfile.mkdtemp(prefix="raftka-listener-tls-"))
    certkit.make_ca(d)
    certkit.make_server(d, "broker")
    certkit.make_server(d, "other")
    certkit.make_client(d, "alice", "/O=raftka/CN=alice")
    base = free_port_base(brokers=2)
    ports = {"INTERNAL": base, "EXTERNAL": base + 1}
    (d / "broker.properties").write_text(
        f"listener.name.external.ssl.key.location={d / 'other.key'}\n"
        f"listener.name.external.ssl.certificate.location={d / 'other.pem'}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTKA_")}
    env["RAFTKA_LISTENER_NAME_EXTERNAL_SSL_CLIENT_AUTH"] = "required"
    log = d / "broker.log"
    proc = subprocess.Popen(
        [
            _bin(), "--config", str(d / "broker.properties"),
            "--listeners", ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items()),
            "--listener.security.protocol.map", "INTERNAL:SSL,EXTERNAL:SSL",
            "--http.listener", f"127.0.0.1:{base + 2}",
            "--log.dirs", str(d / "data"),
            "--ssl.key.location", str(d / "broker.key"),
            "--ssl.certificate.location", str(d / "broker.pem"),
            "--ssl.truststore.location", str(d / "ca.pem"),
        ],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env,
    )

    def listening():
        assert proc.poll() is None, log.read_text()
        with socket.create_connection(("127.0.0.1", ports["EXTERNAL"]), timeout=1):
            return True

    try:
        wait_until(listening, timeout=30, what="broker listening")
        yield d, ports
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(d, ignore_errors=True)


def served_cn(port, certs):
    """The subject CN of the certificate a listener presents (with alice's certificate, which
    either listener accepts)."""
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.load_cert_chain(certs / "alice.pem", certs / "alice.key")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return dict(x[0] for x in s.getpeercert()["subject"])["commonName"]


def conf(port, certs, cert=None):
    c = {"bootstrap.servers": f"localhost:{port}", "security.protocol": "SSL",
         "ssl.ca.location": str(certs / "ca.pem")}
    if cert:
        c.update({"ssl.certificate.location": str(certs / f"{cert}.pem"),
                  "ssl.key.location": str(certs / f"{cert}.key")})
    return c


def test_each_listener_presents_its_own_certificate(broker):
    certs, ports = broker
    assert served_cn(ports["INTERNAL"], certs) == "broker"
    assert served_cn(ports["EXTERNAL"], certs) == "other"


def test_client_certificates_are_required_on_the_overriding_listener_only(broker):
    certs, ports = broker
    md = Producer(conf(ports["INTERNAL"], certs)).list_topics(timeout=20)
    assert 1 in md.brokers
    with pytest.raises(KafkaException):
        Producer(conf(ports["EXTERNAL"], certs)).list_topics(timeout=5)
    md = Producer(conf(ports["EXTERNAL"], certs, cert="alice")).list_topics(timeout=20)
    assert 1 in md.brokers
