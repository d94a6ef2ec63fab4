"""A background pass (``engine/periodic.PeriodicPass``) counts itself by name: its failures, when it
last completed (its start until then) and its interval, which the alert on a stalled pass reads."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY

from fulfill.engine.periodic import PeriodicPass
from tests.support.http_doubles import wait_for


def _sample(name: str, pass_name: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"pass": pass_name})


def test_a_pass_that_completes_says_when_and_its_interval() -> None:
    ran_at: list[float] = []
    background = PeriodicPass(
        "test-completes", lambda: ran_at.append(time.time()), lambda: 30.0, run_first=True
    )
    background.start()
    try:
        # Set once the pass has returned, to a moment after it ran.
        last = wait_for(
            lambda: (
                ran_at
                and (
                    value := _sample(
                        "fulfill_background_pass_last_success_timestamp_seconds", "test-completes"
                    )
                )
                and value >= ran_at[0]
                and value
            )
        )
        assert last <= time.time()
        assert _sample("fulfill_background_pass_failures_total", "test-completes") == 0
        assert _sample("fulfill_background_pass_interval_seconds", "test-completes") == 30.0
    finally:
        background.stop()


def test_a_pass_that_fails_is_counted_and_does_not_move_its_last_success() -> None:
    tries: list[float] = []

    def failing() -> None:
        tries.append(time.time())
        raise RuntimeError("the database is away")

    background = PeriodicPass("test-fails", failing, lambda: 0.05)
    before = time.time()
    background.start()
    try:
        deadline = time.monotonic() + 10
        while len(tries) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(tries) >= 3
    finally:
        background.stop()
    failures = _sample("fulfill_background_pass_failures_total", "test-fails")
    assert failures == len(tries)
    # Still the moment the pass started: it never completed.
    last = _sample("fulfill_background_pass_last_success_timestamp_seconds", "test-fails")
    assert last is not None
    assert before <= last <= tries[0]
