"""The approvals queue's use cases against the in-memory store: the proposer and policy filters
with paging, and a decision on several intents checked before any is decided."""

from __future__ import annotations

import pytest

from fulfill.domain.models import ApprovalRule, ApprovalStatus
from fulfill.domain.time import iso_from_epoch
from fulfill.tokens import Principal
from fulfill.usecases import approvals
from fulfill.usecases.errors import Invalid
from tests.support.memory_steps import START
from tests.unit.factories import make_intent
from tests.unit.usecases.test_use_cases_in_memory import Context


def _reader(tenant_id: str = "t1") -> Principal:
    return Principal(subject="reader", tenant_id=tenant_id, scopes=frozenset({"intents:read"}), claims={})


def _seed(ctx: Context) -> None:
    with ctx.store.write() as uow:
        for index in range(7):
            uow.intents.insert_intent(
                make_intent(
                    action_intent_id=f"ai_{index}",
                    approval_status=ApprovalStatus.PENDING_APPROVAL,
                    proposed_by="ada" if index % 2 else "bob",
                    approval_rule=ApprovalRule(policy_id="pol_routine01") if index < 4 else None,
                    created_at=iso_from_epoch(START - 100 * (7 - index)),
                ),
                "hash",
            )
        uow.intents.insert_intent(  # another tenant's, matching every filter
            make_intent(
                action_intent_id="ai_other",
                tenant_id="t2",
                approval_status=ApprovalStatus.PENDING_APPROVAL,
                proposed_by="ada",
                approval_rule=ApprovalRule(policy_id="pol_routine01"),
            ),
            "hash",
        )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (approvals.PendingQuery(proposed_by="ada"), ["ai_5", "ai_3", "ai_1"]),
        (approvals.PendingQuery(policy_id="pol_routine01"), ["ai_3", "ai_2", "ai_1", "ai_0"]),
        (approvals.PendingQuery(policy_id="pol_routine01", proposed_by="bob"), ["ai_2", "ai_0"]),
        (approvals.PendingQuery(proposed_by="bob", min_age_seconds=450), ["ai_2", "ai_0"]),
        (approvals.PendingQuery(proposed_by="carol"), []),
    ],
)
def test_the_proposer_and_policy_filters(query: approvals.PendingQuery, expected: list[str]) -> None:
    ctx = Context()
    _seed(ctx)
    page = approvals.page_pending(ctx, _reader(), query)
    assert [intent.action_intent_id for intent in page.intents] == expected
    assert page.total == len(expected)


def test_pages_with_a_filter_oldest_first() -> None:
    ctx = Context()
    _seed(ctx)
    query = approvals.PendingQuery(policy_id="pol_routine01", oldest_first=True, limit=3)
    first = approvals.page_pending(ctx, _reader(), query)
    assert [i.action_intent_id for i in first.intents] == ["ai_0", "ai_1", "ai_2"]
    assert first.next_cursor is not None
    second = approvals.page_pending(
        ctx,
        _reader(),
        approvals.PendingQuery(
            policy_id="pol_routine01", oldest_first=True, limit=3, cursor=first.next_cursor
        ),
    )
    assert [i.action_intent_id for i in second.intents] == ["ai_3"]
    assert second.next_cursor is None
    assert (first.total, second.total) == (4, 4)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (approvals.PendingQuery(policy_id="routine"), "INVALID_POLICY_ID"),
        (approvals.PendingQuery(policy_id="pol_x"), "INVALID_POLICY_ID"),
        (approvals.PendingQuery(proposed_by=""), "INVALID_PROPOSER"),
        (approvals.PendingQuery(proposed_by="a\tb"), "INVALID_PROPOSER"),
        (approvals.PendingQuery(proposed_by="x" * 256), "INVALID_PROPOSER"),
    ],
)
def test_bad_filters_are_refused(query: approvals.PendingQuery, code: str) -> None:
    with pytest.raises(Invalid) as refused:
        approvals.page_pending(Context(), _reader(), query)
    assert refused.value.code == code


@pytest.mark.parametrize(
    ("ids", "code"),
    [([], "NOTHING_SELECTED"), ([f"ai_{index}" for index in range(101)], "TOO_MANY_SELECTED")],
)
def test_a_decision_on_nothing_or_too_many_decides_none(ids: list[str], code: str) -> None:
    ctx = Context()
    _seed(ctx)
    approver = Principal(
        subject="carol", tenant_id="t1", scopes=frozenset({"intents:read", "intents:approve"}), claims={}
    )
    with pytest.raises(Invalid) as refused:
        approvals.decide_many(ctx, approver, ids, approvals.BulkDecision.REJECT)
    assert refused.value.code == code
    page = approvals.page_pending(ctx, _reader(), approvals.PendingQuery())
    assert page.total == 7  # nothing was decided


def test_a_repeated_id_is_decided_once_and_another_tenants_is_not_found() -> None:
    ctx = Context()
    _seed(ctx)
    approver = Principal(
        subject="carol", tenant_id="t1", scopes=frozenset({"intents:read", "intents:approve"}), claims={}
    )
    results = approvals.decide_many(
        ctx, approver, ["ai_6", "ai_other", "ai_6", "bad id"], approvals.BulkDecision.REJECT
    )
    assert [(r.action_intent_id, r.approval_status, r.code) for r in results] == [
        ("ai_6", ApprovalStatus.REJECTED, None),
        ("ai_other", None, "NOT_FOUND"),
        ("bad id", None, "NOT_FOUND"),
    ]
    with ctx.store.read() as uow:
        other = uow.intents.get_intent("t2", "ai_other")
    assert other is not None
    assert other.approval_status is ApprovalStatus.PENDING_APPROVAL
