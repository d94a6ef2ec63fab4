"""``bench.client_pools``: both ways keep the requests in flight against a real server and report
this process's CPU per request."""

from __future__ import annotations

import pytest
from bench.client_pools import run

pytestmark = pytest.mark.backend_free


def test_both_ways_make_requests_and_report_their_cpu_per_request() -> None:
    result = run(concurrency=12, hold=0.05, seconds=0.5, rounds=1)
    assert result["pool_sizes"] == [6, 6]
    for name in ("one_pool", "connection_pools"):
        [measured] = result["rounds"][name]
        # 12 at a time, each held 0.05 s, for 0.5 s: about 120 requests on a quiet machine, 9 seen
        # on a loaded one; what is asserted is that each way made requests and measured them.
        assert measured["requests"] > 0
        assert measured["cpu_ms_per_request"] > 0
        assert result["median_cpu_ms_per_request"][name] == measured["cpu_ms_per_request"]
