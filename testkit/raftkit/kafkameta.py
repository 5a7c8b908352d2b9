"""Raw Kafka requests to one chosen broker (no client logic: no retries, no routing, no
metadata refresh), so a caller sees exactly what that broker answers.

A client library's metadata comes from whichever broker it picked; the chaos nemesis, the
settle waits of the tests and the benches need each broker's own view (leaders, leader
epochs, ISRs, the controller), so Metadata v9 goes over a fresh connection to exactly the
broker asked. Uses kafka-python's protocol classes (imported when called). On a secured
cluster (``clientconf``: RAFTKA_CLIENT_CONFIG) the connection is TLS and logs in with SASL
(PLAIN or SCRAM) first. Depends only on ``clientconf`` in the kit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct

from . import clientconf


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def _str(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _call(s, api_key, version, body, correlation):
    """One request with a v1 header (non-flexible APIs); returns the response after its
    correlation id."""
    req = struct.pack(">hhi", api_key, version, correlation) + _str("raftka-chaos-verify") + body
    s.sendall(struct.pack(">i", len(req)) + req)
    size = struct.unpack(">i", _recv_exact(s, 4))[0]
    return _recv_exact(s, size)[4:]


def _scram(mechanism, user, password):
    """An RFC 5802 client: a generator fed the server's messages, yielding the client's."""
    h = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-512": hashlib.sha512}[mechanism]
    name = user.replace("=", "=3D").replace(",", "=2C")
    cnonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n={name},r={cnonce}"
    server_first = (yield ("n,," + first_bare).encode()).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    if not attrs["r"].startswith(cnonce):
        raise ConnectionError("SCRAM: the server's nonce does not extend ours")
    salted = hashlib.pbkdf2_hmac(h().name, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", h).digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth = f"{first_bare},{server_first},{without_proof}".encode()
    sig = hmac.new(h(client_key).digest(), auth, h).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, sig))).decode()
    server_final = (yield f"{without_proof},p={proof}".encode()).decode()
    server_sig = hmac.new(hmac.new(salted, b"Server Key", h).digest(), auth, h).digest()
    if server_final != "v=" + base64.b64encode(server_sig).decode():
        raise ConnectionError(f"SCRAM: the server's signature does not match ({server_final})")
    yield None


def _sasl(s, conf):
    """SaslHandshake v1 and SaslAuthenticate v0 with the mechanism of ``conf`` (PLAIN or
    SCRAM-SHA-256/512)."""
    mech = conf.get("sasl.mechanisms", conf.get("sasl.mechanism", "PLAIN")).upper()
    user, password = conf.get("sasl.username", ""), conf.get("sasl.password", "")
    resp = _call(s, 17, 1, _str(mech), 1)
    if struct.unpack(">h", resp[:2])[0] != 0:
        raise ConnectionError(f"SaslHandshake: the broker does not offer {mech}")
    if mech == "PLAIN":
        steps = iter([f"\0{user}\0{password}".encode(), None])
        send = lambda _reply: next(steps)  # noqa: E731
    else:
        gen = _scram(mech, user, password)
        send = gen.send
    out, corr = send(None), 2
    while out is not None:
        resp = _call(s, 36, 0, struct.pack(">i", len(out)) + out, corr)
        corr += 1
        err = struct.unpack(">h", resp[:2])[0]
        mlen = struct.unpack(">h", resp[2:4])[0]
        msg = resp[4:4 + max(mlen, 0)].decode(errors="replace")
        rest = resp[4 + max(mlen, 0):]
        if err != 0:
            raise ConnectionError(f"SaslAuthenticate failed ({err}): {msg}")
        blen = struct.unpack(">i", rest[:4])[0]
        out = send(rest[4:4 + max(blen, 0)])


def _connect(address, timeout):
    """A connection to ``address``, with TLS and SASL as the client settings say
    (``clientconf``; plain TCP without them)."""
    conf = clientconf.load()
    protocol = conf.get("security.protocol", "PLAINTEXT").upper()
    host, port = address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.settimeout(timeout)
    try:
        if protocol in ("SSL", "SASL_SSL"):
            ctx = ssl.create_default_context(cafile=conf.get("ssl.ca.location"))
            if conf.get("ssl.certificate.location"):
                ctx.load_cert_chain(conf["ssl.certificate.location"], conf.get("ssl.key.location"))
            if conf.get("enable.ssl.certificate.verification", "true") == "false":
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname=host)
        if protocol.startswith("SASL_"):
            _sasl(s, conf)
    except BaseException:
        s.close()
        raise
    return s


def _response_class(api_key):
    from kafka.protocol.admin import (DescribeAclsResponse, DescribeGroupsResponse,
                                      IncrementalAlterConfigsResponse)
    from kafka.protocol.consumer.group import OffsetFetchResponse
    from kafka.protocol.metadata import FindCoordinatorResponse, MetadataResponse
    from kafka.protocol.producer import ProduceResponse

    classes = {0: ProduceResponse, 3: MetadataResponse, 9: OffsetFetchResponse,
               10: FindCoordinatorResponse, 15: DescribeGroupsResponse,
               29: DescribeAclsResponse, 44: IncrementalAlterConfigsResponse}
    if api_key not in classes:
        raise ValueError(f"no response class known for API key {api_key}; pass resp_cls")
    return classes[api_key]


def request(address, req, version, timeout=5.0, resp_cls=None, client_id="raftkit",
            correlation_id=7):
    """Sends one kafka-python protocol request object (``kafka.protocol.*``) to the broker at
    ``address`` ("host:port") over a fresh connection and returns the decoded response.
    ``resp_cls`` defaults to the response class of the request's API key (Produce, Metadata,
    OffsetFetch, FindCoordinator, DescribeGroups, DescribeAcls, IncrementalAlterConfigs)."""
    resp_cls = resp_cls or _response_class(req.API_KEY)
    req.with_header(correlation_id=correlation_id, client_id=client_id)
    data = req.encode(version=version, header=True, framed=True)
    with _connect(address, timeout) as s:
        s.sendall(data)
        size = struct.unpack(">i", _recv_exact(s, 4))[0]
        body = _recv_exact(s, size)
    return resp_cls.decode(body, version=version, header=True)


def metadata(address, topics=None, timeout=2.0, client_id="raftka-chaos-verify"):
    """Metadata v9 from the broker at ``address`` ("host:port") as a dict: brokers,
    controller_id, topics[].partitions[] (leader_id, leader_epoch, replica_nodes, isr_nodes).
    topics=None asks for every topic."""
    from kafka.protocol.metadata import MetadataRequest

    req = MetadataRequest(
        topics=None if topics is None else [MetadataRequest.MetadataRequestTopic(name=t) for t in topics],
        allow_auto_topic_creation=False,
    )
    return request(address, req, 9, timeout=timeout, client_id=client_id).to_dict()


def partitions(md, topic):
    """{partition: (leader, epoch, replicas tuple, sorted isr tuple)} of ``topic`` in a
    metadata dict, or None if the topic is missing or in error."""
    for t in md["topics"]:
        if t["name"] == topic:
            if t["error_code"] != 0:
                return None
            return {
                p["partition_index"]: (
                    p["leader_id"],
                    p["leader_epoch"],
                    tuple(p["replica_nodes"]),
                    tuple(sorted(p["isr_nodes"])),
                )
                for p in t["partitions"]
            }
    return None


def first_answer(addresses, topics=None, timeout=1.5):
    """(address, metadata) from the first of ``addresses`` that answers, else (None, None)."""
    for a in addresses:
        try:
            return a, metadata(a, topics, timeout=timeout)
        except Exception:  # noqa: BLE001 - down, paused, partitioned or mid-restart
            continue
    return None, None
