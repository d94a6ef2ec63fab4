"""Waiting for a condition in a test, in a module of its own: ``tests/support/mcp_target.py``
imports it in every target process it starts, which ``http_doubles`` (with fulfill's client, its
settings and SQLAlchemy behind it) would make about twice as slow to start."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.05,
    *,
    describe: Callable[[], object] | None = None,
) -> Any:
    """Poll until ``predicate`` returns something truthy; fail the test on timeout, with what
    ``describe`` says of the state at that moment (what a rare failure needs to be understood)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            state = f": {describe()}" if describe is not None else ""
            raise AssertionError(f"condition not met within {timeout}s{state}")
        time.sleep(interval)
