"""``bench.target_call_cost``: every forwarded call reaches the target and is answered, and what it
cost is counted on each side (the target's requests and connections, both sides' CPU)."""

from __future__ import annotations

import pytest
from bench.target_call_cost import run

pytestmark = pytest.mark.backend_free


def test_every_forwarded_call_is_answered_and_counted() -> None:
    result = run(calls=60, concurrency=4, rounds=2)
    assert [round_["failed"] for round_ in result["rounds"]] == [0, 0]
    for round_ in result["rounds"]:
        # At least the tools/call itself reaches the target for every call (the session's own
        # requests come on top); each exchange opens its own connection today.
        assert round_["requests_per_call"]["POST"] >= 1.0
        assert round_["connections_per_call"] == 1.0
        assert round_["gateway_cpu_ms_per_call"] > 0
    # The target thread's CPU is read in clock ticks: counted over both rounds.
    assert sum(round_["target_cpu_ms_per_call"] for round_ in result["rounds"]) > 0
    assert result["median_round"] in result["rounds"]


def test_a_held_call_is_answered_after_the_hold() -> None:
    # 8 calls, 4 at a time, each held 0.25 s by the target: two waves, so no faster than 16/s.
    result = run(calls=8, concurrency=4, rounds=1, hold=0.25)
    (round_,) = result["rounds"]
    assert round_["failed"] == 0
    assert round_["calls_per_s"] <= 16.0
    assert result["hold_s"] == 0.25
