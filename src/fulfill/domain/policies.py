"""Approval policies: which intents approve themselves, which need whom, which are refused. Pure rules.

A policy is data kept per tenant (or by the platform, for every tenant) and versioned: every change
is a new version, and an intent names the version that decided it. A policy *matches* an intent when
every one of its ``match`` fields holds (a missing field matches anything):

* ``action_types``, ``risk_classes``, ``account_ids``: the intent's value is in the list;
* ``when``: a CEL expression (https://cel.dev) over ``params`` (the intent's parameters),
  ``account_id``, ``action_type``, ``risk_class`` and ``proposed_by`` (both ``""`` when unknown)
  that evaluates to ``true``. CEL is not Python: it has no side effects, no loops without bounds and
  no access to anything but those variables, so an expression written by a tenant's admin runs in
  the service safely. It is checked when the policy is written (:func:`check_expression`).

:func:`decide` evaluates the policies that apply to a tenant in order: the tenant's own first, by
``(priority, policy_id)`` (a LOWER priority first), then the platform's, in the same order. The first
matching ENFORCE policy decides; every matching SHADOW policy is recorded and never acted on; with no
match, the default rule stands (one person's approval, :func:`rule_of` of ``None``).

An expression that fails when evaluated (a missing key, a type that does not fit, a result that is
not a bool) is fail-safe: it counts as a match for DENY and REQUIRE_APPROVAL (the stricter outcome
applies) and as no match for AUTO_APPROVE (nothing approves itself by mistake). Its error is kept
(:attr:`Evaluated.error`) so the ledger can say why.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from fulfill.domain.models import (
    ActionType,
    ApprovalRule,
    ExpiryAction,
    Identifier,
    PolicyDecision,
    PolicyMode,
    RiskClass,
)

if TYPE_CHECKING:
    import cel

MAX_EXPRESSION_LENGTH = 2000
MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 2000
MAX_PRIORITY = 1_000_000
DEFAULT_PRIORITY = 100
MAX_APPROVALS_REQUIRED = 10
MIN_EXTEND_SECONDS = 60
MAX_EXTEND_SECONDS = 30 * 86_400
MAX_LIST_ITEMS = 100
MAX_ERROR_LENGTH = 500
# An intent whose parameters hold more values than this (every list item, object member and scalar
# counted) is not given to a ``when`` expression: evaluation time grows with the parameters (an
# ``in`` inside a comprehension, with their product), and the proposer chooses them. Such an intent
# gets the fail-safe outcome instead (see the module's docstring).
MAX_EVALUATED_VALUES = 2000
# What a policy id looks like: "pol_" and a random part the service gives.
POLICY_ID_PATTERN = r"^pol_[A-Za-z0-9]{8,64}$"
# The variables an expression may use.
EXPRESSION_VARIABLES = ("params", "account_id", "action_type", "risk_class", "proposed_by")
# What the CEL runtime says about a name it does not know (a variable or a function).
_UNDEFINED_NAME = "Undefined variable or function"

PolicyScope = Literal["tenant", "platform"]
Scope = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@/-]+$")]
Expression = Annotated[str, StringConstraints(min_length=1, max_length=MAX_EXPRESSION_LENGTH)]


class InvalidExpression(ValueError):
    """A ``when`` expression that cannot be used: the message says why (the parser's own words for
    a syntax error)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyMatch(_Model):
    """Which intents a policy applies to; a missing field matches anything."""

    action_types: list[ActionType] | None = Field(default=None, min_length=1, max_length=MAX_LIST_ITEMS)
    risk_classes: list[RiskClass] | None = Field(default=None, min_length=1, max_length=MAX_LIST_ITEMS)
    account_ids: list[Identifier] | None = Field(default=None, min_length=1, max_length=MAX_LIST_ITEMS)
    when: Expression | None = None


class Escalation(_Model):
    """ESCALATE: who is asked next (the scopes of the second approver group), and how much longer
    the approval window stays open."""

    approver_scopes: list[Scope] = Field(min_length=1, max_length=MAX_LIST_ITEMS)
    extend_seconds: int = Field(ge=MIN_EXTEND_SECONDS, le=MAX_EXTEND_SECONDS)


class PolicySpec(_Model):
    """What a policy's author writes (the body of POST and PUT /admin/policies)."""

    scope: PolicyScope = "tenant"
    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH)]
    description: Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION_LENGTH)] | None = None
    match: PolicyMatch = Field(default_factory=PolicyMatch)
    decision: PolicyDecision
    approvals_required: int = Field(default=1, ge=1, le=MAX_APPROVALS_REQUIRED)
    approver_scopes: list[Scope] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    mode: PolicyMode = PolicyMode.ENFORCE
    priority: int = Field(default=DEFAULT_PRIORITY, ge=0, le=MAX_PRIORITY)
    on_expiry: ExpiryAction = ExpiryAction.EXPIRE
    escalation: Escalation | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PolicySpec:
        waits = self.decision is PolicyDecision.REQUIRE_APPROVAL
        if self.approvals_required > 1 and not waits:
            raise ValueError("approvals_required above 1 applies only to decision REQUIRE_APPROVAL")
        if self.approver_scopes and not waits:
            raise ValueError("approver_scopes applies only to decision REQUIRE_APPROVAL")
        if self.on_expiry is ExpiryAction.ESCALATE:
            if not waits:
                raise ValueError("on_expiry ESCALATE applies only to decision REQUIRE_APPROVAL")
            if self.escalation is None:
                raise ValueError("on_expiry ESCALATE needs an escalation {approver_scopes, extend_seconds}")
        elif self.escalation is not None:
            raise ValueError("escalation is given only with on_expiry ESCALATE")
        return self


class Policy(PolicySpec):
    """A stored policy: its author's spec, and what the service keeps with it."""

    policy_id: Annotated[str, StringConstraints(pattern=POLICY_ID_PATTERN)]
    version: int = Field(ge=1)
    tenant_id: Identifier | None  # None for a platform policy
    created_at: str
    updated_at: str
    created_by: str
    updated_by: str

    @model_validator(mode="after")
    def _owner(self) -> Policy:
        if (self.scope == "platform") != (self.tenant_id is None):
            raise ValueError("a platform policy has no tenant_id; a tenant policy has one")
        return self

    @property
    def spec(self) -> PolicySpec:
        return PolicySpec.model_validate(self.model_dump(include=set(PolicySpec.model_fields)))


@dataclass(frozen=True)
class PolicyVersion:
    """One stored version of a policy; ``deleted_at`` is set on the version that deleted it."""

    policy: Policy
    deleted_at: str | None = None


# --- expressions --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _compiled(expression: str) -> cel.Program:
    # The CEL runtime is imported when the first expression is compiled: its package also brings
    # an interactive shell's libraries, which a service whose tenants have no policy never needs.
    import cel

    return cel.compile(expression)


def _sample_context() -> dict[str, Any]:
    return {
        "params": {},
        "account_id": "account",
        "action_type": "ACTION",
        "risk_class": "",
        "proposed_by": "",
    }


# The macros that bind a name of their own: ``list.exists(x, x > 1)``.
_BOUND_NAME = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Calls that reach a function of that name whatever its arity or receiver, to tell a function the
# runtime has (any error but "undefined") from one it does not.
_PROBES = (
    "{f}()",
    "{f}(1)",
    "{f}('a')",
    "{f}(1, 1)",
    "{f}('a', 'a')",
    "{f}(1, 1, 1)",
    "'a'.{f}()",
    "'a'.{f}('a')",
    "'a'.{f}(1)",
    "'a'.{f}('a', 1)",
    "'a'.{f}(1, 1)",
    "[1].{f}()",
    "[1].{f}(1)",
    "{{'a': 1}}.{f}()",
    "1.{f}()",
    "1.5.{f}()",
    "true.{f}()",
    "b'a'.{f}()",
    "timestamp('2026-01-01T00:00:00Z').{f}()",
    "timestamp('2026-01-01T00:00:00Z').{f}('UTC')",
    "duration('1s').{f}()",
)


_MACRO_CALL = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(")


def _nested_comprehension(source: str) -> bool:
    """Whether a comprehension (``all``, ``exists``, ``exists_one``, ``map``, ``filter``) is
    inside another's parentheses. Nested, their cost is the product of the lists' sizes: a few
    hundred items each would hold the creating transaction for seconds, and the proposer chooses
    the parameters' lists. String literals are skipped."""
    code = re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", lambda m: " " * len(m.group()), source)
    open_until: list[int] = []  # the depth at which each enclosing comprehension's call ends
    depth = 0
    macro_starts = {m.end() - 1 for m in _MACRO_CALL.finditer(code)}
    for index, char in enumerate(code):
        if char == "(":
            if index in macro_starts:
                if open_until:
                    return True
                open_until.append(depth)
            depth += 1
        elif char == ")":
            depth -= 1
            if open_until and depth == open_until[-1]:
                open_until.pop()
    return False


@functools.lru_cache(maxsize=256)
def _variable_exists(name: str) -> bool:
    """A name the runtime itself gives a value (the type names: ``int``, ``string``, …)."""
    return _function_exists(name, probes=("{f}",))


@functools.lru_cache(maxsize=256)
def _function_exists(name: str, probes: tuple[str, ...] = _PROBES) -> bool:
    import cel

    for probe in probes:
        try:
            cel.compile(probe.format(f=name)).execute({})
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # the runtime's errors, a panic of the native code included
            if not str(exc).startswith(_UNDEFINED_NAME):
                return True
        else:
            return True
    return False


def _unknown_names(program: cel.Program, source: str) -> list[str]:
    """The variables and functions ``program`` uses that do not exist (found without running it,
    so a name behind a failing parameter or a short-circuit is found too)."""
    bound = set(_BOUND_NAME.findall(source))
    unknown = [
        name
        for name in program.variables()
        if name not in EXPRESSION_VARIABLES and name not in bound and not _variable_exists(name)
    ]
    unknown += [
        name
        for name in program.functions()
        if _FUNCTION_NAME.fullmatch(name) and name not in bound and not _function_exists(name)
    ]
    return unknown


def check_expression(when: str) -> None:
    """Refuse (:class:`InvalidExpression`) an expression that cannot be a policy's ``when``: one the
    parser refuses (with the parser's message), one that names a variable or function that does not
    exist, or one whose result is not a bool. It is then tried once against a sample intent with
    empty parameters: an error about a missing parameter is fine (real intents carry parameters),
    one about an unknown name is not, and neither is a result that is not a bool."""
    if len(when) > MAX_EXPRESSION_LENGTH:
        raise InvalidExpression(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    if not when.strip():
        raise InvalidExpression("the expression is empty")
    try:
        program = _compiled(when)
    except ValueError as exc:
        raise InvalidExpression(_shorten(str(exc))) from None
    if _nested_comprehension(when):
        raise InvalidExpression(
            "a comprehension (all, exists, exists_one, map, filter) may not contain another: "
            "its cost would grow with the product of the lists' sizes"
        )
    unknown = _unknown_names(program, when)
    if unknown:
        known = ", ".join(EXPRESSION_VARIABLES)
        raise InvalidExpression(
            f"{_UNDEFINED_NAME}: {_shorten(repr(unknown[0]), 130)} (the variables are {known})"
        )
    try:
        result = program.execute(_sample_context())
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the runtime's errors, a panic of the native code included
        message = str(exc)
        if message.startswith(_UNDEFINED_NAME):
            known = ", ".join(EXPRESSION_VARIABLES)
            raise InvalidExpression(f"{_shorten(message)} (the variables are {known})") from None
        return  # an error that depends on the parameters: fail-safe when evaluated
    if not isinstance(result, bool):
        raise InvalidExpression(
            f"the expression must evaluate to a bool; it gives {type(result).__name__} ({_shorten(repr(result), 80)})"
        )


def _shorten(text: str, limit: int = MAX_ERROR_LENGTH) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"no such key: {exc.args[0]!r}" if exc.args else "no such key"
    return _shorten(f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc))


# --- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """What a policy is evaluated against: an intent being created."""

    account_id: str
    action_type: str
    risk_class: str | None
    proposed_by: str | None
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        return {
            "params": dict(self.parameters),
            "account_id": self.account_id,
            "action_type": self.action_type,
            "risk_class": self.risk_class or "",
            "proposed_by": self.proposed_by or "",
        }


@dataclass(frozen=True)
class Evaluated:
    """A policy that matched (or that counts as matching, fail-safe), and the error of its
    expression when evaluating it failed."""

    policy: Policy
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What the policies decide for one intent.

    ``deciding``: the ENFORCE policy whose rule applies (None: the default rule).
    ``shadows``: every matching SHADOW policy, in evaluation order (recorded, never acted on).
    ``errors``: the policies whose expression failed and which, being AUTO_APPROVE, therefore did
    not match (recorded so the ledger can say why they did not apply).
    ``rule``: what approving the intent takes (:func:`rule_of` of the deciding policy).
    """

    deciding: Evaluated | None
    shadows: tuple[Evaluated, ...]
    rule: ApprovalRule
    errors: tuple[Evaluated, ...] = ()


@dataclass(frozen=True)
class Match:
    """One policy against one candidate: whether it matches (after the fail-safe rule), and the
    error of its expression, if any."""

    matched: bool
    error: str | None = None


def _too_many_values(value: Any, budget: int) -> int:
    """What remains of ``budget`` after counting ``value``'s values (negative: over budget)."""
    budget -= 1
    if isinstance(value, Mapping):
        for item in value.values():
            if budget < 0:
                break
            budget = _too_many_values(item, budget)
    elif isinstance(value, list | tuple):
        for item in value:
            if budget < 0:
                break
            budget = _too_many_values(item, budget)
    return budget


def expression_holds(when: str, candidate: Candidate) -> bool:
    """Evaluate ``when`` for ``candidate``; raises :class:`InvalidExpression` with the reason when it
    cannot be evaluated or does not give a bool."""
    if _too_many_values(candidate.parameters, MAX_EVALUATED_VALUES + 1) < 0:
        raise InvalidExpression(
            f"the parameters hold more than {MAX_EVALUATED_VALUES} values: the expression is not evaluated"
        )
    try:
        result = _compiled(when).execute(candidate.context())
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the runtime's errors, a panic of the native code included
        raise InvalidExpression(_describe_error(exc)) from None
    if not isinstance(result, bool):
        raise InvalidExpression(f"the expression gave {type(result).__name__}, not a bool")
    return result


def evaluate(policy: PolicySpec, candidate: Candidate) -> Match:
    """Does ``policy`` match ``candidate``? Mode is not considered here (see :func:`decide`)."""
    match = policy.match
    if match.action_types is not None and candidate.action_type not in match.action_types:
        return Match(False)
    if match.risk_classes is not None and candidate.risk_class not in match.risk_classes:
        return Match(False)
    if match.account_ids is not None and candidate.account_id not in match.account_ids:
        return Match(False)
    if match.when is None:
        return Match(True)
    try:
        return Match(expression_holds(match.when, candidate))
    except InvalidExpression as exc:
        # Fail-safe: the stricter outcome applies, and nothing approves itself by mistake.
        return Match(policy.decision is not PolicyDecision.AUTO_APPROVE, str(exc))


def evaluation_order(policies: Iterable[Policy]) -> list[Policy]:
    """The tenant's own policies first, by (priority, policy_id), then the platform's."""
    return sorted(policies, key=lambda p: (p.tenant_id is None, p.priority, p.policy_id))


def decide(policies: Iterable[Policy], candidate: Candidate) -> Verdict:
    """Which rule applies to ``candidate`` under ``policies`` (the tenant's and the platform's)."""
    deciding: Evaluated | None = None
    shadows: list[Evaluated] = []
    errors: list[Evaluated] = []
    for policy in evaluation_order(policies):
        if deciding is not None and policy.mode is PolicyMode.ENFORCE:
            continue  # decided already; only SHADOW policies are still recorded
        result = evaluate(policy, candidate)
        if not result.matched:
            if result.error is not None:
                errors.append(Evaluated(policy, result.error))
            continue
        if policy.mode is PolicyMode.SHADOW:
            shadows.append(Evaluated(policy, result.error))
        else:
            deciding = Evaluated(policy, result.error)
    return Verdict(
        deciding=deciding,
        shadows=tuple(shadows),
        rule=rule_of(deciding.policy if deciding else None),
        errors=tuple(errors),
    )


def rule_of(policy: Policy | None) -> ApprovalRule:
    """What approving an intent takes under ``policy``; ``None``: the default (one person)."""
    if policy is None:
        return ApprovalRule()
    escalation = policy.escalation
    return ApprovalRule(
        policy_id=policy.policy_id,
        policy_version=policy.version,
        policy_name=policy.name,
        decision=policy.decision,
        approvals_required=policy.approvals_required,
        approver_scopes=list(policy.approver_scopes),
        on_expiry=policy.on_expiry,
        escalate_to_scopes=list(escalation.approver_scopes) if escalation else [],
        escalation_extend_seconds=escalation.extend_seconds if escalation else None,
    )


def outcome(decision: PolicyDecision, approvals_required: int, *, applied: bool) -> str:
    """How the ledger says what a policy did (``applied``) or would have done (SHADOW):
    "auto-approved", "would have denied", "requires 2 approvals", …"""
    if decision is PolicyDecision.AUTO_APPROVE:
        return "auto-approved" if applied else "would have auto-approved"
    if decision is PolicyDecision.DENY:
        return "denied" if applied else "would have denied"
    noun = "approval" if approvals_required == 1 else "approvals"
    return (
        f"requires {approvals_required} {noun}"
        if applied
        else f"would have required {approvals_required} {noun}"
    )
