"""A request's body must arrive whole within ``FULFILL_REQUEST_BODY_TIMEOUT_SECONDS`` of the
request: a client that sends part of a body and then nothing gets 408 ``BODY_TIMEOUT`` and its
connection closed, instead of holding the request, the connection and any stop of the process.

Over a raw socket to a real server on 127.0.0.1 (a client library would send the body whole).
Once a body is in, the limit is over: a request whose answer takes longer (an agent's call waiting
for its outcome) is answered.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fulfill.store.tables import action_intents
from tests.integration.test_agent_mcp import TASK_ARGS, agent_token, call_tool
from tests.support.harness import Harness, make_settings

pytestmark = pytest.mark.slow

LIMIT = 1.0
BODY = json.dumps(
    {"action_type": "CREATE_INTERNAL_TASK", "account_id": "acc-1", "parameters": {"title": "x"}}
).encode()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    settings = make_settings(
        tmp_path_factory.mktemp("body-timeout"), request_body_timeout_seconds=LIMIT, agent_wait_seconds=2.5
    )
    running = Harness(settings).start()
    yield running
    running.stop()


def _send(service: Harness, parts: list[bytes], *, pause: float, token: str | None = None) -> bytes:
    """POST /intents with ``parts`` of the body sent ``pause`` seconds apart; the whole answer,
    read until the server closes the connection or 30 s pass."""
    port = int(service.url.rsplit(":", 1)[1])
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"POST /intents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{authorization}"
        f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head)
        for index, part in enumerate(parts):
            if index:
                time.sleep(pause)
            try:
                connection.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed: the rest is not wanted
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass  # what arrived before the reset is the answer
    return answer


def _status_and_body(answer: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


def test_a_body_that_stops_arriving_is_408_and_the_connection_closes(service: Harness) -> None:
    intents_before = service.count(action_intents)
    answer = _send(service, [BODY[:20]], pause=0.0, token=service.token())
    status, headers, problem = _status_and_body(answer)
    assert status == 408, answer
    assert headers["content-type"].startswith("application/problem+json")
    assert headers["connection"] == "close"
    assert problem["code"] == "BODY_TIMEOUT"
    assert "FULFILL_REQUEST_BODY_TIMEOUT_SECONDS" in problem["detail"]
    assert service.count(action_intents) == intents_before  # nothing was proposed from half a body


def test_without_a_token_it_is_408_too(service: Harness) -> None:
    """The body is read before the token is checked: a client with no token is bounded alike."""
    status, _, problem = _status_and_body(_send(service, [BODY[:20]], pause=0.0))
    assert (status, problem["code"]) == (408, "BODY_TIMEOUT")


def test_a_body_sent_in_parts_within_the_limit_is_taken(service: Harness) -> None:
    parts = [BODY[:20], BODY[20:40], BODY[40:]]
    status, _, created = _status_and_body(_send(service, parts, pause=LIMIT / 5, token=service.token()))
    assert status == 201, created
    assert created["approval_status"] == "PENDING_APPROVAL"


def test_a_body_that_trickles_past_the_limit_is_408(service: Harness) -> None:
    """The limit is the whole body's, not each part's: one byte at a time keeps nothing open."""
    parts = [BODY[index : index + 1] for index in range(12)]
    status, _, problem = _status_and_body(_send(service, parts, pause=LIMIT / 4, token=service.token()))
    assert (status, problem["code"]) == (408, "BODY_TIMEOUT")


def test_an_answer_that_takes_longer_than_the_limit_after_the_body_is_given(service: Harness) -> None:
    """An agent's call without the Tasks extension waits 2.5 s for its outcome here, past the
    body's 1 s: the limit ended with the body, and the call answers that the action awaits approval."""
    result = call_tool(service, agent_token(service), "create_internal_task", TASK_ARGS, tasks=False)
    assert result.is_error is not True
    assert result.structured_content["approval_status"] == "PENDING_APPROVAL"


def test_the_setting_is_bounded(tmp_path: Path) -> None:
    for refused in (0, -1, 3601):
        with pytest.raises(ValueError, match="request_body_timeout_seconds"):
            make_settings(tmp_path, request_body_timeout_seconds=refused)
