"""Waiting on an event a test can observe (a log line, a counter), with a bound that only ends a wait
that would otherwise hang: the bound never decides a result, the condition does."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], what: str | Callable[[], str], timeout: float = 60.0,
               poll: float = 0.02) -> None:
    """Return once `condition()` holds; AssertionError naming `what` (a text, or a function giving
    one, such as a log's tail) if it does not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what() if callable(what) else what}")
        time.sleep(poll)
