"""librdkafka (confluent-kafka) configuration dicts for raftka's tests, chaos runs and benches:
the plain settings the tests share, and the secured ones (SASL_SSL with SCRAM or PLAIN,
SASL_PLAINTEXT, mutual TLS) that scripts/cluster's RAFTKA_SECURE=1 and the security tests use.

Only dicts: the caller builds the client (``Producer(producer_conf(...))``), so this module
imports no Kafka client. Depends on nothing.
"""

#: Producer settings of the tests: small linger, deliveries fail within 15 s.
PRODUCER_DEFAULTS = {"linger.ms": 5, "message.timeout.ms": 15000}

#: Consumer settings of the tests: partitions are assign()ed, nothing is committed or stored,
#: a missing offset is an error (not a silent reset), fetches return within 100 ms.
CONSUMER_DEFAULTS = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "enable.partition.eof": False,
    "auto.offset.reset": "error",
    "fetch.wait.max.ms": 100,
}


def producer_conf(bootstrap, **conf):
    """Producer settings for ``bootstrap``; keyword arguments (dotted names as a dict:
    ``**{"acks": "all"}``) override the defaults."""
    return {"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS, **conf}


def consumer_conf(bootstrap, group, **conf):
    """Consumer settings for ``bootstrap`` in ``group`` (confluent-kafka wants a group.id even
    when partitions are assign()ed and nothing is committed)."""
    return {"bootstrap.servers": bootstrap, "group.id": group, **CONSUMER_DEFAULTS, **conf}


def admin_conf(bootstrap, **conf):
    return {"bootstrap.servers": bootstrap, **conf}


def sasl_ssl(bootstrap, ca, user, password, mechanism="SCRAM-SHA-512"):
    """SASL over TLS, the server checked against the CA PEM ``ca`` (scripts/cluster with
    RAFTKA_SECURE=1 prints ca=... and admin=admin:<password>)."""
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(ca),
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def sasl_plaintext(bootstrap, user, password, mechanism="PLAIN"):
    """SASL without TLS (a SASL_PLAINTEXT listener)."""
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def mtls(bootstrap, ca, cert, key):
    """Mutual TLS (an SSL listener with ssl.client.auth=required): the client presents
    ``cert``/``key`` and checks the server against ``ca``."""
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": str(ca),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
    }


def kcat_args(conf):
    """kcat's ``-X key=value`` arguments for the security settings of a librdkafka ``conf``
    (bootstrap.servers is left out: kcat takes it as -b)."""
    out = []
    for k, v in conf.items():
        if k != "bootstrap.servers":
            out += ["-X", f"{k}={v}"]
    return out
