"""``bench.http_protocol_cost``: both protocols answer every request it sends, and each figure is
measured (none is zero)."""

from __future__ import annotations

import pytest
from bench.http_protocol_cost import cpu_us_per_request, run

from fulfill.api.problems import problem_body
from fulfill.http_server import bounded_http_protocol

pytestmark = pytest.mark.backend_free


def test_each_protocol_answers_every_request_and_its_cost_is_measured() -> None:
    result = run(requests=300, rounds=2)
    assert set(result["cpu_us_per_request"]) == {"uvicorn", "bounded"}
    for name, rounds in result["cpu_us_per_request_rounds"].items():
        assert len(rounds) == 2, name
        assert all(value > 0 for value in rounds), name


def test_a_protocol_that_refuses_the_request_is_not_measured() -> None:
    """A head over the limit is answered 431 and the connection closed: the benchmark says so
    instead of timing a protocol that answered nothing it was asked."""
    import uvloop

    with pytest.raises(RuntimeError, match="answers written for 10 requests"):
        uvloop.run(cpu_us_per_request(bounded_http_protocol(512, 10.0, problem_body), 10))
