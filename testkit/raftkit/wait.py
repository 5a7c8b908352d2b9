"""Waiting for a condition: poll it with a deadline (the machine may be loaded, so callers
give generous deadlines; nothing here sleeps a fixed time in place of a condition).
Depends on nothing but the standard library.
"""

import time


def wait_until(pred, timeout, what="condition", interval=0.05, error=AssertionError, reraise=()):
    """Polls ``pred()`` every ``interval`` seconds until it returns something truthy, and
    returns that value. An exception from ``pred`` counts as "not yet" (and is named in the
    timeout message), except the types in ``reraise``, which propagate at once. When
    ``timeout`` seconds pass, raises ``error`` (AssertionError by default: a test failure)
    saying what it waited for."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except reraise:
            raise
        except Exception as e:  # noqa: BLE001 - reported if it never succeeds
            last = e
        if time.monotonic() >= deadline:
            raise error(f"timed out after {timeout}s waiting for {what}; last error: {last!r}")
        time.sleep(interval)
