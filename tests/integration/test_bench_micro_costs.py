"""``bench.micro_costs``: every figure is measured (none is zero), and the worst quick check it
times is one the budget lets onto the loop, failing every check it meets."""

from __future__ import annotations

import pytest
from bench.micro_costs import run, worst_quick_check

from fulfill.domain.schemas import QUICK_CHECK_BUDGET

pytestmark = pytest.mark.backend_free


def test_each_cost_is_measured_and_the_worst_case_is_at_the_budget() -> None:
    validator, value = worst_quick_check()
    assert validator.is_quick_for(value)
    assert not validator.is_quick_for([*value, {}, {}])  # two more and it goes to a thread
    errors = validator.errors(value)
    assert len(errors) == len(value) * 42  # every required name missing from every object
    assert len(value) > QUICK_CHECK_BUDGET // 64
    result = run(rounds=1)
    for name in (
        "quick_check_usual_us",
        "quick_check_worst_ms",
        "json_body_parse_ms",
        "ssl_context_build_ms",
        "email_tls_context_us",
        "httpx_client_build_ms",
    ):
        assert result[name] > 0, name
    assert result["quick_check_worst_errors"] == len(errors)
    assert result["json_body_mb"] > 0.5
