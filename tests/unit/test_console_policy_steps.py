"""The timeline's words for the ledger entries of approval policies: a policy's decision (or the
default rule's), each approval of an intent that needs several, an edit before approval, an
escalation, and an approval a policy gave."""

from __future__ import annotations

from fulfill.console.present import timeline_steps

HASH = "v1:" + "ab" * 32
EDITED = "v1:" + "cd" * 32


def _entry(event_type: str, **data: object) -> dict[str, object]:
    return {"event_type": event_type, "timestamp": "2026-01-01T00:00:00.000Z", "attempt": 0, "data": data}


def test_the_deciding_policy_names_itself_its_version_and_outcome() -> None:
    (step,) = timeline_steps(
        [
            _entry(
                "POLICY_EVALUATED",
                policy_id="pol_abc",
                policy_version=3,
                policy_name="two above 10k",
                decision="REQUIRE_APPROVAL",
                mode="ENFORCE",
                applied=True,
                outcome="requires 2 approvals",
            )
        ]
    )
    assert step.kind == "decision"
    assert step.title == "Policy two above 10k: requires 2 approvals"
    assert step.details == ["pol_abc, version 3, ENFORCE"]


def test_a_shadow_policy_is_recorded_not_acted_on_and_a_failed_expression_is_said() -> None:
    (step,) = timeline_steps(
        [
            _entry(
                "POLICY_EVALUATED",
                policy_id="pol_s",
                policy_version=1,
                policy_name=None,
                decision="AUTO_APPROVE",
                mode="SHADOW",
                applied=False,
                outcome="would have auto-approved",
                error="no such key: amount",
            )
        ]
    )
    assert step.title == "Policy pol_s: would have auto-approved"
    assert "shadow mode: recorded, not acted on" in step.details
    assert any("no such key: amount" in detail and "fail-safe" in detail for detail in step.details)


def test_no_matching_policy_is_the_default_rule() -> None:
    (step,) = timeline_steps(
        [
            _entry(
                "POLICY_EVALUATED",
                policy_id=None,
                policy_version=None,
                policy_name=None,
                decision="REQUIRE_APPROVAL",
                mode="ENFORCE",
                applied=True,
                outcome="requires 1 approval",
            )
        ]
    )
    assert step.title == "No policy matched, the default rule: requires 1 approval"
    assert step.details == []


def test_each_counted_approval_says_how_far_it_is_and_what_it_is_bound_to() -> None:
    (step,) = timeline_steps(
        [
            _entry(
                "APPROVAL_RECORDED",
                approved_by="alice",
                action_hash=HASH,
                approvals=1,
                approvals_required=2,
                comment="ok",
            )
        ]
    )
    assert step.kind == "approval"
    assert step.title == "Approval 1 of 2"
    assert step.details == ["by alice", "comment: ok", f"bound to the action v1:{'ab' * 6}…"]


def test_the_last_approval_names_every_approver_and_a_policys_approval_says_so() -> None:
    people, policy = timeline_steps(
        [
            _entry(
                "ACTION_APPROVED",
                approved_by="bob",
                approval_source="HUMAN",
                approvers=["alice", "bob"],
                action_hash=HASH,
            ),
            _entry(
                "ACTION_APPROVED",
                approved_by="policy:pol_auto",
                approval_source="POLICY",
                policy_id="pol_auto",
                policy_version=2,
                action_hash=HASH,
            ),
        ]
    )
    assert "approvers: alice, bob" in people.details
    assert f"bound to the action v1:{'ab' * 6}…" in people.details
    assert "by policy pol_auto (version 2): no person needed" in policy.details


def test_an_edit_shows_before_after_and_both_hashes() -> None:
    (step,) = timeline_steps(
        [
            _entry(
                "INTENT_EDITED",
                edited_by="carol",
                before={"amount": 10},
                after={"amount": 12},
                edited_fields=["amount"],
                action_hash_before=HASH,
                action_hash_after=EDITED,
            )
        ]
    )
    assert step.title == "Parameters edited before approval"
    assert step.details[:4] == [
        "by carol",
        "changed: amount",
        'before: {"amount": 10}',
        'after: {"amount": 12}',
    ]
    assert f"v1:{'ab' * 6}… → v1:{'cd' * 6}…" in step.details[4]


def test_an_escalation_names_who_may_approve_now_and_until_when() -> None:
    (step,) = timeline_steps(
        [
            _entry(
                "APPROVAL_ESCALATED",
                policy_id="pol_e",
                policy_version=1,
                escalate_to_scopes=["approvers:oncall"],
                expires_at="2026-01-02T00:00:00.000Z",
            )
        ]
    )
    assert step.title == "Approval escalated"
    assert step.details == [
        "now also approvable with approvers:oncall",
        "until 2026-01-02T00:00:00.000Z",
        "policy pol_e, version 1",
    ]
