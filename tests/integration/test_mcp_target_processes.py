"""The tests' remote MCP targets (``tests/support/mcp_target.py``) are forked from one server per
test process that imported the SDK once. What the suite relies on stays true of each: it is a
process of its own, with nothing of another target's state; it runs with the test's environment
as it was when the target started; it writes its output to the log it was given; a port taken by
the time it binds ends it with uvicorn's start-up failure (3), on which a target starts again on
another port; and a stop ends it by SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx
import pytest

from tests.support import mcp_target
from tests.support.mcp_target import UVICORN_STARTUP_FAILED, McpTarget

pytestmark = pytest.mark.slow


def _call(target: McpTarget, title: str) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "create_ticket",
            "arguments": {"title": title},
            "_meta": {  # the 2026-07-28 revision's envelope, on every request
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "create_ticket",
    }
    answer = httpx.post(target.url, json=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text


def test_each_target_is_a_process_of_its_own(tmp_path: Path) -> None:
    first, second = McpTarget(log=tmp_path / "first.log"), McpTarget()
    try:
        assert first.process.pid != second.process.pid != os.getpid()
        _call(first, "only on the first")
        assert first.calls() == 1
        assert second.calls() == 0
        assert second.stats()["tickets"] == []
    finally:
        first.stop()
        second.stop()
    assert first.process.exitcode == second.process.exitcode == -signal.SIGTERM
    assert "StreamableHTTP" in (tmp_path / "first.log").read_text()  # the SDK's log, in its file


def test_a_target_runs_with_the_tests_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A target first, so that the forkserver is running before the variable is set: it is the
    # target's start that must carry the test's environment, not the forkserver's.
    McpTarget().stop()
    monkeypatch.setenv("FULFILL_TARGET_PROBE", "set by this test")
    target = McpTarget()
    try:
        assert target.stats()["environment"]["FULFILL_TARGET_PROBE"] == "set by this test"
    finally:
        target.stop()


def test_a_taken_port_ends_the_target_with_uvicorns_start_up_failure(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = mcp_target._FORKS.Process(
            target=mcp_target._run_forked,
            args=(["--port", str(port)], str(tmp_path / "taken.log"), dict(os.environ)),
            daemon=True,
        )
        process.start()
        process.join(timeout=30)
    assert process.exitcode == UVICORN_STARTUP_FAILED
    assert "address already in use" in (tmp_path / "taken.log").read_text()
