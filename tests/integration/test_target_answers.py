"""What a gateway target may answer: byte caps while reading, bounded and namespaced error codes,
plain-text answers on the timeline, and MCP sessions that are closed. A real MCP server built
with the ``mcp`` SDK runs in its own process (``tests/support/mcp_target.py --hostile``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_gateway_targets import add_target, problem
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import wait_for
from tests.support.mcp_target import McpTarget
from tests.support.salesforce import SECRETS_KEY

pytestmark = pytest.mark.slow

CAP = 64 * 1024  # the smallest FULFILL_GATEWAY_MAX_RESPONSE_BYTES allowed


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[Harness]:
    settings = make_settings(
        tmp_path,
        gateway_egress_allow=["127.0.0.1"],
        gateway_targets_refresh_seconds=0.5,
        gateway_call_timeout_seconds=5.0,
        gateway_max_response_bytes=CAP,
        secrets_key=SECRETS_KEY,
    )
    running = Harness(settings).start()
    yield running
    running.stop()


def _target(*args: str) -> Iterator[McpTarget]:
    running = McpTarget("--hostile", *args)
    yield running
    running.stop()


@pytest.fixture
def hostile() -> Iterator[McpTarget]:
    yield from _target()


def _map(client: httpx.Client, action_type: str, tool: str, mapping: dict[str, Any]) -> None:
    response = client.post(
        "/admin/registry", json={"action_type": action_type, "tool_name": tool, "parameter_mapping": mapping}
    )
    assert response.status_code == 201, response.text


BIG = {"title": {"toolParam": "title", "required": True}, "size": {"toolParam": "size", "required": True}}


def _run_big(harness: Harness, client: httpx.Client, size: int) -> dict[str, Any]:
    _map(client, "BIG_ANSWER", "tickets.big_answer", BIG)
    return harness.run_task(client, action_type="BIG_ANSWER", parameters={"title": "big", "size": size})


def _timeline(client: httpx.Client, intent_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/executions/{intent_id}/timeline").json()["entries"])


# --- byte caps ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["json", "sse"])
def test_an_oversized_answer_of_a_target_that_does_not_deduplicate_is_ambiguous(
    capped: Harness, tmp_path: Path, mode: str
) -> None:
    # 900 KB: over the cap, under the MCP client's own 1 MiB limit on one SSE event.
    target = McpTarget("--hostile", *(["--sse"] if mode == "sse" else []))
    try:
        with capped.client() as client:
            add_target(client, target.url, deduplicates=False)
            status = _run_big(capped, client, 900_000)
            timeline = _timeline(client, status["action_intent_id"])
        assert status["status"] == "AMBIGUOUS", status
        assert status["error_code"] == "UNKNOWN_OUTCOME"
        assert status["error_class"] == "UNKNOWN"
        assert "FULFILL_GATEWAY_MAX_RESPONSE_BYTES" in status["error_message"]
        assert f"more than {CAP} bytes" in status["error_message"]
        assert target.calls("big_answer") == 1  # never sent again
        assert [e for e in timeline if e["event_type"] == "OUTCOME_UNKNOWN"]
    finally:
        target.stop()


def test_an_oversized_answer_of_a_deduplicating_target_fails_without_a_retry(capped: Harness) -> None:
    target = McpTarget("--hostile", "--dedupe")
    try:
        with capped.client() as client:
            add_target(client, target.url, deduplicates=True)
            status = _run_big(capped, client, 900_000)
        assert status["status"] == "FAILED", status
        assert status["error_code"] == "TARGET_ANSWER_TOO_LARGE"
        assert status["error_class"] == "UNKNOWN"
        assert "may have written" in status["error_message"]
        assert target.calls("big_answer") == 1  # a retry would get the same answer from its cache
    finally:
        target.stop()


def test_an_answer_under_the_cap_still_succeeds(capped: Harness, hostile: McpTarget) -> None:
    with capped.client() as client:
        add_target(client, hostile.url)
        status = _run_big(capped, client, 20_000)  # twice: text and structured content
    assert status["status"] == "SUCCEEDED", str(status)


def test_an_oversized_tool_listing_is_refused_at_registration(capped: Harness, hostile: McpTarget) -> None:
    hostile.add_tool("verbose", description="d" * (CAP + 1024))
    with capped.client() as client:
        body = problem(
            client.post("/admin/gateway/targets", json={"name": "tickets", "url": hostile.url}),
            422,
            "TARGET_ANSWER_TOO_LARGE",
        )
        assert "FULFILL_GATEWAY_MAX_RESPONSE_BYTES" in body["detail"]
        assert client.get("/admin/gateway/targets").json()["targets"] == []


@pytest.mark.parametrize(
    ("body", "content_type", "what"),
    [
        ("{not json", "application/json", "its answer was not valid JSON-RPC"),
        ("<html>oops</html>", "text/html", "its answer was not JSON"),
    ],
)
def test_an_answer_that_is_not_json_rpc_is_a_clear_failure(
    capped: Harness, hostile: McpTarget, body: str, content_type: str, what: str
) -> None:
    with capped.client() as client:
        add_target(client, hostile.url, deduplicates=False)
        _map(client, "COMMENT", "tickets.add_comment", COMMENT)
        hostile.garbage(body, content_type)
        status = capped.run_task(client, action_type="COMMENT", parameters={"ticket_id": "T-1", "text": "hi"})
    assert status["status"] == "AMBIGUOUS", status
    assert status["error_code"] == "UNKNOWN_OUTCOME"
    assert what in status["error_message"]
    assert hostile.calls("garbage") == 1


def test_an_oversized_token_answer_is_refused(capped: Harness) -> None:
    protected = McpTarget("--oauth", "svc-client:oauth-secret-0123", "--token-padding", "200000")
    auth = {
        "type": "oauth_client_credentials",
        "token_url": f"{protected.base}/oauth/token",
        "client_id": "svc-client",
        "client_secret": "oauth-secret-0123",
    }
    try:
        with capped.client() as client:
            added = client.post(
                "/admin/gateway/targets", json={"name": "tickets", "url": protected.url, "auth": auth}
            )
            body = problem(added, 422, "TARGET_TOKEN_ANSWER_TOO_LARGE")
        assert "oauth-secret-0123" not in body["detail"]
        assert protected.stats()["token_requests"] == 1
    finally:
        protected.stop()


# --- error codes from targets ---------------------------------------------------------------------

FAIL = {
    "title": {"toolParam": "title", "required": True},
    "code": {"toolParam": "code", "required": True},
    "message": {"toolParam": "message", "required": True},
    "code_repeat": {"toolParam": "code_repeat"},
}


def _run_fail(harness: Harness, client: httpx.Client, **parameters: Any) -> dict[str, Any]:
    return harness.run_task(client, action_type="FAIL_WITH", parameters={"title": "f", **parameters})


def test_a_target_cannot_claim_fulfills_own_error_codes_and_its_codes_are_bounded(
    capped: Harness, hostile: McpTarget
) -> None:
    with capped.client() as client:
        add_target(client, hostile.url)
        _map(client, "FAIL_WITH", "tickets.fail_with", FAIL)
        claimed = _run_fail(harness=capped, client=client, code="KILL_SWITCH_ENABLED", message="stopped")
        huge = _run_fail(
            harness=capped, client=client, code="A", code_repeat=60_000, message="bad\n\x00\x1b[31m" * 100
        )
        listed = client.get("/accounts/acc-1/executions").text
    assert claimed["status"] == "FAILED", claimed
    assert claimed["error_code"] == "TARGET:KILL_SWITCH_ENABLED"
    assert claimed["error_class"] == "VALIDATION"
    assert huge["status"] == "FAILED", huge
    assert huge["error_code"] == "TARGET:" + "A" * 64
    assert len(huge["error_message"]) <= 500
    assert "\x00" not in huge["error_message"]
    assert "\x1b" not in huge["error_message"]
    assert "A" * 65 not in listed


# --- plain-text answers and sessions --------------------------------------------------------------

COMMENT = {
    "ticket_id": {"toolParam": "ticket_id", "required": True},
    "text": {"toolParam": "text", "required": True},
}


def test_a_plain_text_answer_is_excerpted_on_the_timeline(capped: Harness, hostile: McpTarget) -> None:
    with capped.client() as client:
        add_target(client, hostile.url)
        _map(client, "COMMENT", "tickets.add_comment", COMMENT)
        plain = capped.run_task(client, action_type="COMMENT", parameters={"ticket_id": "T-1", "text": "hi"})
        long_text = _run_big(capped, client, 10_000)
        entries = _timeline(client, plain["action_intent_id"])
        long_entries = _timeline(client, long_text["action_intent_id"])
    assert plain["status"] == "SUCCEEDED", plain
    [executed] = [e for e in entries if e["event_type"] == "ACTION_EXECUTED"]
    assert executed["data"]["answer_excerpt"] == "comment added"
    [executed_long] = [e for e in long_entries if e["event_type"] == "ACTION_EXECUTED"]
    assert executed_long["data"]["answer_excerpt"] == "x" * 2048


TICKET = {"ticket_id": {"toolParam": "ticket_id", "required": True}}


@pytest.mark.parametrize(
    ("tool", "url"), [("close_ticket", "https://tickets.test/T-7"), ("reopen_ticket", None)]
)
def test_refs_answered_as_json_text_are_recorded(
    capped: Harness, hostile: McpTarget, tool: str, url: str | None
) -> None:
    # close_ticket is a ``-> str`` tool returning json.dumps(...): the SDK answers structured content
    # {"result": "<the JSON>"}; reopen_ticket answers the JSON as text only.
    with capped.client() as client:
        add_target(client, hostile.url)
        _map(client, "TICKET_ACTION", f"tickets.{tool}", TICKET)
        status = capped.run_task(client, action_type="TICKET_ACTION", parameters={"ticket_id": "T-7"})
        entries = _timeline(client, status["action_intent_id"])
    assert status["status"] == "SUCCEEDED", status
    expected = {"system": "MCP:tickets", "object_type": "Ticket", "object_id": "T-7"}
    if url:
        expected["object_url"] = url
    assert status["external_object_refs"] == [expected]
    [executed] = [e for e in entries if e["event_type"] == "ACTION_EXECUTED"]
    assert "refs_note" not in executed["data"]


def test_an_answer_without_refs_is_recorded_with_a_note_saying_why(
    capped: Harness, hostile: McpTarget
) -> None:
    with capped.client() as client:
        add_target(client, hostile.url)
        _map(client, "COMMENT", "tickets.add_comment", COMMENT)
        _map(client, "NOTE", "tickets.log_note", {"summary": {"toolParam": "summary", "required": True}})
        plain = capped.run_task(client, action_type="COMMENT", parameters={"ticket_id": "T-1", "text": "hi"})
        note = capped.run_task(client, action_type="NOTE", parameters={"summary": "s"})
        plain_entries = _timeline(client, plain["action_intent_id"])
        note_entries = _timeline(client, note["action_intent_id"])
    assert plain["status"] == "SUCCEEDED", plain
    assert plain["external_object_refs"][0]["object_type"] == "add_comment"  # the fallback ref
    [executed] = [e for e in plain_entries if e["event_type"] == "ACTION_EXECUTED"]
    assert "no external_object_refs" in executed["data"]["refs_note"]
    assert "plain text" in executed["data"]["refs_note"]
    assert note["status"] == "SUCCEEDED", note
    [executed_note] = [e for e in note_entries if e["event_type"] == "ACTION_EXECUTED"]
    assert "no external_object_refs" in executed_note["data"]["refs_note"]
    assert "its id" in executed_note["data"]["refs_note"]


def test_every_session_opened_on_a_stateful_target_is_closed(capped: Harness) -> None:
    target = McpTarget("--hostile", "--stateful")
    try:
        with capped.client() as client:
            add_target(client, target.url)
            _map(client, "COMMENT", "tickets.add_comment", COMMENT)
            for n in range(3):
                status = capped.run_task(
                    client, action_type="COMMENT", parameters={"ticket_id": f"T-{n}", "text": "hi"}
                )
                assert status["status"] == "SUCCEEDED", str(status)
            assert client.post("/admin/gateway/targets/tickets/sync").status_code == 200

        def all_closed() -> bool:
            stats = target.stats()
            return stats["sessions_opened"] >= 5 and stats["sessions_deleted"] == stats["sessions_opened"]

        wait_for(all_closed, timeout=10)
    finally:
        target.stop()
