"""raftkit.chaos (formerly scripts/chaos/chaoslib): the pieces of scripts/chaos/verify, a
Jepsen-style checker for raftka, and the docker fault commands behind scripts/chaos/*.

Modules, in dependency order (each imports only the ones above it, and of the rest of the kit
``kafkameta``, ``ports``, ``cluster`` and ``docker``):

- ``history``  the recorded events of one run (sends, acks, consumer reads, commits, faults,
               the final read of every partition) as plain dataclasses, saved to and loaded
               from JSON.
- ``checker``  ``check(history) -> Report``: a pure function over a history that finds every
               violation (lost, duplicate, inconsistent offset, nonmonotonic / skipped read,
               per-key reorder, committed offset backwards, unhealed cluster) and computes the
               failover time of each fault. No I/O, no clock: unit-testable with synthetic
               histories (tests/python/test_chaos_verify.py).
- ``backends`` how faults are injected: ``ProcessBackend`` (``raftkit.cluster``, iptables)
               and ``DockerBackend`` (``raftkit.docker``: docker kill/start, pause/unpause,
               network disconnect/connect).
- ``workload`` the clients: an idempotent acks=all producer, group consumers that commit,
               a committed-offset poller, the final catch-up read.
- ``nemesis``  the seeded fault schedule.
- ``cli``      argument parsing, the run itself, the printed summary.

Beside the checker, for the docker compose cluster of scripts/docker-cluster (they import
``clientconf`` and ``docker`` of the kit, and ``faults`` imports ``state``):

- ``state``    the cluster's state from the host: containers, each broker's Metadata through its
               EXTERNAL listener, the conditions waited for (healed, leader moved, ...);
               scripts/chaos/state.
- ``faults``   kill-broker, restart-broker, pause-broker, unpause-broker, partition-broker,
               heal, kill-leader, kill-controller, rolling-restart: one implementation, which
               each scripts/chaos/<name> calls.

See scripts/chaos/VERIFY.md for what each check means.
"""
