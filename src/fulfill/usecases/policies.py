"""Approval policies as data: create, list, read, replace, delete and simulate (``/admin/policies``).

Who may do what:

* a tenant's policies are managed with ``admin``, and only ever the token's own tenant's (another
  tenant's policy is not found: 404);
* the platform's policies (``"scope": "platform"``, applying to every tenant) are written with
  ``platform:admin``; a tenant's admin may read them (they apply to its intents) and gets 403
  writing one;
* an agent's token manages no policy, whatever its scopes: an agent must not be able to make its
  own proposals approve themselves;
* a token limited to some accounts (``account_ids``) writes, replaces and deletes only policies
  whose ``match.account_ids`` lists some of those accounts and no other (403
  ``POLICY_OUTSIDE_ACCOUNTS``): a tenant's policy applies to every account it matches, and such a
  token must not decide what the tenant's other accounts need. It reads every policy that applies
  to the tenant (they are the tenant's rules, not its accounts' data).

Every write (create, replace, delete) stores a new version, kept for good; an intent names the
version that decided it (its ledger entries do), which is how a change of policy is audited. A
deleted policy stops applying; its versions stay. Two writers replacing the same version race for
the next one: the second gets 409 and reads again.

A ``when`` expression is checked at write time (domain/policies.py ``check_expression``): a
syntax error, an unknown name or a result that is not a bool is refused (422
``INVALID_POLICY_EXPRESSION``, with the parser's message).

A simulation evaluates a candidate policy, alone and as if it were enforced, against the tenant's
most recent intents, and counts what it would have decided; nothing is stored. It reads the
tenant's intents, so it needs ``admin`` (with ``platform:admin`` too, or not, for a platform
candidate: nothing is written).
"""

from __future__ import annotations

import re
import secrets
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from fulfill.domain.models import ActionIntentV1, PolicyDecision
from fulfill.domain.policies import (
    POLICY_ID_PATTERN,
    Candidate,
    InvalidExpression,
    Policy,
    PolicySpec,
    check_expression,
    evaluate,
)
from fulfill.domain.scopes import Scope
from fulfill.tokens import Principal
from fulfill.usecases.context import UseCaseContext
from fulfill.usecases.errors import Conflict, Forbidden, Invalid, NotFound

INVALID_POLICY_EXPRESSION = "INVALID_POLICY_EXPRESSION"
AGENT_CANNOT_MANAGE_POLICIES = "AGENT_CANNOT_MANAGE_POLICIES"
MISSING_SCOPE = "MISSING_SCOPE"
POLICY_CHANGED = "POLICY_CHANGED"
POLICY_SCOPE_FIXED = "POLICY_SCOPE_FIXED"
POLICY_OUTSIDE_ACCOUNTS = "POLICY_OUTSIDE_ACCOUNTS"
DEFAULT_SIMULATION_LIMIT = 100
MAX_SIMULATION_LIMIT = 1000
EXAMPLES_PER_DECISION = 5
NO_MATCH: Final = "NO_MATCH"
# The id a simulated candidate carries (it is never stored).
CANDIDATE_ID = "pol_candidate"

_POLICY_ID = re.compile(POLICY_ID_PATTERN)


class PolicyListing(BaseModel):
    """``GET /admin/policies``: the tenant's policies, then the platform's, in evaluation order."""

    policies: list[Policy]


class PolicyVersionView(Policy):
    """One stored version; ``deleted_at`` is set on the version that deleted the policy."""

    deleted_at: str | None = None


class PolicyVersions(BaseModel):
    """``GET /admin/policies/{policy_id}/versions``: every version, oldest first."""

    versions: list[PolicyVersionView]


class SimulationRequest(BaseModel):
    """``POST /admin/policies/simulate``."""

    model_config = ConfigDict(extra="forbid")

    policy: PolicySpec
    limit: int = Field(default=DEFAULT_SIMULATION_LIMIT, ge=1, le=MAX_SIMULATION_LIMIT)


class SimulatedIntent(BaseModel):
    """One intent of a simulation's examples."""

    action_intent_id: str
    action_type: str
    account_id: str
    risk_class: str | None
    proposed_by: str | None
    created_at: str
    # Why the candidate's expression could not be evaluated for this intent (fail-safe applied).
    error: str | None = None


Outcome = Literal["AUTO_APPROVE", "REQUIRE_APPROVAL", "DENY", "NO_MATCH"]
OUTCOMES: tuple[Outcome, ...] = ("AUTO_APPROVE", "REQUIRE_APPROVAL", "DENY", "NO_MATCH")


class SimulationResult(BaseModel):
    """What the candidate would have decided for each of the tenant's last ``evaluated`` intents:
    counts per decision (``NO_MATCH``: the default rule would have stood), how many evaluations of
    its expression failed (and were counted fail-safe), and up to five examples per decision."""

    evaluated: int
    counts: dict[Outcome, int]
    errors: int
    examples: dict[Outcome, list[SimulatedIntent]]


# --- who may ------------------------------------------------------------------------------------


def _person(principal: Principal) -> None:
    if principal.is_agent:
        raise Forbidden(
            "an agent's token cannot manage approval policies: a person sets what an agent's "
            "proposals need (the token carries an agent marker, e.g. an 'act' claim)",
            code=AGENT_CANNOT_MANAGE_POLICIES,
        )


def _require(principal: Principal, scope: Scope, what: str) -> None:
    if not principal.has_scope(scope):
        raise Forbidden(f"{what} needs the scope '{scope.value}'", code=MISSING_SCOPE)


def _require_reader(principal: Principal) -> None:
    _person(principal)
    if not (principal.has_scope(Scope.ADMIN) or principal.has_scope(Scope.PLATFORM_ADMIN)):
        raise Forbidden(
            f"approval policies need the scope '{Scope.ADMIN.value}' (or '{Scope.PLATFORM_ADMIN.value}')",
            code=MISSING_SCOPE,
        )


def _require_writer(principal: Principal, scope: str) -> None:
    _person(principal)
    if scope == "platform":
        _require(principal, Scope.PLATFORM_ADMIN, "a platform policy (it applies to every tenant)")
    else:
        _require(principal, Scope.ADMIN, "a tenant's policy")


def _require_within_accounts(principal: Principal, spec: PolicySpec) -> None:
    """A token limited to some accounts writes only policies limited to those accounts."""
    if principal.account_ids is None:
        return
    accounts = spec.match.account_ids
    outside = sorted(set(accounts) - principal.account_ids) if accounts is not None else []
    if accounts is None or outside:
        what = f"accounts it may not access ({', '.join(outside[:5])})" if outside else "every account"
        raise Forbidden(
            f"the token is limited to some accounts, and this policy matches {what}: a token limited "
            "to some accounts writes only policies whose match.account_ids lists only those accounts",
            code=POLICY_OUTSIDE_ACCOUNTS,
        )


def _checked(spec: PolicySpec) -> PolicySpec:
    if spec.match.when is not None:
        try:
            check_expression(spec.match.when)
        except InvalidExpression as exc:
            raise Invalid(
                f"match.when is not a valid expression: {exc}", code=INVALID_POLICY_EXPRESSION
            ) from None
    return spec


def _find(ctx: UseCaseContext, principal: Principal, policy_id: str) -> Policy:
    """The current version of a live policy the token may see: its tenant's, or the platform's."""
    if _POLICY_ID.fullmatch(policy_id):
        with ctx.store.read() as uow:
            found = uow.policies.get_current(principal.tenant_id, policy_id)
            if found is None:
                found = uow.policies.get_current(None, policy_id)
        if found is not None:
            if found.tenant_id is not None:
                _require(principal, Scope.ADMIN, "a tenant's policy")
            return found
    raise NotFound(f"policy '{policy_id}' not found", code="POLICY_NOT_FOUND")


# --- the use cases --------------------------------------------------------------------------------


def list_policies(ctx: UseCaseContext, principal: Principal) -> PolicyListing:
    """The policies that apply to the token's tenant: its own (with ``admin``), then the platform's."""
    _require_reader(principal)
    with ctx.store.read() as uow:
        policies = uow.policies.list_effective(principal.tenant_id)
    if not principal.has_scope(Scope.ADMIN):
        policies = [policy for policy in policies if policy.tenant_id is None]
    return PolicyListing(policies=policies)


def get_policy(ctx: UseCaseContext, principal: Principal, policy_id: str) -> Policy:
    _require_reader(principal)
    return _find(ctx, principal, policy_id)


def list_versions(ctx: UseCaseContext, principal: Principal, policy_id: str) -> PolicyVersions:
    """Every version of a policy the token may see, a deleted one's included (the audit)."""
    _require_reader(principal)
    versions = []
    if _POLICY_ID.fullmatch(policy_id):
        with ctx.store.read() as uow:
            if principal.has_scope(Scope.ADMIN):
                versions = uow.policies.list_versions(principal.tenant_id, policy_id)
            if not versions:
                versions = uow.policies.list_versions(None, policy_id)
    if not versions:
        raise NotFound(f"policy '{policy_id}' not found", code="POLICY_NOT_FOUND")
    return PolicyVersions(
        versions=[
            PolicyVersionView.model_validate({**v.policy.model_dump(), "deleted_at": v.deleted_at})
            for v in versions
        ]
    )


def create_policy(ctx: UseCaseContext, principal: Principal, spec: PolicySpec) -> Policy:
    _require_writer(principal, spec.scope)
    _require_within_accounts(principal, spec)
    _checked(spec)
    now = ctx.clock.now_iso()
    policy = Policy.model_validate(
        {
            **spec.model_dump(),
            "policy_id": f"pol_{secrets.token_hex(10)}",
            "version": 1,
            "tenant_id": None if spec.scope == "platform" else principal.tenant_id,
            "created_at": now,
            "updated_at": now,
            "created_by": principal.subject,
            "updated_by": principal.subject,
        }
    )
    with ctx.store.write() as uow:
        if not uow.policies.insert_version(policy):  # a random id of 80 bits collided
            raise Conflict("a policy with this id exists already; send it again", code=POLICY_CHANGED)
    return policy


def _next_version(current: Policy, spec: PolicySpec, principal: Principal, now: str) -> Policy:
    return Policy.model_validate(
        {
            **spec.model_dump(),
            "policy_id": current.policy_id,
            "version": current.version + 1,
            "tenant_id": current.tenant_id,
            "created_at": current.created_at,
            "updated_at": now,
            "created_by": current.created_by,
            "updated_by": principal.subject,
        }
    )


def _store_version(ctx: UseCaseContext, policy: Policy, *, deleted_at: str | None = None) -> None:
    with ctx.store.write() as uow:
        if not uow.policies.insert_version(policy, deleted_at=deleted_at):
            raise Conflict(
                f"policy '{policy.policy_id}' changed meanwhile (version {policy.version} exists); "
                "read it again and resend",
                code=POLICY_CHANGED,
            )


def replace_policy(ctx: UseCaseContext, principal: Principal, policy_id: str, spec: PolicySpec) -> Policy:
    """Store ``spec`` as the policy's next version. The body's ``scope`` may be left out; a policy
    never moves between a tenant and the platform."""
    _require_reader(principal)
    current = _find(ctx, principal, policy_id)
    _require_writer(principal, current.scope)
    _require_within_accounts(principal, current.spec)
    _require_within_accounts(principal, spec)
    if "scope" in spec.model_fields_set and spec.scope != current.scope:
        raise Invalid(
            f"policy '{policy_id}' is a {current.scope} policy; its scope does not change "
            "(create another policy instead)",
            code=POLICY_SCOPE_FIXED,
        )
    spec = _checked(spec.model_copy(update={"scope": current.scope}))
    replaced = _next_version(current, spec, principal, ctx.clock.now_iso())
    _store_version(ctx, replaced)
    return replaced


def delete_policy(ctx: UseCaseContext, principal: Principal, policy_id: str) -> None:
    """The policy stops applying; a last version records who deleted it and when."""
    _require_reader(principal)
    current = _find(ctx, principal, policy_id)
    _require_writer(principal, current.scope)
    _require_within_accounts(principal, current.spec)
    now = ctx.clock.now_iso()
    _store_version(ctx, _next_version(current, current.spec, principal, now), deleted_at=now)


def _candidate(intent: ActionIntentV1) -> Candidate:
    return Candidate(
        account_id=intent.account_id,
        action_type=intent.action_type,
        risk_class=intent.risk_class.value if intent.risk_class else None,
        proposed_by=intent.proposed_by,
        parameters=intent.parameters,
    )


def simulate(ctx: UseCaseContext, principal: Principal, request: SimulationRequest) -> SimulationResult:
    """What ``request.policy`` would have decided, enforced and alone, for the token's tenant's
    last ``request.limit`` intents (newest first; only the accounts the token may see). It reads
    the tenant's intents, so it needs the tenant's ``admin`` (``platform:admin`` opens no tenant's
    data); a platform candidate is simulated the same way, nothing being written."""
    _person(principal)
    _require(principal, Scope.ADMIN, "a simulation (it reads the tenant's intents)")
    spec = _checked(request.policy)
    now = ctx.clock.now_iso()
    candidate = Policy.model_validate(
        {
            **spec.model_dump(),
            "policy_id": CANDIDATE_ID,
            "version": 1,
            "tenant_id": None if spec.scope == "platform" else principal.tenant_id,
            "created_at": now,
            "updated_at": now,
            "created_by": principal.subject,
            "updated_by": principal.subject,
        }
    )
    with ctx.store.read() as uow:
        intents = uow.intents.list_recent(principal.tenant_id, request.limit)
    counts: dict[Outcome, int] = dict.fromkeys(OUTCOMES, 0)
    examples: dict[Outcome, list[SimulatedIntent]] = {outcome: [] for outcome in OUTCOMES}
    evaluated = errors = 0
    for intent in intents:
        if not principal.may_access_account(intent.account_id):
            continue
        evaluated += 1
        result = evaluate(candidate, _candidate(intent))
        outcome: Outcome = _outcome(candidate.decision) if result.matched else NO_MATCH
        counts[outcome] += 1
        if result.error is not None:
            errors += 1
        if len(examples[outcome]) < EXAMPLES_PER_DECISION:
            examples[outcome].append(
                SimulatedIntent(
                    action_intent_id=intent.action_intent_id,
                    action_type=intent.action_type,
                    account_id=intent.account_id,
                    risk_class=intent.risk_class.value if intent.risk_class else None,
                    proposed_by=intent.proposed_by,
                    created_at=intent.created_at,
                    error=result.error,
                )
            )
    return SimulationResult(evaluated=evaluated, counts=counts, errors=errors, examples=examples)


def _outcome(decision: PolicyDecision) -> Outcome:
    if decision is PolicyDecision.AUTO_APPROVE:
        return "AUTO_APPROVE"
    if decision is PolicyDecision.DENY:
        return "DENY"
    return "REQUIRE_APPROVAL"
