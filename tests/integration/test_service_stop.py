"""Stopping the service: a workflow still running in this process ends before DBOS is shut down."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx
import pytest

from fulfill.config import Settings
from fulfill.server import build_server
from fulfill_tools.launch import free_port, log_tail, start_serve, stop_all
from tests.support.harness import TEST_SECRET, Harness, fresh_database_url, make_settings
from tests.support.http_doubles import Fault, FaultyProxy


def test_a_stop_lets_the_workflow_that_is_running_record_its_outcome(
    proxied: tuple[Harness, FaultyProxy],
) -> None:
    harness, proxy = proxied
    # The tool runs at once; its answer reaches the engine a second later, after the stop began.
    proxy.add_faults(Fault("delay", seconds=1.0))
    with harness.client() as client:
        intent = harness.create_intent(client)
        harness.approve(client, intent["action_intent_id"])
    assert proxy.state.forwarded.wait(timeout=30)
    harness.server.stop()  # the service only; the fixture drops its database afterwards
    intent_id = intent["action_intent_id"]
    assert harness.task_rows(intent_id) == 1
    assert harness.outcome_rows(intent_id) == 1
    assert harness.signal_rows(intent_id) == 1


@pytest.mark.slow
def test_a_client_that_never_finishes_its_body_holds_a_stop_only_for_the_grace_period(tmp_path: Path) -> None:
    """A hostile client sends a request's headers and part of its body, then nothing: the request
    waits for the rest forever. A SIGTERM waits ``FULFILL_SHUTDOWN_GRACE_SECONDS`` for it, cuts it,
    and shuts the application down; it held the stop until the process was killed before."""
    port = free_port()
    env = {
        **os.environ,
        "FULFILL_DATABASE_URL": fresh_database_url(tmp_path),
        "FULFILL_PORT": str(port),
        "FULFILL_JWT_SECRET": TEST_SECRET,
        "FULFILL_LOG_LEVEL": "INFO",
        "FULFILL_SHUTDOWN_GRACE_SECONDS": "1",
    }
    log = tmp_path / "service.log"
    process = start_serve(env, log)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as hostile:
            hostile.sendall(
                b"POST /intents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"action_type": '
            )
            # A whole request on another connection is answered meanwhile: the server is not stuck.
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
            process.send_signal(signal.SIGTERM)
            # uvicorn raises the signal again once it has stopped: the process ends as SIGTERM ends it.
            assert process.wait(timeout=60) == -signal.SIGTERM, log_tail(log)
            # The cut request's connection is closed (uvicorn's own 500, then the close).
            hostile.settimeout(30)
            answer = b""
            while chunk := hostile.recv(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 500"), answer
    finally:
        stop_all([process])
    text = log.read_text()
    assert text.count("timeout graceful shutdown exceeded") == 1, text
    assert "Application shutdown complete" in text, text
    # One line says what was cut; the cut request's traceback is not logged as the application's error.
    assert "Traceback" not in text, text


def test_fulfill_serve_bounds_a_stop_by_its_setting(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'fulfill.db'}",
        jwt_secret=TEST_SECRET,
        port=0,
        shutdown_grace_seconds=7,
    )
    server, sock, _ = build_server(settings)  # as `fulfill serve` builds it, not started
    sock.close()
    assert server.config.timeout_graceful_shutdown == 7
    assert Settings(jwt_secret=TEST_SECRET).shutdown_grace_seconds == 15


def test_a_grace_that_can_cut_a_gateway_call_is_warned_of_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    warning = "FULFILL_SHUTDOWN_GRACE_SECONDS is not above FULFILL_GATEWAY_CALL_TIMEOUT_SECONDS"
    for timeout, warned in ((20.0, True), (5.0, False)):
        caplog.clear()
        harness = Harness(
            make_settings(tmp_path / str(timeout), gateway_call_timeout_seconds=timeout)
        ).start()
        harness.stop()
        assert (warning in caplog.text) is warned, caplog.text
