"""Raw Kafka Metadata requests to one chosen broker (no client logic: no retries, no routing).

The nemesis needs to know, just before a fault, which broker leads which partition and which
is the controller; the health check needs every broker's own view of the ISRs. A client
library's metadata comes from whichever broker it picked, so this module sends Metadata v9
(kafka-python's protocol classes) over a fresh connection to exactly the broker asked.
"""

from __future__ import annotations

import socket
import struct


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def metadata(address, topics=None, timeout=2.0):
    """Metadata v9 from the broker at ``address`` ("host:port") as a dict: brokers,
    controller_id, topics[].partitions[] (leader_id, leader_epoch, replica_nodes, isr_nodes).
    topics=None asks for every topic."""
    from kafka.protocol.metadata import MetadataRequest, MetadataResponse

    req = MetadataRequest(
        topics=None if topics is None else [MetadataRequest.MetadataRequestTopic(name=t) for t in topics],
        allow_auto_topic_creation=False,
    )
    req.with_header(correlation_id=7, client_id="raftka-chaos-verify")
    data = req.encode(version=9, header=True, framed=True)
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(data)
        size = struct.unpack(">i", _recv_exact(s, 4))[0]
        body = _recv_exact(s, size)
    return MetadataResponse.decode(body, version=9, header=True).to_dict()


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
