"""Reading a broker's HTTP admin listener in tests: /metrics through the Prometheus project's own
text parser (prometheus_client), /v1/cluster and /ready as JSON."""

import json

from prometheus_client.parser import text_string_to_metric_families


def scrape(cluster, broker_id):
    """{(sample name, frozenset of label items): value} of one broker's /metrics."""
    status, body = cluster.http_get(broker_id, "/metrics")
    assert status == 200, body
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples, name, **labels):
    """The sample `name` with exactly `labels`, or None."""
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())))


def total(cluster, brokers, name, **labels):
    """Sum of `name{labels}` over `brokers` (absent samples count 0)."""
    return sum(value(scrape(cluster, b), name, **labels) or 0 for b in brokers)


def cluster_view(cluster, broker_id):
    status, body = cluster.http_get(broker_id, "/v1/cluster")
    assert status == 200, body
    return json.loads(body)


def ready(cluster, broker_id):
    """(HTTP status, JSON body) of /ready."""
    status, body = cluster.http_get(broker_id, "/ready")
    return status, json.loads(body)
