"""The minimal HTTP API: auth and tenant binding, problem details, intents and events."""

from __future__ import annotations

import re
import uuid
from typing import Any

import jwt
import pytest

from fulfill.domain.time import epoch_from_iso, iso_from_epoch
from fulfill.store import executions
from tests.support import plain_http
from tests.support.harness import TEST_SECRET, Harness, approved_event


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = dict(response.json())
    assert {"type", "title", "status", "detail", "code", "error"} <= set(body)
    assert body["status"] == status
    # Every problem has a machine-readable code, and the short "error" string clients of the
    # reference read.
    assert re.fullmatch(r"[A-Z][A-Z0-9_]+", body["code"]), body
    assert isinstance(body["error"], str)
    assert body["error"]
    assert "Traceback" not in response.text
    return body


def test_health_and_metrics(shared: Harness) -> None:
    with shared.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "workers": "ok"}
        shared.run_task(client)
        metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'fulfill_executions_total{error_class="",status="SUCCEEDED"}' in metrics.text


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "required"),
        ({"Authorization": "Bearer not-a-jwt"}, "malformed"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "required"),
    ],
)
def test_requests_without_a_valid_token_are_401(
    shared: Harness, headers: dict[str, str], reason: str
) -> None:

    response = plain_http.get(f"{shared.url}/executions/ai_x/status", headers=headers)
    body = _problem(response, 401)
    assert reason in body["detail"]
    assert body["error"] == "Unauthorized"  # what the reference answers
    if reason == "required":
        assert body["code"] == "TOKEN_MISSING"
        assert response.headers["www-authenticate"] == "Bearer"
    else:
        assert body["code"] == "TOKEN_MALFORMED"
        assert response.headers["www-authenticate"] == (
            'Bearer error="invalid_token", error_description="token malformed (not a JWT)"'
        )


def test_expired_wrong_issuer_wrong_audience_and_unsigned_tokens_are_401(shared: Harness) -> None:
    import time

    base = {"sub": "u", "tenant_id": "t1", "scope": "executions:read", "iss": "fulfill-dev", "aud": "fulfill"}
    tokens = {
        "expired": jwt.encode({**base, "exp": int(time.time()) - 120}, TEST_SECRET, algorithm="HS256"),
        "issuer": jwt.encode(
            {**base, "iss": "evil", "exp": int(time.time()) + 60}, TEST_SECRET, algorithm="HS256"
        ),
        "audience": jwt.encode(
            {**base, "aud": "other", "exp": int(time.time()) + 60}, TEST_SECRET, algorithm="HS256"
        ),
        "signature": jwt.encode(
            {**base, "exp": int(time.time()) + 60}, "another-secret-another-secret-xx", algorithm="HS256"
        ),
        "alg none": jwt.encode({**base, "exp": int(time.time()) + 60}, None, algorithm="none"),
        "no tenant": jwt.encode(
            {k: v for k, v in base.items() if k != "tenant_id"} | {"exp": int(time.time()) + 60},
            TEST_SECRET,
            algorithm="HS256",
        ),
        "malformed accounts": jwt.encode(
            {**base, "account_ids": "{not json", "exp": int(time.time()) + 60}, TEST_SECRET, algorithm="HS256"
        ),
    }
    expected = {
        "expired": ("token expired", "TOKEN_EXPIRED"),
        "issuer": ("token issuer not accepted", "TOKEN_ISSUER_NOT_ACCEPTED"),
        "audience": ("token audience not accepted", "TOKEN_AUDIENCE_NOT_ACCEPTED"),
        "signature": ("token signature invalid", "TOKEN_SIGNATURE_INVALID"),
        "alg none": ("token algorithm not accepted", "TOKEN_ALGORITHM_NOT_ACCEPTED"),
        "no tenant": ("token carries no tenant", "TOKEN_NO_TENANT"),
        "malformed accounts": ("token account_ids claim is malformed", "TOKEN_CLAIM_MALFORMED"),
    }
    for name, token in tokens.items():
        response = plain_http.get(
            f"{shared.url}/executions/ai_x/status", headers={"Authorization": f"Bearer {token}"}
        )
        body = _problem(response, 401)
        detail, code = expected[name]
        assert (body["detail"], body["code"], body["error"]) == (detail, code, "Unauthorized"), name
        # RFC 6750: the reason is in the challenge too.
        assert response.headers["www-authenticate"] == (
            f'Bearer error="invalid_token", error_description="{detail}"'
        ), name


def test_missing_scope_is_403_and_foreign_tenant_is_404(shared: Harness) -> None:
    with shared.client() as owner:
        status = shared.run_task(owner)
    intent_id = status["action_intent_id"]
    with shared.client(scopes=["intents:read"]) as no_scope:
        forbidden = no_scope.get(f"/executions/{intent_id}/status")
        body = _problem(forbidden, 403)
        assert body["code"] == "MISSING_SCOPE"
        assert body["error"] == "Forbidden"
        assert forbidden.headers["www-authenticate"] == (
            'Bearer error="insufficient_scope", scope="executions:read"'
        )
    with shared.client(tenant="t2") as stranger:
        _problem(stranger.get(f"/executions/{intent_id}/status"), 404)
        _problem(stranger.get(f"/intents/{intent_id}"), 404)
        _problem(stranger.post(f"/intents/{intent_id}/approve"), 404)
    with shared.client(account_ids=["other-account"]) as narrow:
        _problem(narrow.get(f"/executions/{intent_id}/status"), 403)
        _problem(narrow.get(f"/intents/{intent_id}"), 403)
    with shared.client(account_ids=["acc-1"]) as allowed:
        assert allowed.get(f"/executions/{intent_id}/status?account_id=acc-1").status_code == 200
        _problem(allowed.get(f"/executions/{intent_id}/status?account_id=acc-2"), 403)
    with shared.client() as owner:
        _problem(owner.get(f"/executions/{intent_id}/status?account_id=acc-2"), 404)
        missing = _problem(owner.get("/executions/ai_does_not_exist/status"), 404)
        assert (missing["code"], missing["error"]) == ("NOT_FOUND", "Execution not found")


def test_status_of_a_pending_intent_is_pending(shared: Harness) -> None:
    with shared.client() as client:
        intent = shared.create_intent(client)
        body = client.get(f"/executions/{intent['action_intent_id']}/status").json()
    # proposed_by: the subject of the token that proposed it (the harness's default, fulfill-cli).
    assert body == {
        "action_intent_id": intent["action_intent_id"],
        "status": "PENDING",
        "proposed_by": "fulfill-cli",
    }


def test_create_intent_is_idempotent_by_id(shared: Harness) -> None:
    body = {
        "action_intent_id": "ai_idem_1",
        "action_type": "CREATE_INTERNAL_TASK",
        "account_id": "acc-1",
        "parameters": {"title": "a"},
    }
    with shared.client() as client:
        first = client.post("/intents", json=body)
        again = client.post("/intents", json=body)
        other = client.post("/intents", json={**body, "parameters": {"title": "b"}})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert _problem(other, 409)["code"] == "INTENT_BODY_MISMATCH"
    with shared.client(tenant="t2") as stranger:
        # Ids are unique per tenant: another tenant's id is no existence oracle, and it is theirs.
        theirs = stranger.post("/intents", json={**body, "parameters": {"title": "theirs"}})
        assert theirs.status_code == 201
        assert theirs.json()["tenant_id"] == "t2"
        assert stranger.get("/intents/ai_idem_1").json()["parameters"] == {"title": "theirs"}
    with shared.client() as client:
        assert client.get("/intents/ai_idem_1").json()["parameters"] == {"title": "a"}


def test_create_intent_fills_defaults(shared: Harness) -> None:
    with shared.client() as client:
        intent = shared.create_intent(
            client, action_type="CREATE_INTERNAL_NOTE", parameters={"content": "hello"}
        )
    assert intent["tenant_id"] == "t1"
    assert intent["registry_version"] == 1
    assert intent["execution_policy"] == {"retry_count": 3, "timeout_seconds": 300, "max_attempts": 1}
    assert intent["action_intent_id"].startswith("ai_")
    assert intent["expires_at_epoch"] - int(shared.service.clock.now()) in range(
        90 * 86_400 - 2, 90 * 86_400 + 1
    )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            {"action_type": "NO_SUCH_TYPE", "account_id": "acc-1", "parameters": {}},
            422,
            "TOOL_MAPPING_NOT_FOUND",
        ),
        (
            {"action_type": "CREATE_INTERNAL_TASK", "account_id": "acc-1", "parameters": {}},
            422,
            "MISSING_REQUIRED_PARAMETER",
        ),
        (
            {
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": "acc-1",
                "parameters": {"title": "x"},
                "registry_version": 99,
            },
            422,
            "TOOL_MAPPING_NOT_FOUND",
        ),
        (
            {
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": "acc-1",
                "parameters": {"title": "x"},
                "expires_at": "soon",
            },
            422,
            "INVALID_EXPIRES_AT",
        ),
        ({"action_type": "lower", "account_id": "acc-1", "parameters": {}}, 422, None),
        ({"action_type": "CREATE_INTERNAL_TASK", "account_id": "acc-1"}, 422, None),
        (
            {
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": "acc-1",
                "parameters": {"title": "x"},
                "tenant_id": "t9",
            },
            422,
            None,
        ),
    ],
)
def test_bad_intents_get_clear_problems(
    shared: Harness, body: dict[str, Any], status: int, code: str | None
) -> None:
    with shared.client() as client:
        problem = _problem(client.post("/intents", json=body), status)
    if code:
        assert problem["code"] == code
    else:
        assert problem["errors"]


def test_malformed_json_is_400(shared: Harness) -> None:
    with shared.client() as client:
        response = client.post("/intents", content=b"{not json", headers={"Content-Type": "application/json"})
    body = _problem(response, 400)
    assert body["code"] == "MALFORMED_JSON"
    assert "Content-Type: application/json" in body["detail"]


def test_a_body_not_sent_as_json_is_415_with_a_hint(shared: Harness) -> None:
    """``curl -d '{...}'`` without a Content-Type sends a form; the answer says how to send JSON."""
    body = b'{"action_type": "CREATE_INTERNAL_TASK", "account_id": "acc-1", "parameters": {"title": "x"}}'
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with shared.client() as client:
        for path in ("/intents", "/events"):
            problem = _problem(client.post(path, content=body, headers=form), 415)
            assert problem["code"] == "UNSUPPORTED_MEDIA_TYPE", path
            assert "application/x-www-form-urlencoded" in problem["detail"]
            assert "Content-Type: application/json" in problem["detail"]
        # No Content-Type at all is no JSON either.
        bare = client.build_request("POST", "/intents", content=body)
        assert "content-type" not in bare.headers
        assert _problem(client.send(bare), 415)["detail"].startswith(
            "the request body is not JSON (Content-Type: none)"
        )
        # The same body as JSON is accepted.
        assert (
            client.post("/intents", content=body, headers={"Content-Type": "application/json"}).status_code
            == 201
        )


def test_schema_problems_unknown_routes_methods_and_limits_have_codes(shared: Harness) -> None:
    with shared.client() as client:
        invalid = _problem(client.post("/intents", json={"action_type": "CREATE_INTERNAL_TASK"}), 422)
        assert invalid["code"] == "INVALID_REQUEST"
        assert invalid["errors"]
        route = _problem(client.get("/no/such/route"), 404)
        assert (route["code"], route["error"], route["detail"]) == ("NOT_FOUND", "Not found", "Not found")
        method = _problem(client.delete("/intents"), 405)
        assert method["code"] == "METHOD_NOT_ALLOWED"
        limit = _problem(client.get("/accounts/acc-1/executions", params={"limit": "0"}), 400)
        assert limit["code"] == "INVALID_LIMIT"
        assert "limit" in limit["error"]  # the reference's clients look for it there


def test_approve_transitions(shared: Harness) -> None:
    now = shared.service.clock.now()
    with shared.client() as client:
        intent = shared.create_intent(client)
        intent_id = intent["action_intent_id"]
        answer = shared.colleague(client).post(f"/intents/{intent_id}/approve").json()
        [given] = answer.pop("approvals")
        assert answer == {
            "action_intent_id": intent_id,
            "approval_status": "APPROVED",
            "approvals_required": 1,
            "action_hash": given["action_hash"],
            "warnings": [],
        }
        assert given["approved_by"] == "fulfill-cli+colleague"
        assert given["action_hash"].startswith("v1:")
        assert (
            shared.colleague(client).post(f"/intents/{intent_id}/approve").status_code == 202
        )  # approving twice is harmless
        shared.wait_terminal(client, intent_id)
        expired = shared.create_intent(client, expires_at=iso_from_epoch(now + 1))
        shared.service.clock.advance(5)
        assert (
            _problem(shared.colleague(client).post(f"/intents/{expired['action_intent_id']}/approve"), 409)[
                "code"
            ]
            == "INTENT_EXPIRED"
        )
        assert client.get(f"/executions/{expired['action_intent_id']}/status").json()["status"] == "EXPIRED"
    assert shared.task_rows(intent_id) == 1


def test_an_expiry_beyond_the_platform_maximum_is_refused(shared: Harness) -> None:
    now = shared.service.clock.now()
    limit = shared.settings.max_intent_ttl_seconds
    assert limit == 90 * 86_400  # the documented default
    approval = {"approved_by": "u", "approval_timestamp": iso_from_epoch(now)}
    body = {"action_type": "CREATE_INTERNAL_TASK", "account_id": "acc-1", "parameters": {"title": "x"}}
    with shared.client() as client:
        for extra in ({}, {"approval": approval}):  # a proposal, and an imported approval
            for expires_at in ("9999-12-31T23:59:59.999Z", iso_from_epoch(now + limit + 120)):
                refused = _problem(
                    client.post("/intents", json={**body, **extra, "expires_at": expires_at}), 422
                )
                assert refused["code"] == "EXPIRES_AT_TOO_LATE"
                assert "7776000 seconds (90 days)" in refused["detail"]
                assert "FULFILL_MAX_INTENT_TTL_SECONDS" in refused["detail"]
        within = shared.create_intent(client, expires_at=iso_from_epoch(now + limit - 120))
        assert within["expires_at"] == iso_from_epoch(int(now + limit - 120))
        note = shared.create_intent(
            client, action_type="CREATE_INTERNAL_NOTE", parameters={"content": "n"}
        )  # the longest default expiry (90 days) is within the default maximum
        # (the service's clock has moved on a little since the test read it)
        assert 0 <= epoch_from_iso(note["expires_at"]) - (int(now) + 90 * 86_400) <= 60


def test_events_are_rejected_with_reasons_and_audited(shared: Harness) -> None:
    with shared.client() as client:
        pending = shared.create_intent(client)
        cases = {
            "MALFORMED_EVENT": {
                "source": "cc-native",
                "detail-type": "ACTION_APPROVED",
                "detail": {"data": {"action_intent_id": ""}},
            },
            "UNSUPPORTED_SOURCE": {**approved_event("x"), "source": "elsewhere"},
            "UNSUPPORTED_DETAIL_TYPE": {**approved_event("x"), "detail-type": "ACTION_REJECTED"},
            "INTENT_NOT_FOUND": approved_event("ai_nobody"),
            "ACCOUNT_MISMATCH": approved_event(pending["action_intent_id"], account="acc-9"),
            "NOT_APPROVED": approved_event(pending["action_intent_id"]),
            "TENANT_MISMATCH": approved_event(pending["action_intent_id"], tenant="t2"),
        }
        for code, event in cases.items():
            assert _problem(client.post("/events", json=event), 422)["code"] == code
        _problem(client.post("/events", json=[1, 2]), 422)
    with shared.db.read() as conn:
        audited = [
            e.data["reason"]
            for e in executions.list_ledger(conn, "t1", pending["action_intent_id"])
            if e.event_type == "EVENT_REJECTED"
        ]
        unknown = [e.data["reason"] for e in executions.list_ledger(conn, "t1", "ai_nobody")]
    assert sorted(audited) == ["ACCOUNT_MISMATCH", "NOT_APPROVED", "TENANT_MISMATCH"]
    assert unknown == ["INTENT_NOT_FOUND"]
    assert shared.outcome_rows(pending["action_intent_id"]) == 0


def test_putevents_batch_is_answered_per_entry(shared: Harness) -> None:
    import json

    now = shared.service.clock.now()
    with shared.client() as client:
        intent = shared.create_intent(
            client, approval={"approved_by": "u", "approval_timestamp": iso_from_epoch(now)}
        )
        entry = {
            "Source": "cc-native",
            "DetailType": "ACTION_APPROVED",
            "Detail": json.dumps(approved_event(intent["action_intent_id"])["detail"]),
        }
        bad = {"Source": "cc-native", "DetailType": "ACTION_APPROVED", "Detail": "{broken"}
        response = client.post("/events", json={"Entries": [entry, bad, entry]})
        assert response.status_code == 200
        answer = response.json()
        assert answer["FailedEntryCount"] == 1
        assert "EventId" in answer["Entries"][0]
        assert answer["Entries"][1]["ErrorCode"] == "MALFORMED_EVENT"
        assert "EventId" in answer["Entries"][2]
        assert shared.wait_terminal(client, intent["action_intent_id"])["status"] == "SUCCEEDED"
        _problem(client.post("/events", json={"Entries": []}), 422)
    assert shared.task_rows(intent["action_intent_id"]) == 1


def _rejections_audited(harness: Harness) -> int:
    from sqlalchemy import func, select

    from fulfill.store.tables import ledger_entries

    query = select(func.count()).where(ledger_entries.c.event_type == "EVENT_REJECTED")
    with harness.db.read() as conn:
        return int(conn.execute(query).scalar_one())


def test_event_ids_beyond_the_api_s_limits_are_refused_per_entry_and_never_stored(shared: Harness) -> None:
    import json

    now = shared.service.clock.now()
    with shared.client() as client:
        intent = shared.create_intent(
            client, approval={"approved_by": "u", "approval_timestamp": iso_from_epoch(now)}
        )
        intent_id = intent["action_intent_id"]
        oversized = [
            approved_event("ai_" + "x" * 126),  # 129 characters: one over the API's limit
            approved_event(intent_id, tenant="t" * 129),
            approved_event(intent_id, account="a" * 129),
            approved_event("ai x"),  # a character no identifier may have
        ]
        before = _rejections_audited(shared)
        # One event with a 1 MB id: a 422, and not a byte of it in the ledger.
        single = _problem(client.post("/events", json=approved_event("ai_" + "x" * 1_000_000)), 422)
        assert single["code"] == "MALFORMED_EVENT"
        assert "action_intent_id" in single["detail"]
        assert "128" in single["detail"]
        assert len(single["detail"]) < 500

        def entry(event: dict[str, Any]) -> dict[str, Any]:
            return {
                "Source": event["source"],
                "DetailType": event["detail-type"],
                "Detail": json.dumps(event["detail"]),
            }

        response = client.post(
            "/events", json={"Entries": [entry(e) for e in oversized] + [entry(approved_event(intent_id))]}
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["FailedEntryCount"] == 4
        assert [a.get("ErrorCode") for a in answer["Entries"][:4]] == ["MALFORMED_EVENT"] * 4
        assert "EventId" in answer["Entries"][4]  # the good entry of the batch is not lost
        assert shared.wait_terminal(client, intent_id)["status"] == "SUCCEEDED"
    # A malformed event is refused before anything is written: no rejection rows carry its ids.
    assert _rejections_audited(shared) == before
    assert shared.task_rows(intent_id) == 1


def test_an_unexpected_error_is_a_generic_500_with_a_logged_correlation_id(
    shared: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fulfill.usecases import intents

    def explode(*_args: Any) -> Any:
        raise RuntimeError("SELECT secret FROM vault -- token=abc")

    monkeypatch.setattr(intents, "get_intent", explode)
    with shared.client() as client, caplog.at_level("ERROR", logger="fulfill.api"):
        response = client.get("/intents/ai_anything")
    body = _problem(response, 500)
    assert (body["code"], body["error"]) == ("INTERNAL_ERROR", "Internal server error")
    assert "SELECT" not in response.text
    assert "token" not in response.text
    assert body["correlation_id"] in caplog.text
    assert "RuntimeError at " in caplog.text  # where it failed...
    assert "SELECT" not in caplog.text  # ...but never what the message said
    assert "Traceback" not in caplog.text


def test_bodies_over_the_limit_are_413(shared: Harness) -> None:
    big = {
        "action_type": "CREATE_INTERNAL_TASK",
        "account_id": "acc-1",
        "parameters": {"title": "x" * 1_100_000},
    }
    with shared.client() as client:
        assert _problem(client.post("/intents", json=big), 413)["code"] == "BODY_TOO_LARGE"

        def chunks() -> Any:
            for _ in range(40):
                yield b"x" * 50_000

        streamed = client.post("/intents", content=chunks(), headers={"Content-Type": "application/json"})
        _problem(streamed, 413)


def test_readyz_is_503_and_names_the_part_when_the_database_is_down(
    shared: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:

    def unavailable() -> Any:
        raise RuntimeError("database down")

    monkeypatch.setattr(shared.db, "read", unavailable)
    response = plain_http.get(f"{shared.url}/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "checks": {"database": "unavailable", "workers": "ok"}}


def test_an_out_of_range_registry_version_is_a_422_not_a_database_error(shared: Harness) -> None:
    """PostgreSQL's integer stops at 2**31 - 1; the request is refused before it gets there."""
    with shared.client() as client:
        answer = client.post(
            "/intents",
            json={
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": "acc-1",
                "parameters": {"title": "x"},
                "registry_version": 12011388149,
            },
        )
    assert _problem(answer, 422)["detail"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_need_no_internet(shared: Harness, page: str) -> None:
    """Their scripts, styles and icon come from this service, not a CDN."""

    html = plain_http.get(f"{shared.url}{page}")
    assert html.status_code == 200
    assets = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', html.text)
    assert assets
    assert not [url for url in assets if "//" in url], assets
    assert "https://" not in html.text
    for asset in assets:
        served = plain_http.get(f"{shared.url}{asset}")
        assert served.status_code == 200, asset
        # ReDoc's bundle shows Redocly's logo: from this service too, not from its CDN.
        assert "cdn.redoc.ly" not in served.text, asset


def test_health_and_metrics_answer_head(shared: Harness) -> None:

    for path, media_type in (("/healthz", "application/json"), ("/metrics", "text/plain")):
        response = plain_http.head(f"{shared.url}{path}")
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(media_type)
        assert response.content == b""


def test_create_names_the_parameters_its_mapping_never_sends(shared: Harness) -> None:
    """Unmapped parameters are kept and dropped from the tool call, as in the reference, but the
    answer names them: a misspelt parameter is no longer silent."""
    with shared.client() as client:
        created = client.post(
            "/intents",
            json={
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": "acc-1",
                "parameters": {"title": "x", "descripton": "typo", "note": "extra"},
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["ignored_parameters"] == ["descripton", "note"]
        assert created.json()["parameters"]["descripton"] == "typo"
        clean = shared.create_intent(client)
        assert clean["ignored_parameters"] == []


def test_the_same_create_again_names_the_ignored_parameters_too(shared: Harness) -> None:
    body = {
        "action_intent_id": f"ignored-{uuid.uuid4().hex}",
        "action_type": "CREATE_INTERNAL_TASK",
        "account_id": "acc-1",
        "parameters": {"title": "x", "descripton": "typo"},
    }
    with shared.client() as client:
        first = client.post("/intents", json=body)
        repeat = client.post("/intents", json=body)
    assert (first.status_code, repeat.status_code) == (201, 200), repeat.text
    assert first.json()["ignored_parameters"] == repeat.json()["ignored_parameters"] == ["descripton"]
