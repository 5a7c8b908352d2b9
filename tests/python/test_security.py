"""TLS and SASL on Kafka listeners, with kcat, confluent-kafka and kafka-python.

One broker binds four listeners: SSL (client certificates required), SASL_SSL, SASL_PLAINTEXT
and PLAINTEXT. PLAIN users come from sasl.jaas.config, the first SCRAM user from
sasl.scram.users, and further SCRAM users are created through AlterUserScramCredentials.
Certificates are made with openssl (certkit). Raw-socket checks pin the wire behaviour Kafka
has: error codes of failed handshakes and logins, and closed connections.
"""

import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

import certkit
from conftest import free_port_base
from helpers import topic_name, wait_until

REPO = Path(__file__).resolve().parents[2]
ADMIN_PW = "admin-secret"
JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    'user_alice="alice-secret" user_carol="carol secret";'
)


def _bin():
    b = os.environ.get("RAFTKA_BIN")
    if b:
        return b
    subprocess.run(["cargo", "build", "--release", "--bin", "raftka"], cwd=REPO, check=True)
    return str(REPO / "target" / "release" / "raftka")


class SecureBroker:
    def __init__(self, certs, extra=None):
        base = free_port_base(brokers=2)
        self.ports = {
            "SSL": base,
            "SASL_SSL": base + 1,
            "SASL_PLAINTEXT": base + 100,
            "PLAINTEXT": base + 101,
        }
        self.dir = Path(tempfile.mkdtemp(prefix="raftka-security-"))
        self.certs = certs
        listeners = ",".join(f"{n}://127.0.0.1:{p}" for n, p in self.ports.items())
        args = [
            _bin(),
            "--node.id", "1",
            "--listeners", listeners,
            "--http.listener", f"127.0.0.1:{base + 2}",
            "--raft.listener", f"127.0.0.1:{base + 102}",
            "--log.dirs", str(self.dir / "data"),
            "--ssl.key.location", str(certs / "broker.key"),
            "--ssl.certificate.location", str(certs / "broker.pem"),
            "--ssl.truststore.location", str(certs / "ca.pem"),
            "--ssl.client.auth", "required",
            "--sasl.jaas.config", JAAS,
            "--sasl.scram.users", f"SCRAM-SHA-512=[name=admin,password={ADMIN_PW}]",
            "--group.initial.rebalance.delay.ms", "0",
            *(extra or []),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTKA_")}
        # Connection-level debug lines carry the authenticated principal.
        env["RUST_LOG"] = "info,raftka::server=debug"
        self.log_path = self.dir / "broker.log"
        self.proc = subprocess.Popen(
            args, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT, env=env
        )
        wait_until(self._ready, timeout=30, what="broker listening")

    def _ready(self):
        assert self.proc.poll() is None, self.log()
        with socket.create_connection(("127.0.0.1", self.ports["PLAINTEXT"]), timeout=1):
            return True

    def addr(self, listener):
        return f"127.0.0.1:{self.ports[listener]}"

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def certs():
    d = Path(tempfile.mkdtemp(prefix="raftka-certs-"))
    certkit.make_ca(d)
    certkit.make_server(d, "broker")
    certkit.make_client(d, "alice", "/O=raftka/OU=test/CN=alice")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def broker(request, certs):
    b = SecureBroker(certs)
    request.module._broker = b
    yield b
    b.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # pragma: no cover - report decoration
    outcome = yield
    rep = outcome.get_result()
    b = getattr(item.module, "_broker", None)
    if rep.failed and b is not None:
        rep.sections.append(("raftka broker log (tail)", "\n".join(b.log().splitlines()[-60:])))


def sasl_ssl_conf(broker, user, password, mechanism="SCRAM-SHA-512"):
    return {
        "bootstrap.servers": broker.addr("SASL_SSL"),
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(broker.certs / "ca.pem"),
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def plain_conf(broker, user, password):
    return {
        "bootstrap.servers": broker.addr("SASL_PLAINTEXT"),
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": user,
        "sasl.password": password,
    }


def mtls_conf(broker):
    return {
        "bootstrap.servers": broker.addr("SSL"),
        "security.protocol": "SSL",
        "ssl.ca.location": str(broker.certs / "ca.pem"),
        "ssl.certificate.location": str(broker.certs / "alice.pem"),
        "ssl.key.location": str(broker.certs / "alice.key"),
    }


def confluent_roundtrip(conf):
    """Produces three records and consumes them back through one configuration."""
    topic = topic_name("sec")
    p = Producer({**conf, "message.timeout.ms": 15000})
    for i in range(3):
        p.produce(topic, f"v{i}".encode())
    assert p.flush(20) == 0
    from confluent_kafka import TopicPartition

    c = Consumer({**conf, "group.id": topic, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 3 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert got == [b"v0", b"v1", b"v2"]


def kcat_roundtrip(conf):
    topic = topic_name("seckcat")
    x = []
    for k, v in conf.items():
        if k != "bootstrap.servers":
            x += ["-X", f"{k}={v}"]
    b = ["-b", conf["bootstrap.servers"]]
    subprocess.run(["kcat", "-P", *b, *x, "-t", topic], input=b"one\ntwo\n", check=True, timeout=30)
    out = subprocess.run(
        ["kcat", "-C", *b, *x, "-t", topic, "-o", "beginning", "-c", "2", "-e"],
        capture_output=True, check=True, timeout=30,
    )
    assert out.stdout.split() == [b"one", b"two"]


def kafka_python_roundtrip(**conf):
    from kafka import KafkaConsumer, KafkaProducer

    topic = topic_name("seckp")
    p = KafkaProducer(**conf, request_timeout_ms=15000)
    p.send(topic, b"kp").get(timeout=20)
    p.close()
    c = KafkaConsumer(topic, **conf, auto_offset_reset="earliest", consumer_timeout_ms=15000)
    values = []
    for m in c:
        values.append(m.value)
        break
    c.close()
    assert values == [b"kp"]


# -- raw protocol ------------------------------------------------------------------------------


def _request(api, version, corr, body):
    header = struct.pack(">hhih", api, version, corr, 4) + b"test"
    frame = header + body
    return struct.pack(">i", len(frame)) + frame


def _recv(sock):
    """One response frame, or None when the broker closed (or reset) the connection."""
    try:
        return _recv_frame(sock)
    except ConnectionResetError:
        return None


def _recv_frame(sock):
    buf = b""
    while len(buf) < 4:
        chunk = sock.recv(4 - len(buf))
        if not chunk:
            return None
        buf += chunk
    (size,) = struct.unpack(">i", buf)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _closed(sock, timeout=5):
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def handshake(sock, mechanism, version=1):
    sock.sendall(_request(17, version, 1, _string(mechanism)))
    data = _recv(sock)
    corr, code = struct.unpack(">ih", data[:6])
    assert corr == 1
    return code


def authenticate(sock, token, version=1):
    """(error code, error message, auth bytes, session lifetime) of SaslAuthenticate."""
    sock.sendall(_request(36, version, 2, struct.pack(">i", len(token)) + token))
    data = _recv(sock)
    corr, code, mlen = struct.unpack(">ihh", data[:8])
    pos = 8
    message = None
    if mlen >= 0:
        message = data[pos:pos + mlen].decode()
        pos += mlen
    (blen,) = struct.unpack(">i", data[pos:pos + 4])
    auth = data[pos + 4:pos + 4 + blen]
    pos += 4 + blen
    lifetime = struct.unpack(">q", data[pos:pos + 8])[0] if version >= 1 else None
    return code, message, auth, lifetime


def metadata_ok(sock):
    sock.sendall(_request(3, 0, 9, struct.pack(">i", 0)))
    data = _recv(sock)
    return data is not None and struct.unpack(">i", data[:4])[0] == 9


def plain_socket(broker):
    return socket.create_connection(("127.0.0.1", broker.ports["SASL_PLAINTEXT"]), timeout=5)


# -- tests -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bob(broker):
    """A SCRAM-SHA-512 and SCRAM-SHA-256 user created through AlterUserScramCredentials by the
    admin (who logs in with the sasl.scram.users credential)."""
    a = AdminClient(sasl_ssl_conf(broker, "admin", ADMIN_PW))
    futures = a.alter_user_scram_credentials([
        UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"bob-pw"),
        UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"bob-pw"),
    ])
    for f in futures.values():
        f.result(timeout=20)
    return "bob", "bob-pw"


def test_sasl_ssl_scram_with_three_clients(broker, bob):
    user, pw = bob
    confluent_roundtrip(sasl_ssl_conf(broker, user, pw))
    confluent_roundtrip(sasl_ssl_conf(broker, user, pw, "SCRAM-SHA-256"))
    kcat_roundtrip(sasl_ssl_conf(broker, user, pw))
    kafka_python_roundtrip(
        bootstrap_servers=broker.addr("SASL_SSL"), security_protocol="SASL_SSL",
        ssl_cafile=str(broker.certs / "ca.pem"), sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=user, sasl_plain_password=pw,
    )
    assert "principal=User:bob" in broker.log()


def test_sasl_plaintext_plain_with_three_clients(broker):
    confluent_roundtrip(plain_conf(broker, "alice", "alice-secret"))
    kcat_roundtrip(plain_conf(broker, "carol", "carol secret"))
    kafka_python_roundtrip(
        bootstrap_servers=broker.addr("SASL_PLAINTEXT"), security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN", sasl_plain_username="alice", sasl_plain_password="alice-secret",
    )


def test_mtls_with_three_clients_and_the_certificate_principal(broker):
    confluent_roundtrip(mtls_conf(broker))
    kcat_roundtrip(mtls_conf(broker))
    kafka_python_roundtrip(
        bootstrap_servers=broker.addr("SSL"), security_protocol="SSL",
        ssl_cafile=str(broker.certs / "ca.pem"), ssl_certfile=str(broker.certs / "alice.pem"),
        ssl_keyfile=str(broker.certs / "alice.key"), ssl_check_hostname=True,
    )
    # Kafka's default principal of a client certificate: the full subject, RFC 2253.
    assert "principal=User:CN=alice,OU=test,O=raftka" in broker.log()
    # ssl.client.auth=required: a client without a certificate gets no session.
    ctx = ssl.create_default_context(cafile=str(broker.certs / "ca.pem"))
    with socket.create_connection(("127.0.0.1", broker.ports["SSL"]), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                # TLS 1.3 reports the refused certificate at the first read.
                s.sendall(_request(18, 0, 1, b""))
                if _recv(s) is None:
                    raise ConnectionResetError("closed")


def test_wrong_password_and_unknown_user_fail_with_sasl_authentication_failed(broker, bob):
    for user, pw in [("bob", "nope"), ("ghost", "x")]:
        errors = []
        p = Producer({**sasl_ssl_conf(broker, user, pw), "error_cb": errors.append})
        wait_until(lambda: (p.poll(0.2), errors)[1], timeout=15, what="an authentication error")
        assert any("Authentication failed" in e.str() for e in errors), [e.str() for e in errors]
    # On the wire: SASL_AUTHENTICATION_FAILED (58), then the connection is closed.
    for token in [b"\0alice\0wrong", b"\0nobody\0x"]:
        with plain_socket(broker) as s:
            assert handshake(s, "PLAIN") == 0
            code, message, _, _ = authenticate(s, token)
            assert code == 58 and "Authentication failed" in message
            assert _closed(s)


def test_sasl_listener_refuses_unauthenticated_requests(broker):
    # A Metadata request before authentication: the connection is closed unanswered.
    with plain_socket(broker) as s:
        s.sendall(_request(3, 0, 9, struct.pack(">i", 0)))
        assert _recv(s) is None
    # Before authentication frames are capped at 512 KiB (sasl.server.max.receive.size).
    with plain_socket(broker) as s:
        s.sendall(struct.pack(">i", 1_000_000) + b"\0" * 64)
        assert _recv(s) is None
    # ApiVersions is served before authentication.
    with plain_socket(broker) as s:
        s.sendall(_request(18, 0, 4, b""))
        data = _recv(s)
        assert data is not None and struct.unpack(">ih", data[:6]) == (4, 0)
    # An unknown mechanism: UNSUPPORTED_SASL_MECHANISM (33) listing the enabled ones, closed.
    with plain_socket(broker) as s:
        assert handshake(s, "GSSAPI") == 33
        assert _closed(s)
    # SaslAuthenticate before SaslHandshake: ILLEGAL_SASL_STATE (34), closed.
    with plain_socket(broker) as s:
        assert authenticate(s, b"\0alice\0alice-secret")[0] == 34
        assert _closed(s)
    # A client without SASL settings never gets metadata.
    errors = []
    p = Producer({"bootstrap.servers": broker.addr("SASL_PLAINTEXT"), "error_cb": errors.append})
    md = None
    with pytest.raises(KafkaException):
        md = p.list_topics(timeout=3)
    assert md is None
    # SaslHandshake v0: the token follows as a bare size-prefixed frame, answered the same way.
    with plain_socket(broker) as s:
        assert handshake(s, "PLAIN", version=0) == 0
        token = b"\0alice\0alice-secret"
        s.sendall(struct.pack(">i", len(token)) + token)
        assert _recv(s) == b""
        assert metadata_ok(s)
    # After a successful login the same connection serves requests.
    with plain_socket(broker) as s:
        assert handshake(s, "PLAIN") == 0
        code, _, _, lifetime = authenticate(s, b"\0alice\0alice-secret")
        assert (code, lifetime) == (0, 0)
        assert metadata_ok(s)


def test_plaintext_listener_closes_a_tls_client_hello_at_once(broker):
    ctx = ssl.create_default_context(cafile=str(broker.certs / "ca.pem"))
    with socket.create_connection(("127.0.0.1", broker.ports["PLAINTEXT"]), timeout=5) as raw:
        started = time.monotonic()
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            ctx.wrap_socket(raw, server_hostname="localhost")
        assert time.monotonic() - started < 2
    wait_until(lambda: "TLS handshake on a listener without TLS" in broker.log(), timeout=5,
               what="the broker's log line")


def test_scram_credential_admin_errors(broker, bob):
    a = AdminClient(sasl_ssl_conf(broker, "admin", ADMIN_PW))
    described = a.describe_user_scram_credentials(["bob"])["bob"].result(timeout=20)
    infos = sorted((i.mechanism, i.iterations) for i in described.scram_credential_infos)
    assert infos == [(ScramMechanism.SCRAM_SHA_256, 4096), (ScramMechanism.SCRAM_SHA_512, 8192)]
    too_few = a.alter_user_scram_credentials([
        UserScramCredentialUpsertion("dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 100), b"pw")
    ])["dave"]
    with pytest.raises(KafkaException) as e:
        too_few.result(timeout=20)
    assert "UNACCEPTABLE_CREDENTIAL" in str(e.value) or "iterations" in str(e.value)
    missing = a.alter_user_scram_credentials([
        UserScramCredentialDeletion("dave", ScramMechanism.SCRAM_SHA_256)
    ])["dave"]
    with pytest.raises(KafkaException) as e:
        missing.result(timeout=20)
    assert "RESOURCE_NOT_FOUND" in str(e.value) or "does not exist" in str(e.value)
    with pytest.raises(KafkaException) as e:
        a.describe_user_scram_credentials(["dave"])["dave"].result(timeout=20)
    assert "RESOURCE_NOT_FOUND" in str(e.value) or "does not exist" in str(e.value)
    # Deleting bob's SCRAM-SHA-256 credential ends SCRAM-SHA-256 logins, not SHA-512 ones.
    a.alter_user_scram_credentials([
        UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256)
    ])["bob"].result(timeout=20)
    with socket.create_connection(("127.0.0.1", broker.ports["SASL_PLAINTEXT"]), timeout=5) as s:
        assert handshake(s, "SCRAM-SHA-256") == 0
        code, message, _, _ = authenticate(s, b"n,,n=bob,r=abcdefgh")
        assert code == 58, message
    confluent_roundtrip(sasl_ssl_conf(broker, "bob", "bob-pw"))


def test_certificate_reload_without_restart(broker):
    def served_serial():
        ctx = ssl.create_default_context(cafile=str(broker.certs / "ca.pem"))
        with socket.create_connection(("127.0.0.1", broker.ports["SASL_SSL"]), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                return s.getpeercert()["serialNumber"]

    before = served_serial()
    certkit.make_server(broker.certs, "broker")  # a new key and certificate in place
    wait_until(lambda: served_serial() != before, timeout=10, what="the new certificate served")
    # Old connections' clients keep working with the new one (same CA).
    confluent_roundtrip(plain_conf(broker, "alice", "alice-secret"))


def test_session_lifetime_and_expiry(certs):
    b = SecureBroker(certs, ["--connections.max.reauth.ms", "1000"])
    try:
        with socket.create_connection(("127.0.0.1", b.ports["SASL_PLAINTEXT"]), timeout=5) as s:
            assert handshake(s, "PLAIN") == 0
            code, _, _, lifetime = authenticate(s, b"\0alice\0alice-secret")
            assert (code, lifetime) == (0, 1000)
            assert metadata_ok(s)
            # Re-authentication (KIP-368) on the same connection renews the session.
            assert handshake(s, "PLAIN") == 0
            assert authenticate(s, b"\0alice\0alice-secret")[:1] == (0,)
            # The session's end is a time, not a condition to poll: wait it out.
            time.sleep(1.2)
            # Expired without re-authentication: the next request closes the connection.
            s.sendall(_request(3, 0, 9, struct.pack(">i", 0)))
            assert _recv(s) is None
        # A client that re-authenticates (librdkafka >= 2.2) keeps working past the lifetime.
        conf = plain_conf(b, "alice", "alice-secret")
        p = Producer(conf)
        topic = topic_name("reauth")
        for _ in range(3):
            p.produce(topic, b"x")
            assert p.flush(15) == 0
            time.sleep(0.6)
        # librdkafka re-authenticated in time: only the raw connection above expired.
        assert b.log().count("SASL session expired") == 1, b.log()
        del p
    finally:
        b.stop()


def test_secrets_are_not_described(broker):
    from confluent_kafka.admin import ConfigResource

    a = AdminClient(sasl_ssl_conf(broker, "admin", ADMIN_PW))
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    entries = a.describe_configs([res])[res].result(timeout=20)
    for name in ("sasl.jaas.config", "sasl.scram.users", "ssl.key.password"):
        assert entries[name].is_sensitive and entries[name].value is None, name
    assert entries["ssl.client.auth"].value == "required"
    log = broker.log()
    assert ADMIN_PW not in log and "alice-secret" not in log


def test_startup_warns_once_about_what_is_open(broker):
    """One WARN line at startup names the PLAINTEXT listener (SASL and required-certificate
    listeners authenticate) and the missing authorizer."""
    lines = [line for line in broker.log().splitlines() if "SECURITY IS OFF" in line]
    assert len(lines) == 1, lines
    assert "WARN" in lines[0] and "PLAINTEXT" in lines[0] and "authorizer" in lines[0], lines[0]
    for authenticated in ("SASL_SSL (", "SASL_PLAINTEXT (", "listener SSL ("):
        assert authenticated not in lines[0], lines[0]
