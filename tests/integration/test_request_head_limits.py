"""A request's line and headers (its head) are bounded before the application sees them: larger
than ``FULFILL_MAX_HEADER_BYTES`` is 431 ``HEADERS_TOO_LARGE``, not whole within
``FULFILL_REQUEST_HEADER_TIMEOUT_SECONDS`` of the connection's opening (or of the answer to its
previous request) is 408 ``HEADER_TIMEOUT``; either way the connection is closed.

Without it, one connection could send a header of any size (the HTTP parser keeps a header whole
in memory until its line ends) or hold a request open for ever by never finishing its head, with no
token: nothing of the application runs before the head is whole. Over raw sockets to a real server
on 127.0.0.1, since a client library only sends whole heads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fulfill.store.tables import action_intents
from tests.integration.test_agent_mcp import TASK_ARGS, agent_token
from tests.support.harness import Harness, make_settings
from tests.support.raw_http import (
    INTENT,
    answers,
    connect,
    one_answer,
    post_intents_head,
    read_one,
    read_until_closed,
    send_parts,
)

pytestmark = pytest.mark.slow

LIMIT_SECONDS = 2.0
LIMIT_BYTES = 4096
AGENT_WAIT = 4.0


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    settings = make_settings(
        tmp_path_factory.mktemp("head-limits"),
        max_header_bytes=LIMIT_BYTES,
        request_header_timeout_seconds=LIMIT_SECONDS,
        agent_wait_seconds=AGENT_WAIT,
    )
    running = Harness(settings).start()
    yield running
    running.stop()


def _get(path: str, *, extra: bytes = b"", close: bool = True) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + extra + connection + b"\r\n"


def test_a_head_larger_than_the_limit_is_431_and_nothing_reaches_the_application(service: Harness) -> None:
    intents_before = service.count(action_intents)
    head = post_intents_head(len(INTENT), token=service.token(), extra=f"X-Padding: {'a' * LIMIT_BYTES}\r\n")
    with connect(service.url) as connection:
        connection.sendall(head + INTENT)
        status, headers, problem = one_answer(read_until_closed(connection))
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert problem["code"] == "HEADERS_TOO_LARGE"
    assert f"larger than {LIMIT_BYTES} bytes (FULFILL_MAX_HEADER_BYTES)" in problem["detail"]
    assert problem["title"] == "Request Header Fields Too Large"
    assert problem["type"] == "/problems/headers-too-large"
    assert problem["error"] == "The" + problem["detail"][3:]  # the API's problem document, whole
    assert service.count(action_intents) == intents_before


def test_a_header_that_never_ends_is_cut_off_at_the_limit(service: Harness) -> None:
    """The server closes after about the limit: a client sending 64 MiB of one header's value,
    with no token, is stopped long before it is done (the server never holds the header whole)."""
    sent, cut = 0, False
    with connect(service.url) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        chunk = b"a" * 65536
        try:
            while sent < 64 * 1_048_576:
                connection.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            cut = True
    assert cut
    # What the kernels' buffers take before the close arrives, not what the server read.
    assert sent < 16 * 1_048_576


def test_a_head_within_the_limit_is_answered(service: Harness) -> None:
    padding = b"X-Padding: " + b"a" * (LIMIT_BYTES - 200) + b"\r\n"
    request = _get("/healthz", extra=padding)
    assert len(request) <= LIMIT_BYTES
    with connect(service.url) as connection:
        connection.sendall(request)
        status, _, body = one_answer(read_until_closed(connection))
    assert (status, body["status"]) == (200, "ok")


def test_a_body_sent_with_its_head_is_not_counted_as_the_head(service: Harness) -> None:
    """A body of 200 kB in the same write as a small head: the head ends at its empty line."""
    intent = json.loads(INTENT)
    intent["parameters"]["description"] = "d" * 200_000
    body = json.dumps(intent).encode()
    head = post_intents_head(len(body), token=service.token(), extra="Connection: close\r\n")
    with connect(service.url) as connection:
        connection.sendall(head + body)
        status, _, answer = one_answer(read_until_closed(connection))
    assert status in (201, 422), answer  # the application's own answer to the intent
    assert answer.get("code") != "HEADERS_TOO_LARGE"


def test_a_head_that_stops_arriving_is_408_and_the_connection_closes(service: Harness) -> None:
    with connect(service.url) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        status, headers, problem = one_answer(read_until_closed(connection))
        waited = time.monotonic() - started
    assert status == 408
    assert headers["connection"] == "close"
    assert problem["code"] == "HEADER_TIMEOUT"
    assert (problem["title"], problem["type"]) == ("Request Timeout", "/problems/header-timeout")
    assert f"within {LIMIT_SECONDS:g} s (FULFILL_REQUEST_HEADER_TIMEOUT_SECONDS)" in problem["detail"]
    assert waited >= LIMIT_SECONDS * 0.9  # not before the limit (the timer's own slack aside)


def test_a_head_that_trickles_past_the_limit_is_408(service: Harness) -> None:
    """The limit is the whole head's, not each part's: a byte every quarter of it keeps nothing open."""
    request = _get("/healthz")
    with connect(service.url) as connection:
        send_parts(connection, [request[index : index + 1] for index in range(12)], LIMIT_SECONDS / 4)
        status, _, problem = one_answer(read_until_closed(connection))
    assert (status, problem["code"]) == (408, "HEADER_TIMEOUT")


def test_a_head_sent_in_parts_within_the_limit_is_answered(service: Harness) -> None:
    request = _get("/healthz")
    with connect(service.url) as connection:
        send_parts(connection, [request[:10], request[10:30], request[30:]], LIMIT_SECONDS / 5)
        status, _, body = one_answer(read_until_closed(connection))
    assert (status, body["status"]) == (200, "ok")


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(service: Harness) -> None:
    with connect(service.url) as connection:
        started = time.monotonic()
        assert read_until_closed(connection) == b""
        waited = time.monotonic() - started
    assert LIMIT_SECONDS * 0.9 <= waited < 20


def test_the_next_head_is_timed_from_the_previous_answer_not_from_its_request(service: Harness) -> None:
    """An agent's call waits 4 s for its outcome here, past the head's 2 s: the time its answer
    takes is not the next request's, which then has its own 2 s from the answer."""
    call = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "create_internal_task", "arguments": TASK_ARGS},
        }
    ).encode()
    first = (
        f"POST /agent/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {agent_token(service)}\r\n"
        "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        f"Content-Length: {len(call)}\r\n\r\n"
    ).encode() + call
    with connect(service.url) as connection:
        started = time.monotonic()
        connection.sendall(first)
        raw = read_one(connection)
        assert time.monotonic() - started >= AGENT_WAIT * 0.9
        status, _, answer = one_answer(raw)
        assert status == 200
        assert answer["result"]["structuredContent"]["approval_status"] == "PENDING_APPROVAL"
        time.sleep(LIMIT_SECONDS / 4)
        request = _get("/healthz")
        send_parts(connection, [request[:10], request[10:]], LIMIT_SECONDS / 8)
        status, _, body = one_answer(read_until_closed(connection))
    assert (status, body["status"]) == (200, "ok")


def test_a_kept_alive_connection_has_the_limit_from_its_previous_answer(service: Harness) -> None:
    """After an answer, the connection's next head must be whole within the limit: half a head
    sent a quarter of the limit later is answered 408 at the limit, whatever uvicorn's keep-alive says."""
    with connect(service.url) as connection:
        connection.sendall(_get("/healthz", close=False))
        raw = read_one(connection)
        answered = time.monotonic()
        assert one_answer(raw)[0] == 200
        time.sleep(LIMIT_SECONDS / 4)
        connection.sendall(b"GET /healthz HTTP/1.1\r\n")
        status, _, problem = one_answer(read_until_closed(connection))
        waited = time.monotonic() - answered
    assert (status, problem["code"]) == (408, "HEADER_TIMEOUT")
    assert waited >= LIMIT_SECONDS * 0.9


def test_requests_sent_in_one_write_are_each_answered(service: Harness) -> None:
    with connect(service.url) as connection:
        connection.sendall(_get("/healthz", close=False) + _get("/readyz", close=False) + _get("/healthz"))
        answered = answers(read_until_closed(connection))
    assert [status for status, _, _ in answered] == [200, 200, 200]


def test_the_settings_are_bounded(tmp_path: Path) -> None:
    for refused in (0, -1, 3601):
        with pytest.raises(ValueError, match="request_header_timeout_seconds"):
            make_settings(tmp_path, request_header_timeout_seconds=refused)
    for refused in (1023, 1_048_577):
        with pytest.raises(ValueError, match="max_header_bytes"):
            make_settings(tmp_path, max_header_bytes=refused)
