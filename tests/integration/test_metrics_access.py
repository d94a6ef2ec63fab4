"""Who may read ``/metrics``: anyone by default (a loopback listener), a bearer token when
``FULFILL_METRICS_TOKEN`` is set, and only a separate listener when ``FULFILL_METRICS_PORT`` is."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import plain_http
from tests.support.harness import Harness, make_settings
from tests.support.metrics import has

METRICS_TOKEN = "scrape-token-0123456789abcdef"
READ_TIMEOUT = 1.0


def _samples(response: httpx.Response) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


@pytest.fixture
def with_token(tmp_path: Path) -> Iterator[Harness]:
    running = Harness(make_settings(tmp_path, metrics_token=METRICS_TOKEN, metrics_cache_seconds=0)).start()
    yield running
    running.stop()


@pytest.fixture
def with_port(tmp_path: Path) -> Iterator[Harness]:
    running = Harness(
        make_settings(
            tmp_path,
            metrics_port=0,
            metrics_token=METRICS_TOKEN,
            metrics_cache_seconds=0,
            request_header_timeout_seconds=READ_TIMEOUT,
        )
    ).start()
    yield running
    running.stop()


def test_a_metrics_token_is_required_when_one_is_configured(with_token: Harness) -> None:
    url = f"{with_token.url}/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {METRICS_TOKEN}"}):
        refused = plain_http.get(url, headers=headers)
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "METRICS_TOKEN_REQUIRED"
        assert refused.headers["www-authenticate"] == 'Bearer realm="metrics"'
        assert "fulfill_" not in refused.text
        assert plain_http.head(url, headers=headers).status_code == 401
    # A user token of the API is no metrics token.
    assert plain_http.get(url, headers={"Authorization": f"Bearer {with_token.token()}"}).status_code == 401
    good = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    samples = _samples(plain_http.get(url, headers=good))
    assert has(samples, "fulfill_kill_switch_global_stop")
    assert plain_http.head(url, headers=good).status_code == 200
    assert plain_http.get(f"{with_token.url}/healthz").status_code == 200  # probes need no token


def test_a_separate_metrics_listener_serves_metrics_and_the_api_port_does_not(with_port: Harness) -> None:
    listener = with_port.service.metrics_listener
    assert listener is not None
    assert listener.port != with_port.settings.port
    metrics_url = f"http://127.0.0.1:{listener.port}"
    # The API's listener no longer has /metrics at all, token or not.
    for headers in ({}, {"Authorization": f"Bearer {METRICS_TOKEN}"}):
        assert plain_http.get(f"{with_port.url}/metrics", headers=headers).status_code == 404
    # The metrics listener: the token (also set here) is still required; nothing but /metrics.
    assert plain_http.get(f"{metrics_url}/metrics").status_code == 401
    good = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    with with_port.client() as client:
        assert with_port.run_task(client)["status"] == "SUCCEEDED"
    samples = _samples(plain_http.get(f"{metrics_url}/metrics", headers=good))
    assert (
        samples[("fulfill_executions_total", frozenset({("status", "SUCCEEDED"), ("error_class", "")}))] >= 1
    )
    assert has(samples, "fulfill_kill_switch_global_stop")  # the store gauges are there too
    assert plain_http.head(f"{metrics_url}/metrics", headers=good).status_code == 200
    assert plain_http.get(f"{metrics_url}/intents", headers=good).status_code == 404
    assert plain_http.post(f"{metrics_url}/metrics", headers=good).status_code == 405


def test_the_metrics_listener_closes_a_connection_that_stops_sending(
    with_port: Harness, capfd: pytest.CaptureFixture[str]
) -> None:
    """A request's head must arrive whole within ``FULFILL_REQUEST_HEADER_TIMEOUT_SECONDS``: half
    a request line, then nothing, no longer holds the listener's thread for that connection for
    good, and the cut connection leaves no traceback behind."""
    listener = with_port.service.metrics_listener
    assert listener is not None
    with socket.create_connection(("127.0.0.1", listener.port), timeout=30) as connection:
        connection.sendall(b"GET /metr")
        started = time.monotonic()
        assert connection.recv(65536) == b""  # closed, with nothing to answer
        assert time.monotonic() - started >= READ_TIMEOUT * 0.9
    assert plain_http.get(f"http://127.0.0.1:{listener.port}/metrics").status_code == 401  # still serving
    assert "Traceback" not in capfd.readouterr().err


def test_the_metrics_listener_bounds_a_head_that_trickles(with_port: Harness) -> None:
    """The limit is the whole head's, not each read's: a byte every 0.4 s (each read well within
    the 1 s) is cut when the head's time runs out."""
    listener = with_port.service.metrics_listener
    assert listener is not None
    request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    closed_after = None
    with socket.create_connection(("127.0.0.1", listener.port), timeout=30) as connection:
        connection.settimeout(0.4)
        started = time.monotonic()
        for byte in request[:20]:  # 8 s of bytes: far past the limit, never the whole line
            try:
                connection.sendall(bytes([byte]))
                if connection.recv(65536) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue  # nothing yet: the next byte
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "the trickled head held its connection"
    assert closed_after >= READ_TIMEOUT * 0.9


def test_a_short_metrics_token_is_refused_at_start(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="metrics_token"):
        make_settings(tmp_path, metrics_token="short")


def test_fulfill_serve_moves_metrics_to_its_own_port(tmp_path: Path) -> None:
    import os

    from fulfill_tools.launch import free_port, start_serve, stop_all
    from tests.support.harness import TEST_SECRET, fresh_database_url

    api_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "FULFILL_DATABASE_URL": fresh_database_url(tmp_path),
        "FULFILL_JWT_SECRET": TEST_SECRET,
        "FULFILL_PORT": str(api_port),
        "FULFILL_METRICS_PORT": str(metrics_port),
        "FULFILL_METRICS_TOKEN": METRICS_TOKEN,
        "FULFILL_LOG_LEVEL": "WARNING",
    }
    process = start_serve(env, tmp_path / "serve.log")
    try:
        assert plain_http.get(f"http://127.0.0.1:{api_port}/metrics").status_code == 404
        assert plain_http.get(f"http://127.0.0.1:{metrics_port}/metrics").status_code == 401
        scraped = plain_http.get(
            f"http://127.0.0.1:{metrics_port}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        assert has(_samples(scraped), "fulfill_kill_switch_global_stop")
    finally:
        stop_all([process])
    assert METRICS_TOKEN not in (tmp_path / "serve.log").read_text()
