"""The kit's own pieces, without a broker or a Kafka client: port picking, waits, the
process-cluster driver against a fake scripts/cluster state file, the compose driver against
a fake docker, metadata views and client configs."""

import socket
import subprocess

import pytest
from raftkit import clients, kafkameta
from raftkit.cluster import ClusterError, ProcessCluster, read_state
from raftkit.docker import ComposeCluster, DockerError, broker_containers
from raftkit.ports import free_port_base, port_free
from raftkit.wait import wait_until


def test_free_port_base_gives_free_ports_below_the_ephemeral_range():
    base = free_port_base(3)
    assert 20000 <= base and base + 200 + 2 < 32768
    assert all(port_free(base + 100 * i + d) for i in range(3) for d in (0, 1, 2))


def test_port_free_sees_a_listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not port_free(s.getsockname()[1])


def test_wait_until_returns_the_first_truthy_value():
    seen = iter([None, 0, "", "ready"])
    assert wait_until(lambda: next(seen), 5, "ready", interval=0.001) == "ready"


def test_wait_until_names_what_and_the_last_error_on_timeout():
    def boom():
        raise ValueError("not yet")

    with pytest.raises(TimeoutError, match=r"waiting for the thing; last error: ValueError\('not yet'\)"):
        wait_until(boom, 0.05, "the thing", interval=0.01, error=TimeoutError)


def test_wait_until_reraises_chosen_errors_at_once():
    class Fatal(Exception):
        pass

    calls = []

    def pred():
        calls.append(1)
        raise Fatal("stop")

    with pytest.raises(Fatal):
        wait_until(pred, 30, "never", interval=0.001, reraise=(Fatal,))
    assert len(calls) == 1


def test_process_cluster_addresses_and_env(tmp_path):
    c = ProcessCluster(tmp_path / "run", 21000, {"RAFTKA_X": "1"}, start_timeout=77, n=3)
    assert c.env["RAFTKA_RUN_DIR"] == str(tmp_path / "run")
    assert c.env["RAFTKA_PORT_BASE"] == "21000" and c.env["RAFTKA_X"] == "1"
    assert c.ids() == [1, 2, 3]
    assert c.address(2) == "127.0.0.1:21100" and c.http_address(3) == "127.0.0.1:21202"
    assert c.bootstrap_servers(without=[2]) == "127.0.0.1:21000,127.0.0.1:21200"
    assert c.log_path(2) == tmp_path / "run" / "broker-2" / "broker.log"
    assert c.log(2) == ""  # no log yet: empty, not an error


def test_process_cluster_existing_reads_cluster_env(tmp_path):
    (tmp_path / "cluster.env").write_text("CLUSTER_N=4\nCLUSTER_PORT_BASE=23000\nCLUSTER_HOST='127.0.0.2'\n")
    assert read_state(tmp_path)["CLUSTER_N"] == "4"
    c = ProcessCluster.existing(tmp_path)
    assert c.n == 4 and c.port_base == 23000
    assert c.bootstrap == "127.0.0.2:23000,127.0.0.2:23100,127.0.0.2:23200,127.0.0.2:23300"
    with pytest.raises(ClusterError, match="no cluster.env"):
        ProcessCluster.existing(tmp_path / "nothing")


def test_process_cluster_raises_its_error_type_with_the_output(tmp_path):
    # scripts/cluster status without a cluster in the run directory fails
    c = ProcessCluster(tmp_path / "empty", 21000, error=LookupError)
    with pytest.raises(LookupError, match=r"scripts/cluster status exited \d+"):
        c.status()


class FakeCompose(ComposeCluster):
    def __init__(self, *a, **kw):
        self.calls = []
        super().__init__(*a, **kw)

    def docker(self, *args, check=True, timeout=120):
        self.calls.append(args)
        out = ""
        if args[:2] == ("ps", "-aq"):
            svc = args[-1].rsplit("broker", 1)[1]
            out = "" if svc == "9" else f"c{svc}\n"
        elif args[:2] == ("network", "ls"):
            out = "proj_net\n"
        return subprocess.CompletedProcess(args, 0, out, "")


def test_compose_cluster_finds_containers_and_network_by_label():
    d = FakeCompose("h:1,h:2", project="proj", n=2)
    assert d.containers == ["c1", "c2"] and d.network == "proj_net"
    assert ("ps", "-aq", "--filter", "label=com.docker.compose.project=proj",
            "--filter", "label=com.docker.compose.service=broker2") in d.calls
    with pytest.raises(DockerError, match="one address per broker"):
        FakeCompose("h:1", project="proj", n=2)


def test_broker_containers_keeps_only_numbered_broker_services():
    inspect = [
        {"Config": {"Labels": {"com.docker.compose.service": "broker2"}}, "Name": "/p-broker2-1"},
        {"Config": {"Labels": {"com.docker.compose.service": "brokerx"}}, "Name": "/p-brokerx-1"},
        {"Config": {"Labels": {"com.docker.compose.service": "zookeeper"}}, "Name": "/p-zk-1"},
        {"Config": {"Labels": {}}, "Name": "/other"},
    ]
    calls = []

    def run(*args):
        calls.append(args)
        out = "a b c d\n" if args[0] == "ps" else __import__("json").dumps(inspect)
        return subprocess.CompletedProcess(args, 0, out, "")

    got = broker_containers("p", run=run)
    assert list(got) == [2] and got[2]["Name"] == "/p-broker2-1"
    assert calls == [("ps", "-aq", "--filter", "label=com.docker.compose.project=p"),
                     ("inspect", "a", "b", "c", "d")]
    assert broker_containers("p", run=lambda *a: subprocess.CompletedProcess(a, 0, "", "")) == {}


def test_metadata_partitions_view():
    md = {"topics": [
        {"name": "t", "error_code": 0, "partitions": [
            {"partition_index": 0, "leader_id": 2, "leader_epoch": 5, "replica_nodes": [2, 1, 3],
             "isr_nodes": [3, 2]}]},
        {"name": "gone", "error_code": 3, "partitions": []},
    ]}
    assert kafkameta.partitions(md, "t") == {0: (2, 5, (2, 1, 3), (2, 3))}
    assert kafkameta.partitions(md, "gone") is None
    assert kafkameta.partitions(md, "missing") is None


def test_first_answer_skips_brokers_that_do_not_answer():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"  # bound, never listening: refused
    assert kafkameta.first_answer([dead], timeout=0.5) == (None, None)


def test_client_configs():
    assert clients.producer_conf("b:1", **{"acks": "all"}) == {
        "bootstrap.servers": "b:1", "linger.ms": 5, "message.timeout.ms": 15000, "acks": "all"}
    c = clients.consumer_conf("b:1", "g", **{"auto.offset.reset": "earliest"})
    assert c["group.id"] == "g" and c["auto.offset.reset"] == "earliest" and not c["enable.auto.commit"]
    s = clients.sasl_ssl("b:1", "/ca.pem", "u", "p")
    assert s["security.protocol"] == "SASL_SSL" and s["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert clients.sasl_plaintext("b:1", "u", "p")["sasl.mechanisms"] == "PLAIN"
    m = clients.mtls("b:1", "ca", "cert", "key")
    assert m["ssl.certificate.location"] == "cert" and m["security.protocol"] == "SSL"
    assert clients.kcat_args({"bootstrap.servers": "x", "security.protocol": "SSL"}) == [
        "-X", "security.protocol=SSL"]


class _FlakyConsumer:
    """Answers committed() with ``errors`` (KafkaError codes) first, then offsets."""

    instances = []

    def __init__(self, conf):
        self.errors = list(_FlakyConsumer.plan)
        self.calls = 0
        self.closed = False
        _FlakyConsumer.instances.append(self)

    def committed(self, tps, timeout=None):
        from confluent_kafka import KafkaError, KafkaException

        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        for tp in tps:
            tp.offset = 10 + tp.partition
        return tps

    def close(self):
        self.closed = True


def _with_flaky(monkeypatch, plan):
    import confluent_kafka
    from raftkit.chaos import txn

    _FlakyConsumer.plan = plan
    _FlakyConsumer.instances = []
    monkeypatch.setattr(confluent_kafka, "Consumer", _FlakyConsumer)
    monkeypatch.setattr(txn.time, "sleep", lambda s: None)
    return txn


def test_committed_retries_a_moving_coordinator(monkeypatch):
    from confluent_kafka import KafkaError

    txn = _with_flaky(monkeypatch, [KafkaError.NOT_COORDINATOR,
                                    KafkaError.COORDINATOR_LOAD_IN_PROGRESS])
    assert txn.committed("h:1", "g", "t", 2) == {0: 10, 1: 11}
    [c] = _FlakyConsumer.instances
    assert c.calls == 3 and c.closed


def test_committed_raises_what_a_client_does_not_retry(monkeypatch):
    from confluent_kafka import KafkaError, KafkaException

    txn = _with_flaky(monkeypatch, [KafkaError.GROUP_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaException):
        txn.committed("h:1", "g", "t", 2)
    assert _FlakyConsumer.instances[0].closed
