"""The approvals queue at scale, over a real service (SQLite, and PostgreSQL on its pass): the
console's approvals page filters by proposer and deciding policy besides action type, account and
age, pages with those filters kept, and decides a selected set of intents at once, each through
the same approve or reject use case as one by one (its own ledger entry, every rule applied to it:
a refused one is named with its reason, the others proceed)."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator

import pytest

from fulfill.domain.models import ApprovalRule
from fulfill.domain.time import iso_from_epoch
from fulfill.store import executions as ledger_store
from fulfill.store import intents as intent_store
from fulfill.store.tables import action_intents
from tests.support.console import Console, seed_pending
from tests.support.harness import ALL_SCOPES, Harness

TENANT = "t-queue"
POLICY_A = "pol_routine01"
POLICY_B = "pol_bigrefund9"
OPERATOR = "operator@example.com"  # the console user's subject (tests.support.console)
_INTENT = re.compile(r'<li class="card[^"]*" data-intent="([^"]+)"')
_NEXT = re.compile(r'<a href="([^"]+)" rel="next">')
_ROW = re.compile(
    r'<tr data-intent="([^"]+)" class="(accepted|refused)">\s*<td>.*?</td>\s*<td>(.*?)</td>', re.S
)


@pytest.fixture(scope="module")
def queue(shared: Harness) -> dict[str, str]:
    """Seven pending intents of one tenant, each told apart by one filter, and 30 routine ones."""
    now = shared.service.clock.now()
    suffix = uuid.uuid4().hex[:6]

    def seed(name: str, *, age: float = 600, **fields: object) -> str:
        intent_id = f"ai_{name}_{suffix}"
        seed_pending(
            shared,
            intent_id,
            expires_in=86_400,
            tenant_id=TENANT,
            created_at=iso_from_epoch(now - age),
            **fields,
        )
        return intent_id

    ids = {
        "ada_a": seed(
            "ada_a", proposed_by="ada@acme.example", approval_rule=ApprovalRule(policy_id=POLICY_A)
        ),
        "ada_b": seed(
            "ada_b", proposed_by="ada@acme.example", approval_rule=ApprovalRule(policy_id=POLICY_B)
        ),
        "bob_b": seed(
            "bob_b",
            proposed_by="bob@acme.example",
            approval_rule=ApprovalRule(policy_id=POLICY_B, approvals_required=2),
        ),
        "old": seed("old", age=2 * 86_400, proposed_by="carol@acme.example"),
        "note": seed("note", proposed_by="carol@acme.example", action_type="CREATE_INTERNAL_NOTE"),
        "acc2": seed("acc2", proposed_by="carol@acme.example", account_id="acc-2"),
        "nobody": seed("nobody"),  # stored before proposers were recorded
    }
    for index in range(30):
        seed(
            f"routine{index:02d}",
            age=3600 + index,
            proposed_by="routine-bot",
            approval_rule=ApprovalRule(policy_id=POLICY_A),
        )
    return ids


@pytest.fixture
def console(shared: Harness) -> Iterator[Console]:
    browser = Console(shared)
    yield browser
    browser.close()


def _ids(page: str) -> list[str]:
    return _INTENT.findall(page)


def _count(page: str) -> str:
    match = re.search(r'<p class="count" id="pending-count">(.*?)</p>', page, re.S)
    assert match, "no count on the page"
    return re.sub(r"<[^>]+>", "", match.group(1))


def test_the_policy_id_is_a_column_of_the_intent(shared: Harness, queue: dict[str, str]) -> None:
    with shared.db.read() as conn:
        rows = {
            row.action_intent_id: row.policy_id
            for row in conn.execute(
                action_intents.select().where(
                    action_intents.c.action_intent_id.in_([queue["ada_b"], queue["old"]])
                )
            )
        }
    assert rows == {queue["ada_b"]: POLICY_B, queue["old"]: None}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("proposed_by=ada%40acme.example", {"ada_a", "ada_b"}),
        ("proposed_by=carol%40acme.example", {"old", "note", "acc2"}),
        ("proposed_by=nobody%40acme.example", set()),
        (f"policy_id={POLICY_B}", {"ada_b", "bob_b"}),
        (f"policy_id={POLICY_B}&proposed_by=bob%40acme.example", {"bob_b"}),
        (f"policy_id={POLICY_A}&proposed_by=ada%40acme.example", {"ada_a"}),
        ("policy_id=pol_unknown00", set()),
        ("age=1d", {"old"}),
        ("age=1d&proposed_by=ada%40acme.example", set()),
        ("action_type=CREATE_INTERNAL_NOTE", {"note"}),
        ("account_id=acc-2", {"acc2"}),
        ("account_id=acc-2&proposed_by=carol%40acme.example&order=oldest", {"acc2"}),
    ],
)
def test_filters_by_proposer_policy_age_type_and_account(
    console: Console, queue: dict[str, str], query: str, expected: set[str]
) -> None:
    console.login(tenant=TENANT, scopes=["intents:read"])
    response = console.get(f"/console/approvals?{query}")
    assert response.status_code == 200, response.text[:300]
    assert set(_ids(response.text)) == {queue[name] for name in expected}
    if expected:
        assert _count(response.text).startswith(f"{len(expected)} waiting (filtered)")
    else:
        assert "Nothing is waiting for approval that matches these filters" in _count(response.text)


def test_the_filters_are_shown_and_kept_on_the_next_page(console: Console, queue: dict[str, str]) -> None:
    console.login(tenant=TENANT, scopes=["intents:read"])
    first = console.get(f"/console/approvals?proposed_by=routine-bot&policy_id={POLICY_A}&order=oldest").text
    assert _count(first).startswith("30 waiting (filtered), showing 1 to 25")
    assert 'name="proposed_by" value="routine-bot"' in first
    assert f'name="policy_id" value="{POLICY_A}"' in first
    link = _NEXT.search(first)
    assert link is not None
    url = html.unescape(link.group(1))
    assert "proposed_by=routine-bot" in url
    assert f"policy_id={POLICY_A}" in url
    assert "order=oldest" in url
    second = console.get(url).text
    assert _count(second).startswith("30 waiting (filtered), showing 26 to 30")
    assert _NEXT.search(second) is None
    seen = _ids(first) + _ids(second)
    assert len(seen) == len(set(seen)) == 30
    # oldest first: the one proposed 3629 s ago leads
    assert seen[0].startswith("ai_routine29_")
    assert seen[-1].startswith("ai_routine00_")


def test_the_proposer_is_a_link_to_their_proposals(console: Console, queue: dict[str, str]) -> None:
    console.login(tenant=TENANT, scopes=["intents:read"])
    page = console.get("/console/approvals?account_id=acc-2").text
    assert 'href="/console/approvals?proposed_by=carol%40acme.example"' in page


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("policy_id=not-a-policy", "a policy id is &#39;pol_&#39; then 8 to 64 letters or digits"),
        ("proposed_by=" + "x" * 256, "a proposer is a subject of 1 to 255 printable characters"),
        ("proposed_by=a%0Ab", "a proposer is a subject of 1 to 255 printable characters"),
    ],
)
def test_bad_proposer_and_policy_filters_show_a_message(
    console: Console, queue: dict[str, str], query: str, words: str
) -> None:
    console.login(tenant=TENANT, scopes=["intents:read"])
    response = console.get(f"/console/approvals?{query}")
    assert response.status_code == 422, response.text[:300]
    assert words in response.text


# --- deciding several at once --------------------------------------------------------------------


def _created(shared: Harness, subject: str, count: int) -> list[str]:
    with shared.client("t1", ALL_SCOPES, subject=subject) as proposer:
        return [
            shared.create_intent(proposer, parameters={"title": f"routine {index}"})["action_intent_id"]
            for index in range(count)
        ]


def _decided(page: str) -> dict[str, tuple[str, str]]:
    return {
        intent_id: (kind, re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", body)).strip())
        for intent_id, kind, body in _ROW.findall(page)
    }


def _events(shared: Harness, intent_id: str, tenant: str = "t1") -> list[str]:
    with shared.db.read() as conn:
        return [entry.event_type for entry in ledger_store.list_ledger(conn, tenant, intent_id)]


def _status(shared: Harness, intent_id: str, tenant: str = "t1") -> str:
    with shared.db.read() as conn:
        intent = intent_store.get_intent(conn, tenant, intent_id)
    assert intent is not None
    return intent.approval_status.value


def test_approve_five_at_once_where_one_is_the_approvers_own(shared: Harness, console: Console) -> None:
    others = _created(shared, "ada@acme.example", 4)
    [own] = _created(shared, OPERATOR, 1)
    console.login(tenant="t1")
    selected = [others[0], others[1], own, others[2], others[3]]
    response = console.post(
        "/console/approvals/decide",
        {
            "selected": selected,
            "decision": "approve",
            "comment": "routine batch",
            "back": "/console/approvals",
        },
    )
    assert response.status_code == 200, response.text[:500]
    assert "4 of 5</strong> approvals accepted; 1 refused" in response.text
    rows = _decided(response.text)
    assert list(rows) == selected  # each reported, in the order selected
    kind, text = rows[own]
    assert kind == "refused"
    assert "SELF_APPROVAL" in text
    assert OPERATOR in html.unescape(text)
    for intent_id in others:
        assert rows[intent_id] == ("accepted", "APPROVED")
    # four executions, each with its own approval in the ledger; the own proposal waits
    with shared.client("t1", ALL_SCOPES, subject="ada@acme.example") as reader:
        for intent_id in others:
            assert shared.wait_terminal(reader, intent_id)["status"] == "SUCCEEDED"
            assert shared.task_rows(intent_id) == 1
            with shared.db.read() as conn:
                [approved] = [
                    entry
                    for entry in ledger_store.list_ledger(conn, "t1", intent_id)
                    if entry.event_type == "ACTION_APPROVED"
                ]
            assert approved.data["approved_by"] == OPERATOR
            assert approved.data.get("comment") == "routine batch"
    assert _status(shared, own) == "PENDING_APPROVAL"
    assert "ACTION_APPROVED" not in _events(shared, own)
    assert shared.task_rows(own) == 0


def test_reject_several_at_once(shared: Harness, console: Console) -> None:
    ids = _created(shared, "ada@acme.example", 3)
    console.login(tenant="t1")
    response = console.post("/console/approvals/decide", {"selected": ids, "decision": "reject"})
    assert response.status_code == 200, response.text[:500]
    assert "3 of 3</strong> rejections accepted." in response.text
    assert all(row == ("accepted", "REJECTED") for row in _decided(response.text).values())
    for intent_id in ids:
        assert _status(shared, intent_id) == "REJECTED"
        assert _events(shared, intent_id).count("INTENT_REJECTED") == 1
        assert shared.outcome_rows(intent_id) == 0


def test_an_m_of_n_intent_in_the_set_counts_one_approval(shared: Harness, console: Console) -> None:
    intent_id = f"ai_two_{uuid.uuid4().hex[:8]}"
    seed_pending(
        shared,
        intent_id,
        expires_in=3600,
        proposed_by="ada@acme.example",
        approval_rule=ApprovalRule(approvals_required=2),
    )
    [plain] = _created(shared, "ada@acme.example", 1)
    console.login(tenant="t1")
    response = console.post(
        "/console/approvals/decide", {"selected": [intent_id, plain], "decision": "approve"}
    )
    rows = _decided(response.text)
    assert rows[intent_id] == ("accepted", "Approval counted: 1 of 2")
    assert rows[plain] == ("accepted", "APPROVED")
    assert _status(shared, intent_id) == "PENDING_APPROVAL"
    assert _events(shared, intent_id).count("APPROVAL_RECORDED") == 1


def test_another_tenants_id_in_the_set_is_not_found_and_nothing_else_changes(
    shared: Harness, console: Console
) -> None:
    foreign = f"ai_foreign_{uuid.uuid4().hex[:8]}"
    seed_pending(shared, foreign, expires_in=3600, tenant_id="t-other", proposed_by="eve@other.example")
    [mine] = _created(shared, "ada@acme.example", 1)
    console.login(tenant="t1")
    response = console.post(
        "/console/approvals/decide", {"selected": [foreign, mine, "not an id"], "decision": "approve"}
    )
    assert response.status_code == 200, response.text[:500]
    rows = _decided(response.text)
    assert rows[foreign][0] == "refused"
    assert "NOT_FOUND" in rows[foreign][1]
    assert rows["not an id"][0] == "refused"
    assert "NOT_FOUND" in rows["not an id"][1]
    assert rows[mine] == ("accepted", "APPROVED")
    assert _status(shared, foreign, tenant="t-other") == "PENDING_APPROVAL"
    assert _events(shared, foreign, tenant="t-other") == []
    # rejecting it from t1 is refused the same way
    rejected = console.post("/console/approvals/decide", {"selected": [foreign], "decision": "reject"})
    assert _decided(rejected.text)[foreign][0] == "refused"
    assert _status(shared, foreign, tenant="t-other") == "PENDING_APPROVAL"


@pytest.mark.parametrize(
    ("form", "csrf", "status", "words"),
    [
        ({"decision": "approve"}, None, 403, "security token"),
        ({"decision": "approve"}, "forged", 403, "security token"),
        ({"decision": "approve", "selected": []}, "page", 422, "Select at least one intent"),
        ({"decision": "sideways"}, "page", 422, "Choose to approve or to reject"),
        ({"decision": "approve", "too_many": True}, "page", 422, "at most 100 intents are decided at once"),
    ],
)
def test_a_bad_or_forged_decision_changes_nothing(
    shared: Harness,
    console: Console,
    form: dict[str, object],
    csrf: str | None,
    status: int,
    words: str,
) -> None:
    [intent_id] = _created(shared, "ada@acme.example", 1)
    console.login(tenant="t1")
    data: dict[str, object] = {"decision": form["decision"], "selected": [intent_id]}
    if "selected" in form:
        data["selected"] = form["selected"]
    if form.get("too_many"):
        data["selected"] = [intent_id] + [f"ai_filler_{index:03d}" for index in range(100)]
    response = console.post("/console/approvals/decide", data, csrf=csrf)
    assert response.status_code == status, response.text[:500]
    assert words in html.unescape(response.text)
    assert _status(shared, intent_id) == "PENDING_APPROVAL"
    assert _events(shared, intent_id).count("ACTION_APPROVED") == 0


def test_a_reader_without_the_approve_scope_sees_no_selection_and_cannot_post(
    shared: Harness, console: Console
) -> None:
    [intent_id] = _created(shared, "ada@acme.example", 1)
    console.login(tenant="t1", scopes=["intents:read", "executions:read"])
    page = console.get("/console/approvals").text
    assert intent_id in page
    assert 'id="bulk"' not in page
    assert 'name="selected"' not in page
    response = console.post("/console/approvals/decide", {"selected": [intent_id], "decision": "approve"})
    assert response.status_code == 403
    assert _status(shared, intent_id) == "PENDING_APPROVAL"


def test_an_approver_sees_a_checkbox_on_each_card_bound_to_the_bulk_form(
    shared: Harness, console: Console
) -> None:
    [intent_id] = _created(shared, "ada@acme.example", 1)
    console.login(tenant="t1")
    page = console.get("/console/approvals?proposed_by=ada%40acme.example").text
    assert f'name="selected" value="{intent_id}" form="bulk"' in page
    assert 'action="/console/approvals/decide"' in page
