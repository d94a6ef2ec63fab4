"""``bench.slow_tools``: both phases run every intent through the target, the slow one holds each
call, and each phase reports the service's CPU per intent from the approvals to the last outcome."""

from __future__ import annotations

import pytest
from bench.slow_tools import run

pytestmark = pytest.mark.backend_free


def test_both_phases_complete_and_report_the_service_cpu_per_intent() -> None:
    result = run(12, 0.3)
    burst, slow = result["burst"], result["slow"]
    assert (burst["succeeded"], burst["failed"], slow["succeeded"], slow["failed"]) == (12, 0, 12, 0)
    # Each call of the slow phase is held 0.3 s, so its last outcome comes that long after its
    # approval at least, and the target saw calls held at once.
    assert slow["first_approval_to_last_outcome_s"] >= 0.3
    assert slow["max_tool_calls_in_flight"] >= 1
    for phase in (burst, slow):
        cpu = phase["service_cpu_ms_per_intent"]
        assert set(cpu) == {"all", "total"}  # the one `fulfill serve` (every role) of the in-memory gateway
        assert cpu["total"] == cpu["all"] > 0
        assert 0 <= phase["service_system_cpu_ms_per_intent"]["all"] <= cpu["all"]
        # Every poll reads one page here (12 intents); at least one poll ran.
        assert phase["outcome_pages_read"] == phase["outcome_polls"] >= 1
    assert result["aim_bound_s"] == round(12 / burst["per_second"] + 2.0, 2)
