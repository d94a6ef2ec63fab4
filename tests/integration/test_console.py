"""The operator console over HTTP against the real service: login, sessions, CSRF, scopes,
tenants, and every refusal as a readable page (never a 500, never a change).

The service is shared by the module; tests that change global kill switches are in
``test_console_kill_switches.py``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from fulfill.domain.action_hash import action_hash
from fulfill.domain.killswitch import KillSwitchScope
from fulfill.domain.models import ActionIntentV1, ApprovalRule, IntentApproval
from fulfill.store import executions as ledger_store
from fulfill.store import intents as intent_store
from fulfill.store.tables import ledger_entries
from fulfill.tokens import mint_token
from fulfill.usecases import admin
from tests.support.console import Console, bearer_session_cookie, is_login_redirect, seed_pending
from tests.support.harness import Harness

PAGES = ["/console/approvals", "/console/executions", "/console/kill-switches", "/console/registry"]


@pytest.fixture
def console(shared: Harness) -> Iterator[Console]:
    browser = Console(shared)
    yield browser
    browser.close()


def _id() -> str:
    return f"ai_console_{uuid.uuid4().hex[:12]}"


def _approval_status(harness: Harness, intent_id: str, tenant: str = "t1") -> str:
    with harness.db.read() as conn:
        intent = intent_store.get_intent(conn, tenant, intent_id)
    assert intent is not None
    return intent.approval_status.value


def _pending(harness: Harness, **fields: object) -> str:
    intent_id = _id()
    seed_pending(harness, intent_id, expires_in=3600, **fields)
    return intent_id


# --- login and sessions ------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_pages_send_a_visitor_without_a_session_to_the_login(console: Console, path: str) -> None:
    response = console.get(path)
    assert is_login_redirect(response)
    assert f"next={path}" in response.headers["location"]


def test_login_page_offers_the_dev_login_and_no_identity_provider_when_none_is_configured(
    console: Console,
) -> None:
    page = console.get("/console/login")
    assert page.status_code == 200
    assert 'action="/console/login"' in page.text
    assert "/console/login/oidc" not in page.text
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("fulfill_console=")
    assert "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower()
    assert "path=/console" in cookie.lower()
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


def test_login_lands_on_the_next_page_and_never_on_another_site(console: Console) -> None:
    csrf = console.csrf()
    for wanted, lands in [
        ("/console/executions", "/console/executions"),
        ("https://evil.example/", "/console/"),
        ("//evil.example/", "/console/"),
    ]:
        response = console.http.post(
            "/console/login",
            data={"csrf": csrf, "tenant": "t1", "subject": "op", "scopes": ["intents:read"], "next": wanted},
        )
        assert response.status_code == 303
        assert response.headers["location"] == lands
        csrf = console.csrf("/console/approvals")


def test_login_without_or_with_a_wrong_csrf_token_is_refused(console: Console) -> None:
    console.csrf()  # the session exists
    for fields in [{}, {"csrf": "forged"}]:
        response = console.http.post(
            "/console/login", data={**fields, "tenant": "t1", "subject": "op", "scopes": ["intents:read"]}
        )
        assert response.status_code == 403
        assert "security token" in response.text
    assert is_login_redirect(console.get("/console/approvals"))


def test_login_with_bad_input_shows_a_message(console: Console) -> None:
    for fields in [
        {"tenant": "", "subject": "op"},
        {"tenant": "t 1", "subject": "op"},
        {"tenant": "t1", "subject": ""},
        {"tenant": "t1", "subject": "op", "account_ids": "a b"},
    ]:
        response = console.http.post("/console/login", data={"csrf": console.csrf(), **fields})
        assert response.status_code == 422
        assert 'role="alert"' in response.text
    response = console.http.post(
        "/console/login", content=b'{"tenant": "t1"}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 415


def test_a_tampered_session_cookie_goes_back_to_the_login(console: Console) -> None:
    console.login()
    assert console.get("/console/approvals").status_code == 200
    value = console.http.cookies["fulfill_console"]
    console.http.cookies.clear()
    console.http.cookies.set("fulfill_console", value[:-3] + ("AAA" if value[-3:] != "AAA" else "BBB"))
    assert is_login_redirect(console.get("/console/approvals"))


def test_a_session_signed_with_another_secret_goes_back_to_the_login(
    shared: Harness, console: Console
) -> None:
    token = mint_token(shared.settings, tenant_id="t1", scopes=["intents:read"])
    forged = bearer_session_cookie(shared, token)
    console.http.cookies.set("fulfill_console", forged[:-2] + "xx")
    assert is_login_redirect(console.get("/console/approvals"))


def test_an_expired_token_goes_back_to_the_login(shared: Harness, console: Console) -> None:
    expired = mint_token(
        shared.settings, tenant_id="t1", scopes=["intents:read"], ttl_seconds=60, now=time.time() - 3600
    )
    console.http.cookies.set("fulfill_console", bearer_session_cookie(shared, expired))
    assert is_login_redirect(console.get("/console/approvals"))
    # and the session is gone: the cookie was cleared
    assert is_login_redirect(console.get("/console/approvals"))


def test_a_token_from_another_issuer_in_the_session_goes_back_to_the_login(
    shared: Harness, console: Console
) -> None:
    foreign = mint_token(
        shared.settings.model_copy(update={"jwt_secret": "another-secret-0123456789abcdef0123"}),
        tenant_id="t1",
        scopes=["intents:read"],
    )
    console.http.cookies.set("fulfill_console", bearer_session_cookie(shared, foreign))
    assert is_login_redirect(console.get("/console/approvals"))


def test_htmx_polls_without_a_session_are_told_to_go_to_the_login(console: Console) -> None:
    response = console.get("/console/executions/ai_x/live", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == "/console/login"


def test_logout_needs_the_csrf_token_and_ends_the_session(console: Console) -> None:
    console.login()
    assert console.post("/console/logout", csrf=None).status_code == 403
    assert console.get("/console/approvals").status_code == 200
    response = console.post("/console/logout")
    assert response.status_code == 303
    assert is_login_redirect(console.get("/console/approvals"))


# --- approvals ---------------------------------------------------------------------------------


def test_approvals_lists_the_tenants_waiting_intents_newest_first(shared: Harness, console: Console) -> None:
    older = _pending(shared, parameters={"title": "older one"})
    time.sleep(0.01)
    newer = _pending(shared, parameters={"title": "newer one", "priority": {"level": 2}})
    page = console.login().get("/console/approvals")
    assert page.status_code == 200
    assert page.text.index(newer) < page.text.index(older)
    assert "newer one" in page.text
    assert "&#34;level&#34;: 2" in page.text or '"level": 2' in page.text  # nested values as JSON
    assert f'formaction="/console/intents/{newer}/approve"' in page.text


def test_approve_with_a_comment_goes_to_the_timeline_and_is_in_the_ledger(
    shared: Harness, console: Console
) -> None:
    intent_id = _pending(shared)
    response = console.login(subject="alice").post(
        f"/console/intents/{intent_id}/approve", {"comment": "checked with the customer"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/executions/{intent_id}"
    assert _approval_status(shared, intent_id) == "APPROVED"
    with shared.db.read() as conn:
        entries = ledger_store.list_ledger(conn, "t1", intent_id)
    approved = next(e for e in entries if e.event_type == "ACTION_APPROVED")
    assert approved.data["approved_by"] == "alice"
    assert approved.data["comment"] == "checked with the customer"
    timeline = console.get(response.headers["location"])
    assert "checked with the customer" in timeline.text


def test_reject_with_a_comment(shared: Harness, console: Console) -> None:
    intent_id = _pending(shared)
    response = console.login(subject="bob").post(f"/console/intents/{intent_id}/reject", {"comment": "no"})
    assert response.status_code == 303
    assert _approval_status(shared, intent_id) == "REJECTED"
    with shared.db.read() as conn:
        entries = ledger_store.list_ledger(conn, "t1", intent_id)
    rejected = next(e for e in entries if e.event_type == "INTENT_REJECTED")
    assert rejected.data == {"action_intent_id": intent_id, "decided_by": "bob", "comment": "no"}
    assert f'data-intent="{intent_id}"' not in console.get("/console/approvals").text


@pytest.mark.parametrize("csrf", [None, "forged", ""])
def test_approve_without_the_right_csrf_token_is_refused(
    shared: Harness, console: Console, csrf: str | None
) -> None:
    intent_id = _pending(shared)
    response = console.login().post(f"/console/intents/{intent_id}/approve", csrf=csrf)
    assert response.status_code == 403
    assert _approval_status(shared, intent_id) == "PENDING_APPROVAL"


def test_a_csrf_token_of_another_session_is_refused(shared: Harness, console: Console) -> None:
    other = Console(shared)
    try:
        stolen = other.login().csrf("/console/approvals")
    finally:
        other.close()
    intent_id = _pending(shared)
    response = console.login().post(f"/console/intents/{intent_id}/approve", csrf=stolen)
    assert response.status_code == 403
    assert _approval_status(shared, intent_id) == "PENDING_APPROVAL"


def test_a_user_without_approve_scope_sees_no_buttons_and_a_forged_post_gets_403(
    shared: Harness, console: Console
) -> None:
    intent_id = _pending(shared)
    console.login(scopes=["intents:read", "executions:read"])
    page = console.get("/console/approvals")
    assert intent_id in page.text
    assert "/approve" not in page.text
    assert "/reject" not in page.text
    for action in ("approve", "reject"):
        response = console.post(f"/console/intents/{intent_id}/{action}")
        assert response.status_code == 403
        assert "intents:approve" in response.text
    assert _approval_status(shared, intent_id) == "PENDING_APPROVAL"


def test_an_expired_intent_is_greyed_out_without_buttons_and_cannot_be_approved(
    shared: Harness, console: Console
) -> None:
    intent_id = _id()
    seed_pending(shared, intent_id, expires_in=-60)
    page = console.login().get("/console/approvals").text
    card = page[page.index(f'data-intent="{intent_id}"') - 40 :]
    card = card[: card.index("</li>")]
    assert 'class="card expired"' in card
    assert "Expired" in card
    assert "/approve" not in card
    response = console.post(f"/console/intents/{intent_id}/approve")
    assert response.status_code == 409
    assert "expired" in response.text
    assert _approval_status(shared, intent_id) == "PENDING_APPROVAL"


def test_a_comment_that_is_too_long_is_refused_readably(shared: Harness, console: Console) -> None:
    intent_id = _pending(shared)
    response = console.login().post(f"/console/intents/{intent_id}/approve", {"comment": "x" * 501})
    assert response.status_code == 422
    assert "longer than 500" in response.text
    assert _approval_status(shared, intent_id) == "PENDING_APPROVAL"
    response = console.post(f"/console/intents/{intent_id}/approve", {"comment": "x" * 5000})
    assert response.status_code == 422
    assert _approval_status(shared, intent_id) == "PENDING_APPROVAL"


def test_unknown_or_malformed_intent_ids_are_404_pages(console: Console) -> None:
    console.login()
    assert console.post("/console/intents/ai_missing/approve").status_code == 404
    assert console.post("/console/intents/bad%20id/approve").status_code == 404
    assert console.get("/console/executions/ai_missing").status_code == 404
    assert console.get("/console/executions/bad%20id").status_code == 404


def test_a_form_sent_as_json_is_refused(shared: Harness, console: Console) -> None:
    intent_id = _pending(shared)
    console.login()
    response = console.http.post(
        f"/console/intents/{intent_id}/approve",
        content=b'{"csrf": "x"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 415
    assert _approval_status(shared, intent_id) == "PENDING_APPROVAL"


# --- tenants and accounts ----------------------------------------------------------------------


def test_a_user_of_one_tenant_never_sees_or_decides_another_tenants_intents(
    shared: Harness, console: Console
) -> None:
    theirs = _pending(shared, tenant_id="t-other", account_id="acc-other")
    console.login(tenant="t1")
    assert theirs not in console.get("/console/approvals").text
    assert "acc-other" not in console.get("/console/executions").text
    assert console.get(f"/console/executions/{theirs}").status_code == 404
    assert console.get(f"/console/executions/{theirs}/live").status_code == 404
    assert console.get("/console/executions?account_id=acc-other").text.count(theirs) == 0
    for action in ("approve", "reject"):
        assert console.post(f"/console/intents/{theirs}/{action}").status_code == 404
    assert _approval_status(shared, theirs, tenant="t-other") == "PENDING_APPROVAL"


def test_a_user_limited_to_some_accounts_sees_only_those(shared: Harness, console: Console) -> None:
    mine = _pending(shared, account_id="acc-mine")
    hidden = _pending(shared, account_id="acc-hidden")
    console.login(account_ids="acc-mine")
    page = console.get("/console/approvals").text
    assert mine in page
    assert hidden not in page
    assert console.get(f"/console/executions/{hidden}").status_code == 403
    assert console.post(f"/console/intents/{hidden}/approve").status_code == 403
    assert console.get("/console/executions?account_id=acc-hidden").status_code == 403
    assert _approval_status(shared, hidden) == "PENDING_APPROVAL"


# --- executions ---------------------------------------------------------------------------------


def test_executions_list_filters_pages_and_links_to_timelines(shared: Harness, console: Console) -> None:
    account = f"acc-list-{uuid.uuid4().hex[:6]}"
    ids = [_pending(shared, account_id=account) for _ in range(3)]
    console.login()
    page = console.get(f"/console/executions?account_id={account}&status=PENDING")
    assert page.status_code == 200
    for intent_id in ids:
        assert f'href="/console/executions/{intent_id}"' in page.text
    assert "Next page" not in page.text
    assert console.get(f"/console/executions?account_id={account}&status=SUCCEEDED").text.count(ids[0]) == 0


def test_executions_list_with_a_bad_filter_or_cursor_shows_a_message(console: Console) -> None:
    console.login()
    for query in ["status=DONE", "next_token=forged", "account_id=bad%20account"]:
        response = console.get(f"/console/executions?account_id=acc-1&{query}")
        assert response.status_code == 400, query
        assert 'role="alert"' in response.text


def test_the_timeline_shows_the_outcome_with_its_external_object_and_plain_words(
    shared: Harness, console: Console
) -> None:
    with shared.client() as api:
        body = shared.create_intent(api)
        shared.approve(api, body["action_intent_id"])
        shared.wait_terminal(api, body["action_intent_id"])
    page = console.login().get(f"/console/executions/{body['action_intent_id']}").text
    for text in [
        "Approved",
        "Execution started",
        "Tool call internal.create_task",
        "Outcome: SUCCEEDED",
        "Signal",
    ]:
        assert text in page, text
    assert "INTERNAL Task task_" in page  # the external object the tool call wrote
    assert "hx-trigger" not in page.split('id="live"')[1].split(">")[0]  # no more polling once it ended


def test_pages_need_their_scopes(console: Console) -> None:
    console.login(scopes=["intents:read"])
    assert console.get("/console/approvals").status_code == 200
    for path in [
        "/console/executions",
        "/console/executions/ai_x",
        "/console/kill-switches",
        "/console/registry",
    ]:
        response = console.get(path)
        assert response.status_code == 403, path
        assert "lacks the scope" in response.text
    page = console.get("/console/approvals").text
    assert 'href="/console/kill-switches"' not in page
    assert 'href="/console/executions"' not in page


# --- kill switches and registry: scopes ----------------------------------------------------------


def test_a_user_without_admin_sees_no_switches_and_forged_posts_get_403(
    shared: Harness, console: Console
) -> None:
    console.login(scopes=["intents:read", "intents:approve", "executions:read"])
    assert console.get("/console/kill-switches").status_code == 403
    for path, fields in [
        ("/console/kill-switches/global", {"global_stop": "true", "confirmed": "yes"}),
        ("/console/kill-switches/tenant", {"execution_enabled": "false", "confirmed": "yes"}),
    ]:
        response = console.post(path, fields)
        assert response.status_code == 403
    with shared.client() as api:
        assert api.get("/admin/kill-switches").json()["global_stop"] is False
        assert api.get("/admin/tenants/t1/execution").json()["execution_enabled"] is True


def test_a_tenant_admin_sees_only_its_own_tenant_and_no_global_stop(
    shared: Harness, console: Console
) -> None:
    console.login(tenant="t-admin", scopes=["admin"])
    page = console.get("/console/kill-switches")
    assert page.status_code == 200
    assert "Tenant t-admin" in page.text
    assert "global-stop" not in page.text
    assert "/console/kill-switches/global" not in page.text
    assert page.text.count('class="switch"') == 1  # its own tenant's section, nothing else
    response = console.post("/console/kill-switches/global", {"global_stop": "true", "confirmed": "yes"})
    assert response.status_code == 403
    assert console.get("/console/registry").status_code == 403


def test_a_platform_admin_without_admin_sees_the_global_switches_only(console: Console) -> None:
    console.login(scopes=["platform:admin"])
    page = console.get("/console/kill-switches").text
    assert 'id="global-stop"' in page
    assert "tenant-stop" not in page
    assert "/console/kill-switches/tenant" not in page


def test_bad_kill_switch_forms_show_a_message_and_change_nothing(shared: Harness, console: Console) -> None:
    console.login()
    for path, fields in [
        ("/console/kill-switches/global", {"global_stop": "maybe"}),
        ("/console/kill-switches/global", {"global_stop": "false", "disabled_action_types": "not a type"}),
        ("/console/kill-switches/tenant", {"execution_enabled": ""}),
        ("/console/kill-switches/tenant", {"execution_enabled": "true", "disabled_action_types": "x" * 100}),
    ]:
        response = console.post(path, fields)
        assert response.status_code == 422, fields
        assert 'role="alert"' in response.text
    with shared.client() as api:
        assert api.get("/admin/kill-switches").json()["revision"] == 0


def test_stopping_asks_for_confirmation_first(shared: Harness, console: Console) -> None:
    console.login(tenant="t-confirm")
    response = console.post("/console/kill-switches/tenant", {"execution_enabled": "false"})
    assert response.status_code == 200
    assert "Are you sure?" in response.text
    assert 'name="confirmed" value="yes"' in response.text
    with shared.client(tenant="t-confirm") as api:
        assert api.get("/admin/tenants/t-confirm/execution").json()["execution_enabled"] is True
    response = console.post(
        "/console/kill-switches/tenant", {"execution_enabled": "false", "confirmed": "yes"}
    )
    assert response.status_code == 303
    page = console.get("/console/kill-switches").text
    assert "STOPPED: no execution of this tenant runs." in page
    assert "operator@example.com" in page  # who, from the ledger
    # resuming needs no confirmation
    assert console.post("/console/kill-switches/tenant", {"execution_enabled": "true"}).status_code == 303
    with shared.client(tenant="t-confirm") as api:
        assert api.get("/admin/tenants/t-confirm/execution").json()["execution_enabled"] is True


def test_kill_switch_changes_through_the_api_are_in_the_ledger_with_who_made_them(shared: Harness) -> None:
    with shared.client(tenant="t-audit", subject="carol") as api:
        response = api.put(
            "/admin/tenants/t-audit/execution",
            json={"execution_enabled": True, "disabled_action_types": ["X_Y"]},
        )
        assert response.status_code == 200
    with shared.db.read() as conn:
        rows = conn.execute(
            select(ledger_entries).where(
                ledger_entries.c.tenant_id == "t-audit", ledger_entries.c.event_type == "KILL_SWITCH_CHANGED"
            )
        ).all()
    assert len(rows) == 1
    assert rows[0].data == {
        "scope": "tenant",
        "changed_by": "carol",
        "execution_enabled": True,
        "disabled_action_types": ["X_Y"],
    }
    assert rows[0].attempt == response.json()["revision"]


def test_kill_switch_history_is_the_latest_changes_newest_first(shared: Harness) -> None:
    with shared.client(tenant="t-history", subject="dora") as api:
        for index in range(5):
            response = api.put(
                "/admin/tenants/t-history/execution",
                json={"execution_enabled": index % 2 == 0, "disabled_action_types": []},
            )
            assert response.status_code == 200
    history = admin.kill_switch_history(shared.service.store, KillSwitchScope.of_tenant("t-history"), limit=3)
    assert [entry.attempt for entry in history] == [5, 4, 3]
    assert [entry.data["execution_enabled"] for entry in history] == [True, False, True]
    assert admin.kill_switch_history(shared.service.store, KillSwitchScope.of_tenant("t-none"), limit=3) == []


def test_registry_page_shows_versions_mappings_and_connectors(shared: Harness, console: Console) -> None:
    with shared.client() as api:
        shared.run_task(api)  # at least one call of the internal connector in this process
    page = console.login().get("/console/registry")
    assert page.status_code == 200
    assert "CREATE_INTERNAL_TASK" in page.text
    assert "internal.create_task" in page.text
    assert "title → title" in page.text
    assert "CLOSED" in page.text  # the internal connector's circuit
    internal = page.text[page.text.index('<td data-label="Name">internal</td>') :]
    internal = internal[: internal.index("</tr>")]
    # p50 / p95 (calls, failed): this process's calls of the last minutes, whichever test made them
    assert re.search(r"[0-9.]+ / [0-9.]+ ms \([1-9][0-9]*, [0-9]+\)", internal)


def test_what_agents_propose_is_shown_as_text_never_as_markup(shared: Harness, console: Console) -> None:
    intent_id = _pending(
        shared, parameters={"title": '<script>alert("x")</script>', "nested": {"<b>": "<i>"}}
    )
    page = console.login().get("/console/approvals").text
    assert intent_id in page
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "<b>" not in page


# --- who proposed, the rule that decides, the approvals so far and the hash ----------------------


def _stored(harness: Harness, intent_id: str, tenant: str = "t1") -> ActionIntentV1:
    with harness.db.read() as conn:
        intent = intent_store.get_intent(conn, tenant, intent_id)
    assert intent is not None
    return intent


def _facts(page: str, intent_id: str) -> str:
    """The approval facts of one intent on a page (its card on the approvals page)."""
    start = page.index(f'data-intent="{intent_id}"') if f'data-intent="{intent_id}"' in page else 0
    block = page[page.index('<dl class="approval-facts">', start) :]
    return block[: block.index("</dl>")]


def test_a_partly_approved_intent_shows_its_policy_approvals_so_far_and_hash(
    shared: Harness, console: Console
) -> None:
    rule = ApprovalRule(
        policy_id="pol_console2of3",
        policy_version=3,
        policy_name="three people above 10k",
        approvals_required=3,
    )
    intent_id = _id()
    seed_pending(
        shared, intent_id, expires_in=3600, approval_rule=rule, proposed_by="agent-7", proposed_via="mcp"
    )
    intent = _stored(shared, intent_id)
    first = IntentApproval(
        approved_by="alice", approved_at="2026-01-02T03:04:05.000Z", action_hash=action_hash(intent)
    )
    second = IntentApproval(
        approved_by="bob", approved_at="2026-01-02T03:05:00.000Z", action_hash=action_hash(intent)
    )
    with shared.db.write() as conn:
        intent_store.save_intent(conn, intent.model_copy(update={"approvals": [first, second]}))
    full = action_hash(intent)

    card = _facts(console.login(subject="carol").get("/console/approvals").text, intent_id)
    assert "2 of 3" in card
    assert "policy three people above 10k (pol_console2of3, version 3): REQUIRE_APPROVAL" in card
    assert 'data-policy-id="pol_console2of3"' in card
    assert "alice" in card
    assert "bob" in card
    assert card.index("alice") < card.index("bob")  # oldest first
    assert f'title="{full}"' in card
    assert f'value="{full}"' in card
    assert f">{full[:15]}…</code>" in card  # shown short: v1: and 12 hex digits

    timeline = console.get(f"/console/executions/{intent_id}").text
    facts = _facts(timeline, intent_id)
    assert "agent-7" in facts
    assert "through the agent endpoint" in facts
    assert "2 of 3" in facts
    assert "three people above 10k" in facts
    assert "Action hash" in facts
    assert full in facts
    assert "Approved action hash" not in facts  # not approved yet: the hash an approval binds to now


def test_an_intent_without_a_policy_says_the_default_rule_and_its_approval(
    shared: Harness, console: Console
) -> None:
    intent_id = _pending(shared, proposed_by="fulfill-cli", proposed_via="api")
    browser = console.login(subject="dana")
    card = _facts(browser.get("/console/approvals").text, intent_id)
    assert "default: one approval" in card
    assert "0 of 1" in card

    response = browser.post(f"/console/intents/{intent_id}/approve")
    assert response.status_code == 303
    approved = _stored(shared, intent_id)
    assert approved.action_hash is not None
    facts = _facts(browser.get(f"/console/executions/{intent_id}").text, intent_id)
    assert "fulfill-cli" in facts
    assert "through the API" in facts
    assert "1 of 1" in facts
    assert "dana" in facts
    assert "Approved action hash" in facts
    assert approved.action_hash in facts


def test_a_policy_name_is_shown_as_text_never_as_markup(shared: Harness, console: Console) -> None:
    rule = ApprovalRule(policy_id="pol_markup", policy_version=1, policy_name="<b>bold</b>")
    intent_id = _pending(shared, approval_rule=rule, proposed_by="<i>agent</i>")
    page = console.login().get(f"/console/executions/{intent_id}").text
    assert "<b>bold</b>" not in page
    assert "<i>agent</i>" not in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "&lt;i&gt;agent&lt;/i&gt;" in page


def test_two_approvals_in_the_console_count_one_of_two_then_run_with_the_hash_both_bound_to(
    shared: Harness, console: Console
) -> None:
    rule = ApprovalRule(
        policy_id="pol_console_two", policy_version=1, policy_name="two people", approvals_required=2
    )
    intent_id = _pending(shared, approval_rule=rule, proposed_by="agent-9", proposed_via="mcp")
    alice = console.login(subject="alice")
    assert alice.post(f"/console/intents/{intent_id}/approve").status_code == 303
    assert _approval_status(shared, intent_id) == "PENDING_APPROVAL"
    card = _facts(alice.get("/console/approvals").text, intent_id)
    assert "1 of 2" in card
    assert "alice" in card

    bob = Console(shared)
    try:
        bob.login(subject="bob")
        assert bob.post(f"/console/intents/{intent_id}/approve").status_code == 303
        approved = _stored(shared, intent_id)
        assert approved.approval_status.value == "APPROVED"
        assert approved.action_hash is not None
        timeline = bob.get(f"/console/executions/{intent_id}").text
        facts = _facts(timeline, intent_id)
    finally:
        bob.close()
    # The ledger as the timeline reads it: the first approval counted, then the last naming both.
    assert "Approval 1 of 2" in timeline
    assert "approvers: alice, bob" in timeline
    assert "2 of 2" in facts
    assert facts.index("alice") < facts.index("bob")
    assert "Approved action hash" in facts
    assert approved.action_hash in facts


def test_what_a_real_policy_decided_is_on_the_approvals_page_and_the_timeline(
    shared: Harness, console: Console
) -> None:
    tenant = f"t-console-{uuid.uuid4().hex[:8]}"
    with shared.client(tenant=tenant) as api:
        policy = api.post(
            "/admin/policies",
            json={
                "name": "two people for tasks",
                "match": {"action_types": ["CREATE_INTERNAL_TASK"]},
                "decision": "REQUIRE_APPROVAL",
                "approvals_required": 2,
            },
        )
        assert policy.status_code == 201, policy.text
        policy_id = policy.json()["policy_id"]
        waiting = shared.create_intent(api)["action_intent_id"]
        auto = api.post(
            "/admin/policies",
            json={
                "name": "notes approve themselves",
                "match": {"action_types": ["CREATE_INTERNAL_NOTE"]},
                "decision": "AUTO_APPROVE",
            },
        ).json()["policy_id"]
        approved = shared.create_intent(
            api, action_type="CREATE_INTERNAL_NOTE", parameters={"content": "hello"}
        )["action_intent_id"]
        shared.wait_terminal(api, approved)

    browser = console.login(tenant=tenant, subject="erin")
    card = _facts(browser.get("/console/approvals").text, waiting)
    assert f"policy two people for tasks ({policy_id}, version 1): REQUIRE_APPROVAL" in card
    assert "0 of 2" in card
    timeline = browser.get(f"/console/executions/{waiting}").text
    assert "Policy two people for tasks: requires 2 approvals" in timeline

    ran = browser.get(f"/console/executions/{approved}").text
    facts = _facts(ran, approved)
    assert f"policy notes approve themselves ({auto}, version 1): AUTO_APPROVE" in facts
    assert "1 of 1" in facts
    assert f"policy:{auto}" in facts  # the approver is the policy
    assert "Approved action hash" in facts
    assert "Policy notes approve themselves: auto-approved" in ran
    assert f"by policy {auto} (version 1): no person needed" in ran
