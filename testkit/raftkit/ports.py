"""Free ports for local brokers, below Linux's ephemeral range (32768-60999), so that client
sockets cannot take them between the pick and the broker's bind.

scripts/cluster gives broker i (1-based) the Kafka port ``base + 100*(i-1)``, its gRPC port
``+1`` and its HTTP admin port ``+2``. Depends on nothing but the standard library.
"""

import random
import socket

#: Offsets from a broker's Kafka port that scripts/cluster uses: Kafka, gRPC, HTTP admin.
BROKER_PORT_OFFSETS = (0, 1, 2)


def port_free(port, host="127.0.0.1"):
    """True when nobody listens on ``port`` and it can be bound (bind alone can succeed next
    to a SO_REUSEPORT listener, so a connect is tried too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) != 0


def free_port_base(brokers=1, offsets=BROKER_PORT_OFFSETS, low=20000, high=32000, tries=200):
    """A Kafka port for broker 1 such that every broker's ports (``base + 100*i + d`` for d in
    ``offsets``) are free; raises RuntimeError when none is found in ``tries`` picks."""
    rng = random.Random()
    for _ in range(tries):
        base = rng.randrange(low, high - 100 * brokers)
        if all(port_free(base + 100 * i + d) for i in range(brokers) for d in offsets):
            return base
    raise RuntimeError(f"no free port range for {brokers} broker(s) found in {tries} tries")
