"""Approval policies as pure rules (domain/policies.py): the model's checks, CEL expressions checked
at write time, the order of evaluation, SHADOW, and the fail-safe rule for expressions that fail."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fulfill.domain.models import ApprovalRule, ExpiryAction, PolicyDecision, PolicyMode
from fulfill.domain.policies import (
    Candidate,
    InvalidExpression,
    Match,
    Policy,
    PolicySpec,
    check_expression,
    decide,
    evaluate,
    evaluation_order,
    outcome,
    rule_of,
)

TENANT = "tenant-a"
STAMP = "2026-12-04T00:00:00.000Z"


def policy(
    policy_id: str,
    decision: str = "REQUIRE_APPROVAL",
    *,
    tenant_id: str | None = TENANT,
    priority: int = 100,
    mode: str = "ENFORCE",
    version: int = 1,
    **fields: Any,
) -> Policy:
    return Policy.model_validate(
        {
            "policy_id": policy_id,
            "version": version,
            "scope": "tenant" if tenant_id else "platform",
            "tenant_id": tenant_id,
            "name": f"policy {policy_id}",
            "decision": decision,
            "mode": mode,
            "priority": priority,
            "created_at": STAMP,
            "updated_at": STAMP,
            "created_by": "ada",
            "updated_by": "ada",
            **fields,
        }
    )


def candidate(**overrides: Any) -> Candidate:
    values: dict[str, Any] = {
        "account_id": "acc-1",
        "action_type": "CREATE_INTERNAL_TASK",
        "risk_class": "LOW",
        "proposed_by": "agent-7",
        "parameters": {"title": "Call back", "amount": 50},
    }
    values.update(overrides)
    return Candidate(**values)


# --- the model ------------------------------------------------------------------------------------


def test_a_minimal_spec_takes_the_defaults() -> None:
    spec = PolicySpec.model_validate({"name": "n", "decision": "DENY"})
    assert spec.scope == "tenant"
    assert spec.approvals_required == 1
    assert spec.approver_scopes == []
    assert spec.mode is PolicyMode.ENFORCE
    assert spec.priority == 100
    assert spec.on_expiry is ExpiryAction.EXPIRE
    assert spec.match.model_dump() == {
        "action_types": None,
        "risk_classes": None,
        "account_ids": None,
        "when": None,
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"decision": "AUTO_APPROVE", "approvals_required": 2}, "approvals_required above 1"),
        ({"decision": "DENY", "approver_scopes": ["approvers:crm"]}, "approver_scopes applies only"),
        ({"decision": "REQUIRE_APPROVAL", "on_expiry": "ESCALATE"}, "needs an escalation"),
        (
            {
                "decision": "REQUIRE_APPROVAL",
                "escalation": {"approver_scopes": ["managers"], "extend_seconds": 3600},
            },
            "only with on_expiry ESCALATE",
        ),
        (
            {
                "decision": "AUTO_APPROVE",
                "on_expiry": "ESCALATE",
                "escalation": {"approver_scopes": ["managers"], "extend_seconds": 3600},
            },
            "ESCALATE applies only",
        ),
        ({"decision": "DENY", "unknown": 1}, "Extra inputs"),
        ({"decision": "DENY", "match": {"action_types": []}}, "at least 1"),
        ({"decision": "DENY", "match": {"risk_classes": ["SEVERE"]}}, "risk_classes"),
        ({"decision": "DENY", "match": {"when": "x" * 2001}}, "2000"),
        ({"decision": "DENY", "priority": -1}, "priority"),
        ({"decision": "DENY", "priority": 1_000_001}, "priority"),
        ({"decision": "REQUIRE_APPROVAL", "approvals_required": 11}, "approvals_required"),
        ({"decision": "MAYBE"}, "decision"),
        ({"decision": "DENY", "name": ""}, "name"),
        ({"decision": "DENY", "name": "x" * 201}, "name"),
        (
            {
                "decision": "REQUIRE_APPROVAL",
                "on_expiry": "ESCALATE",
                "escalation": {"approver_scopes": ["managers"], "extend_seconds": 59},
            },
            "extend_seconds",
        ),
        (
            {
                "decision": "REQUIRE_APPROVAL",
                "on_expiry": "ESCALATE",
                "escalation": {"approver_scopes": [], "extend_seconds": 60},
            },
            "approver_scopes",
        ),
    ],
)
def test_inconsistent_or_malformed_specs_are_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PolicySpec.model_validate({"name": "n", **body})


def test_a_stored_policy_names_its_owner_consistently() -> None:
    with pytest.raises(ValidationError, match="platform policy has no tenant_id"):
        policy("pol_abcdefgh", tenant_id=None, scope="tenant")
    assert policy("pol_abcdefgh", tenant_id=None).scope == "platform"
    assert policy("pol_abcdefgh").spec == PolicySpec.model_validate(
        {"name": "policy pol_abcdefgh", "decision": "REQUIRE_APPROVAL"}
    )


# --- expressions checked at write time --------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "size(params.title) < 200",
        "params.amount > 1000",
        "account_id == 'acc-1' && action_type.startsWith('CREATE_')",
        "risk_class in ['MINIMAL', 'LOW']",
        "proposed_by != 'agent-7'",
        "has(params.amount) && params.amount > 10",
        "[1, 2].exists(x, x > 1)",
        "int(account_id) > 5",  # fails on the sample's account, may hold for real ones
        "type(params.amount) == int && params.amount > 5",
        "params.tags.map(t, t + '!').exists_one(u, u == 'a!')",
        "timestamp(params.due).getFullYear() > 2025",
        "duration(params.wait) > duration('1h')",
        "params.email.matches('^[a-z]+@example[.]com$')",
        "dyn(params.n) == 1",
    ],
)
def test_valid_expressions_pass(expression: str) -> None:
    check_expression(expression)


def test_a_syntax_error_is_refused_with_the_parsers_message() -> None:
    with pytest.raises(InvalidExpression, match="Syntax error") as caught:
        check_expression("params.amount >")
    assert "params.amount >" in str(caught.value)


@pytest.mark.parametrize(
    ("expression", "name"),
    [
        ("amount > 10", "amount"),
        ("nosuchfunction(params) == true", "nosuchfunction"),
        # Behind a parameter the sample lacks, or a short-circuit: found all the same.
        ("shout(params.title)", "shout"),
        ("params.amount > 1 && amount > 2", "amount"),
        ("true || nosuch", "nosuch"),
        ("params.title.lowerAscii() == 'a'", "lowerAscii"),
        ("params.tags.exists(t, t == other)", "other"),
    ],
)
def test_an_unknown_variable_or_function_is_refused(expression: str, name: str) -> None:
    with pytest.raises(InvalidExpression, match="Undefined variable or function") as caught:
        check_expression(expression)
    assert name in str(caught.value)
    assert "params, account_id, action_type, risk_class, proposed_by" in str(caught.value)


@pytest.mark.parametrize(("expression", "kind"), [("account_id", "str"), ("1 + 2", "int")])
def test_an_expression_that_is_not_a_bool_is_refused(expression: str, kind: str) -> None:
    with pytest.raises(InvalidExpression, match=f"must evaluate to a bool; it gives {kind}"):
        check_expression(expression)


@pytest.mark.parametrize("expression", ["", "   "])
def test_an_empty_expression_is_refused(expression: str) -> None:
    with pytest.raises(InvalidExpression, match="empty"):
        check_expression(expression)


def test_an_overlong_expression_is_refused() -> None:
    with pytest.raises(InvalidExpression, match="longer than 2000"):
        check_expression("true && " * 300 + "true")


# --- each match field ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "hit", "miss"),
    [
        ({"action_types": ["CREATE_INTERNAL_TASK"]}, {}, {"action_type": "CREATE_NOTE"}),
        ({"risk_classes": ["MINIMAL", "LOW"]}, {}, {"risk_class": "HIGH"}),
        ({"risk_classes": ["LOW"]}, {}, {"risk_class": None}),
        ({"account_ids": ["acc-1", "acc-2"]}, {}, {"account_id": "acc-3"}),
        ({"when": "params.amount < 100"}, {}, {"parameters": {"amount": 100}}),
        ({"when": "size(params.title) < 200"}, {}, {"parameters": {"title": "x" * 200}}),
        ({"when": "proposed_by == 'agent-7'"}, {}, {"proposed_by": "ada"}),
        ({"when": "proposed_by == ''"}, {"proposed_by": None}, {}),
        ({"when": "risk_class == 'LOW'"}, {}, {"risk_class": "MEDIUM"}),
        ({"when": "risk_class == ''"}, {"risk_class": None}, {}),
        ({"when": "account_id.startsWith('acc-')"}, {}, {"account_id": "other"}),
        ({"when": "action_type == 'CREATE_INTERNAL_TASK'"}, {}, {"action_type": "CREATE_NOTE"}),
    ],
)
def test_each_match_field_decides_whether_a_policy_matches(
    match: dict[str, Any], hit: dict[str, Any], miss: dict[str, Any]
) -> None:
    rule = policy("pol_abcdefgh", "DENY", match=match)
    assert evaluate(rule, candidate(**hit)).matched
    assert not evaluate(rule, candidate(**miss)).matched


def test_every_field_of_a_match_must_hold() -> None:
    rule = policy(
        "pol_abcdefgh",
        "AUTO_APPROVE",
        match={
            "action_types": ["CREATE_INTERNAL_TASK"],
            "risk_classes": ["LOW"],
            "account_ids": ["acc-1"],
            "when": "params.amount < 100",
        },
    )
    assert evaluate(rule, candidate()).matched
    assert not evaluate(rule, candidate(account_id="acc-2")).matched
    assert not evaluate(rule, candidate(parameters={"amount": 500})).matched


def test_an_empty_match_matches_everything() -> None:
    assert evaluate(policy("pol_abcdefgh", "DENY"), candidate()).matched


def test_nested_parameters_are_reachable() -> None:
    rule = policy("pol_abcdefgh", "DENY", match={"when": "params.contact.email.endsWith('@example.com')"})
    assert evaluate(rule, candidate(parameters={"contact": {"email": "a@example.com"}})).matched
    assert not evaluate(rule, candidate(parameters={"contact": {"email": "a@other.org"}})).matched


# --- order ------------------------------------------------------------------------------------------------


def test_the_first_matching_enforce_policy_by_priority_decides() -> None:
    deny = policy("pol_deny0001", "DENY", priority=50, match={"account_ids": ["acc-9"]})
    two = policy("pol_two00001", priority=60, approvals_required=2)
    auto = policy("pol_auto0001", "AUTO_APPROVE", priority=10, match={"risk_classes": ["HIGH"]})
    verdict = decide([two, deny, auto], candidate())
    assert verdict.deciding is not None
    assert verdict.deciding.policy.policy_id == "pol_two00001"
    assert verdict.rule.approvals_required == 2
    # A lower priority is evaluated first.
    verdict = decide([two, deny, auto], candidate(risk_class="HIGH"))
    assert verdict.deciding is not None
    assert verdict.deciding.policy.policy_id == "pol_auto0001"


def test_priority_ties_are_broken_by_policy_id() -> None:
    b = policy("pol_bbbbbbbb", "DENY")
    a = policy("pol_aaaaaaaa", "AUTO_APPROVE")
    verdict = decide([b, a], candidate())
    assert verdict.deciding is not None
    assert verdict.deciding.policy.policy_id == "pol_aaaaaaaa"


def test_the_tenants_policies_come_before_the_platforms_whatever_the_priority() -> None:
    platform = policy("pol_platform", "DENY", tenant_id=None, priority=0)
    tenant = policy("pol_tenant01", "AUTO_APPROVE", priority=1_000_000)
    assert [p.policy_id for p in evaluation_order([platform, tenant])] == ["pol_tenant01", "pol_platform"]
    verdict = decide([platform, tenant], candidate())
    assert verdict.deciding is not None
    assert verdict.deciding.policy.policy_id == "pol_tenant01"
    # When the tenant's policy does not match, the platform's decides.
    verdict = decide(
        [platform, policy("pol_tenant01", "AUTO_APPROVE", match={"account_ids": ["acc-2"]})], candidate()
    )
    assert verdict.deciding is not None
    assert verdict.deciding.policy.policy_id == "pol_platform"
    assert verdict.rule.decision is PolicyDecision.DENY


def test_no_match_leaves_the_default_rule() -> None:
    verdict = decide([policy("pol_abcdefgh", "DENY", match={"account_ids": ["acc-2"]})], candidate())
    assert verdict.deciding is None
    assert verdict.shadows == ()
    assert verdict.rule == ApprovalRule()
    assert verdict.rule.approvals_required == 1
    assert decide([], candidate()).rule == rule_of(None)


# --- SHADOW ---------------------------------------------------------------------------------------------


def test_shadow_policies_are_recorded_and_never_decide() -> None:
    shadow_auto = policy("pol_shadow01", "AUTO_APPROVE", mode="SHADOW", priority=1)
    shadow_deny = policy("pol_shadow02", "DENY", mode="SHADOW", priority=500)
    shadow_miss = policy("pol_shadow03", "DENY", mode="SHADOW", match={"account_ids": ["acc-2"]})
    enforce = policy("pol_enforce1", approvals_required=3, priority=100)
    platform_shadow = policy("pol_platshad", "DENY", mode="SHADOW", tenant_id=None)
    verdict = decide([shadow_deny, enforce, shadow_miss, shadow_auto, platform_shadow], candidate())
    assert verdict.deciding is not None
    assert verdict.deciding.policy.policy_id == "pol_enforce1"
    # Every matching SHADOW policy, those after the deciding one included, in evaluation order.
    assert [e.policy.policy_id for e in verdict.shadows] == ["pol_shadow01", "pol_shadow02", "pol_platshad"]
    assert verdict.rule.approvals_required == 3


def test_shadow_alone_leaves_the_default_rule() -> None:
    verdict = decide([policy("pol_shadow01", "DENY", mode="SHADOW")], candidate())
    assert verdict.deciding is None
    assert verdict.rule == ApprovalRule()
    assert [e.policy.policy_id for e in verdict.shadows] == ["pol_shadow01"]


# --- fail-safe --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "matches"),
    [("DENY", True), ("REQUIRE_APPROVAL", True), ("AUTO_APPROVE", False)],
)
@pytest.mark.parametrize(
    ("expression", "parameters", "error"),
    [
        ("params.amount > 10", {}, "no such key: 'amount'"),
        ("params.amount > 10", {"amount": "ten"}, "No such overload"),
        ("params.amount", {"amount": 5}, "not a bool"),
        ("params.n / params.d > 1", {"n": 1, "d": 0}, "division by zero"),
    ],
)
def test_an_expression_that_fails_is_fail_safe_by_decision(
    decision: str, matches: bool, expression: str, parameters: dict[str, Any], error: str
) -> None:
    rule = policy("pol_failsafe", decision, match={"when": expression})
    result = evaluate(rule, candidate(parameters=parameters))
    assert result.matched is matches
    assert result.error is not None
    assert error in result.error
    verdict = decide([rule], candidate(parameters=parameters))
    if matches:
        assert verdict.deciding is not None
        assert verdict.deciding.error is not None
        assert error in verdict.deciding.error
        assert verdict.rule.decision is PolicyDecision(decision)
        assert verdict.errors == ()
    else:
        assert verdict.deciding is None
        assert verdict.rule == ApprovalRule()
        assert [(e.policy.policy_id, error in (e.error or "")) for e in verdict.errors] == [
            ("pol_failsafe", True)
        ]


def test_a_failing_auto_approve_falls_through_to_the_next_policy() -> None:
    failing = policy("pol_failing1", "AUTO_APPROVE", priority=1, match={"when": "params.missing == 1"})
    fallback = policy("pol_fallback", approvals_required=2, priority=2)
    verdict = decide([fallback, failing], candidate())
    assert verdict.deciding is not None
    assert verdict.deciding.policy.policy_id == "pol_fallback"
    assert verdict.deciding.error is None
    assert [e.policy.policy_id for e in verdict.errors] == ["pol_failing1"]


def test_a_failing_shadow_deny_is_recorded_with_its_error() -> None:
    verdict = decide([policy("pol_shadow01", "DENY", mode="SHADOW", match={"when": "params.x"})], candidate())
    assert verdict.deciding is None
    assert len(verdict.shadows) == 1
    assert "no such key: 'x'" in (verdict.shadows[0].error or "")


# --- the rule an intent carries ---------------------------------------------------------------------------


def test_rule_of_names_the_policy_and_carries_its_requirements() -> None:
    rule = rule_of(
        policy(
            "pol_abcdefgh",
            version=4,
            approvals_required=2,
            approver_scopes=["approvers:crm"],
            on_expiry="ESCALATE",
            escalation={"approver_scopes": ["managers"], "extend_seconds": 3600},
        )
    )
    assert rule == ApprovalRule(
        policy_id="pol_abcdefgh",
        policy_version=4,
        policy_name="policy pol_abcdefgh",
        decision=PolicyDecision.REQUIRE_APPROVAL,
        approvals_required=2,
        approver_scopes=["approvers:crm"],
        on_expiry=ExpiryAction.ESCALATE,
        escalate_to_scopes=["managers"],
        escalation_extend_seconds=3600,
    )
    assert rule_of(None) == ApprovalRule()


@pytest.mark.parametrize(
    ("decision", "required", "applied", "said"),
    [
        (PolicyDecision.AUTO_APPROVE, 1, True, "auto-approved"),
        (PolicyDecision.AUTO_APPROVE, 1, False, "would have auto-approved"),
        (PolicyDecision.DENY, 1, True, "denied"),
        (PolicyDecision.DENY, 1, False, "would have denied"),
        (PolicyDecision.REQUIRE_APPROVAL, 1, True, "requires 1 approval"),
        (PolicyDecision.REQUIRE_APPROVAL, 2, True, "requires 2 approvals"),
        (PolicyDecision.REQUIRE_APPROVAL, 3, False, "would have required 3 approvals"),
    ],
)
def test_outcomes_as_the_ledger_says_them(
    decision: PolicyDecision, required: int, applied: bool, said: str
) -> None:
    assert outcome(decision, required, applied=applied) == said


# --- bounded cost ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "params.a.all(x, params.b.exists(y, y == x))",
        "[[1]].all(x, x.exists(y, y > 0))",
        "params.a.map(x, params.b.filter(y, y > x).size()).size() > 0",
    ],
)
def test_a_comprehension_inside_another_is_refused(expression: str) -> None:
    with pytest.raises(InvalidExpression, match="may not contain another"):
        check_expression(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "params.a.all(x, x > 1) && params.b.exists(y, y == ')')",
        "params.a.map(x, x * 2).filter(y, y > 2).size() > 0",
        "params.s == '.all(x, .exists(' && [1].all(x, x > 0)",
    ],
)
def test_comprehensions_one_after_another_pass(expression: str) -> None:
    check_expression(expression)


@pytest.mark.parametrize(("decision", "matches"), [("DENY", True), ("AUTO_APPROVE", False)])
def test_parameters_too_large_to_evaluate_get_the_fail_safe_outcome(decision: str, matches: bool) -> None:
    rule = policy("pol_largeone", decision, match={"when": "params.a.all(x, x in params.b)"})
    small = candidate(parameters={"a": list(range(900)), "b": list(range(900))})
    assert evaluate(rule, small) == Match(True)
    large = candidate(parameters={"a": list(range(1500)), "b": list(range(1500))})
    result = evaluate(rule, large)
    assert result.matched is matches
    assert result.error is not None
    assert "more than 2000 values" in result.error
