"""kcat (Debian's, librdkafka 2.0.2): metadata listing, producing with keys and headers under
every codec, consuming from the beginning to the end."""

import json

import pytest

from helpers import CODECS, consume_to_end, create_topic, headers_of, kcat, topic_name


def test_metadata_listing(bootstrap):
    topic = create_topic(bootstrap, topic_name("kcatmd"), 3)
    out = kcat("-b", bootstrap, "-L").stdout.decode()
    host_port = bootstrap.split(",")[0]
    assert "1 brokers:" in out
    assert f"broker 1 at {host_port}" in out
    assert f'topic "{topic}" with 3 partitions:' in out

    md = json.loads(kcat("-b", bootstrap, "-L", "-J", "-t", topic).stdout)
    assert [b["id"] for b in md["brokers"]] == [1]
    assert md["controllerid"] == 1
    [t] = [t for t in md["topics"] if t["topic"] == topic]
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2]
    for p in t["partitions"]:
        assert p["leader"] == 1
        assert [r["id"] for r in p["replicas"]] == [1]
        assert [r["id"] for r in p["isrs"]] == [1]


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_keys_headers(bootstrap, codec):
    topic = create_topic(bootstrap, topic_name(f"kcat-{codec}"), 1)
    lines = [(f"key{i % 3}", f"value number {i} " + "x" * (i * 7)) for i in range(60)]
    payload = "".join(f"{k}:{v}\n" for k, v in lines).encode()
    kcat("-b", bootstrap, "-P", "-t", topic, "-p", "0", "-K", ":", "-z", codec,
         "-H", "source=kcat", "-H", "codec=" + codec, "-X", "linger.ms=20", input=payload)

    out = kcat("-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
               "-f", "%o|%k|%s|%h\\n").stdout.decode()
    got = out.strip("\n").split("\n")
    assert got == [f"{i}|{k}|{v}|source=kcat,codec={codec}" for i, (k, v) in enumerate(lines)]

    # an independent reader sees the same records
    msgs = consume_to_end(bootstrap, topic, [0])[0]
    assert [(m.key(), m.value()) for m in msgs] == [(k.encode(), v.encode()) for k, v in lines]
    assert all(headers_of(m) == [("source", b"kcat"), ("codec", codec.encode())] for m in msgs)


def test_consume_json_envelope(bootstrap):
    topic = create_topic(bootstrap, topic_name("kcatjson"), 2)
    kcat("-b", bootstrap, "-P", "-t", topic, "-p", "1", "-K", "\t", input=b"a\tone\nb\ttwo\n")
    out = kcat("-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-J").stdout.decode()
    recs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [(r["partition"], r["offset"], r["key"], r["payload"]) for r in recs] == [(1, 0, "a", "one"), (1, 1, "b", "two")]
