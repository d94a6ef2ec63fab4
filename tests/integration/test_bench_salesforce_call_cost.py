"""``bench.salesforce_call_cost``: the connector's writes and the bare requests against the local
Salesforce all succeed, each side's CPU per call is measured, and the connector keeps its
connection."""

from __future__ import annotations

import pytest
from bench.salesforce_call_cost import run

pytestmark = pytest.mark.backend_free


def test_both_sides_write_and_report_their_cpu_per_call() -> None:
    result = run(calls=20, rounds=2)
    assert result["failed"] == 0
    assert len(result["rounds"]) == 2
    for measured in result["rounds"]:
        assert measured["connector_cpu_ms_per_call"] > 0
        # The server thread's CPU is read in clock ticks (10 ms), so a bare request's few tenths
        # of a millisecond are not asserted above 0 in a run this short.
        assert isinstance(measured["bare_httpx_cpu_ms_per_call"], float)
        assert measured["new_connections_per_connector_call"] == 0  # the warm-up's connection, kept
    assert result["median_round"] in result["rounds"]
