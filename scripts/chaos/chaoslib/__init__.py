"""chaoslib: the pieces of scripts/chaos/verify, a Jepsen-style checker for raftka.

Modules, in dependency order (each imports only the ones above it):

- ``history``  the recorded events of one run (sends, acks, consumer reads, commits, faults,
               the final read of every partition) as plain dataclasses, saved to and loaded
               from JSON.
- ``checker``  ``check(history) -> Report``: a pure function over a history that finds every
               violation (lost, duplicate, inconsistent offset, nonmonotonic / skipped read,
               per-key reorder, committed offset backwards, unhealed cluster) and computes the
               failover time of each fault. No I/O, no clock: unit-testable with synthetic
               histories (tests/python/test_chaos_verify.py).
- ``kafkameta`` raw Metadata requests to one chosen broker (leaders, ISR, controller).
- ``backends`` how faults are injected: ``ProcessBackend`` (scripts/cluster, iptables) and
               ``DockerBackend`` (docker kill/start, pause/unpause, network disconnect/connect).
- ``workload`` the clients: an idempotent acks=all producer, group consumers that commit,
               a committed-offset poller, the final catch-up read.
- ``nemesis``  the seeded fault schedule.
- ``cli``      argument parsing, the run itself, the printed summary.

See scripts/chaos/VERIFY.md for what each check means.
"""
