"""The README walkthrough with kcat, step by step: list metadata, produce to quickstart-events
(created by the first produce), consume from the beginning, then keys and headers with zstd."""

from helpers import create_topic, kcat, list_topic_names, topic_name, wait_for_topic


def test_readme_walkthrough(bootstrap):
    b = bootstrap
    out = kcat("-b", b, "-L").stdout.decode()
    assert "1 brokers:" in out and "broker 1 at" in out

    assert "quickstart-events" not in list_topic_names(b)
    kcat("-b", b, "-P", "-t", "quickstart-events", input=b"hello\nworld\n")
    out = kcat("-b", b, "-C", "-t", "quickstart-events", "-o", "beginning", "-e").stdout.decode()
    assert out.splitlines() == ["hello", "world"]

    kcat("-b", b, "-P", "-t", "quickstart-events", "-K:", "-H", "source=web", "-z", "zstd",
         input=b"user1:clicked\nuser2:paid\n")
    out = kcat("-b", b, "-C", "-t", "quickstart-events", "-o", "beginning", "-e",
               "-f", "%k=%s %h @%o\\n").stdout.decode()
    assert out.splitlines() == [
        "=hello  @0",
        "=world  @1",
        "user1=clicked source=web @2",
        "user2=paid source=web @3",
    ]
    assert len(wait_for_topic(b, "quickstart-events").partitions) == 1


def test_explicitly_created_topic(bootstrap):
    """The same walkthrough on a topic created beforehand (kafka-topics.sh --create)."""
    topic = create_topic(bootstrap, topic_name("quickstart-created"), 1)
    out = kcat("-b", bootstrap, "-L", "-t", topic).stdout.decode()
    assert f'topic "{topic}" with 1 partitions:' in out
    assert "partition 0, leader 1" in out
    events = ["This is my first event", "This is my second event"]
    kcat("-b", bootstrap, "-P", "-t", topic, input=("\n".join(events) + "\n").encode())
    out = kcat("-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e").stdout.decode()
    assert out.splitlines() == events
