"""A request's body must arrive whole within ``FULFILL_REQUEST_BODY_TIMEOUT_SECONDS`` of the
request: a client that sends part of a body and then nothing gets 408 ``BODY_TIMEOUT`` and its
connection closed, instead of holding the request, the connection and any stop of the process.

Over a raw socket to a real server on 127.0.0.1 (a client library would send the body whole).
Once a body is in, the limit is over: a request whose answer takes longer (an agent's call waiting
for its outcome) is answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fulfill.store.tables import action_intents
from tests.integration.test_agent_mcp import TASK_ARGS, agent_token, call_tool
from tests.support.harness import Harness, make_settings
from tests.support.raw_http import INTENT as BODY
from tests.support.raw_http import (
    Answer,
    connect,
    one_answer,
    post_intents_head,
    read_until_closed,
    send_parts,
)

pytestmark = pytest.mark.slow

LIMIT = 1.0


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    settings = make_settings(
        tmp_path_factory.mktemp("body-timeout"), request_body_timeout_seconds=LIMIT, agent_wait_seconds=2.5
    )
    running = Harness(settings).start()
    yield running
    running.stop()


def _send(service: Harness, parts: list[bytes], *, pause: float, token: str | None = None) -> Answer:
    """POST /intents with ``parts`` of the body sent ``pause`` seconds apart; the answer, read
    until the server closes the connection or 30 s pass."""
    with connect(service.url) as connection:
        connection.sendall(post_intents_head(len(BODY), token=token, extra="Connection: close\r\n"))
        send_parts(connection, parts, pause)
        return one_answer(read_until_closed(connection))


def test_a_body_that_stops_arriving_is_408_and_the_connection_closes(service: Harness) -> None:
    intents_before = service.count(action_intents)
    status, headers, problem = _send(service, [BODY[:20]], pause=0.0, token=service.token())
    assert status == 408, problem
    assert headers["content-type"].startswith("application/problem+json")
    assert headers["connection"] == "close"
    assert problem["code"] == "BODY_TIMEOUT"
    assert "FULFILL_REQUEST_BODY_TIMEOUT_SECONDS" in problem["detail"]
    assert service.count(action_intents) == intents_before  # nothing was proposed from half a body


def test_without_a_token_it_is_408_too(service: Harness) -> None:
    """The body is read before the token is checked: a client with no token is bounded alike."""
    status, _, problem = _send(service, [BODY[:20]], pause=0.0)
    assert (status, problem["code"]) == (408, "BODY_TIMEOUT")


def test_a_body_sent_in_parts_within_the_limit_is_taken(service: Harness) -> None:
    parts = [BODY[:20], BODY[20:40], BODY[40:]]
    status, _, created = _send(service, parts, pause=LIMIT / 5, token=service.token())
    assert status == 201, created
    assert created["approval_status"] == "PENDING_APPROVAL"


def test_a_body_that_trickles_past_the_limit_is_408(service: Harness) -> None:
    """The limit is the whole body's, not each part's: one byte at a time keeps nothing open."""
    parts = [BODY[index : index + 1] for index in range(12)]
    status, _, problem = _send(service, parts, pause=LIMIT / 4, token=service.token())
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
