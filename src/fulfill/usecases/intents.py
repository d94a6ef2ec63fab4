"""Creating, reading and approving action intents; reading execution status."""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
from dataclasses import dataclass
from typing import Any

import jsonschema
from pydantic import BaseModel, ConfigDict, Field

from fulfill.domain.action_hash import action_hash
from fulfill.domain.approval_count import (
    AlreadyCounted,
    approvals_required,
    count_approval,
    edited_fields,
    entitlement,
)
from fulfill.domain.approval_count import Refused as CountRefused
from fulfill.domain.approvers import Allowed, Decider, Decision, decide
from fulfill.domain.execution import CompensationRequest
from fulfill.domain.expiry import beyond_max_ttl, default_expiry_epoch, describe_seconds, is_expired
from fulfill.domain.idempotency import canonical_json
from fulfill.domain.killswitch import evaluate_kill_switches
from fulfill.domain.ledger import (
    action_approved_entry,
    approval_recorded_entry,
    intent_decision_entry,
    intent_edited_entry,
    policy_evaluated_entry,
    policy_outcome,
)
from fulfill.domain.mapping import TRUSTED_ARGUMENTS, MappingError, arguments_for_tool, map_parameters
from fulfill.domain.models import (
    ActionIntentV1,
    ActionType,
    ApprovalGiven,
    ApprovalRule,
    ApprovalSource,
    ApprovalStatus,
    AttemptStatus,
    ExecutionPolicy,
    ExecutionStatus,
    ExpiryAction,
    Identifier,
    IntentApproval,
    PolicyDecision,
    PolicyMode,
    ProposedVia,
    RegistryEntry,
    Target,
)
from fulfill.domain.policies import Candidate, Policy, Verdict
from fulfill.domain.policies import decide as decide_policy
from fulfill.domain.schemas import (
    MAX_PARAMETER_DEPTH,
    PatternTimeout,
    UncheckableSchema,
    UntrustedSchema,
    too_deep,
)
from fulfill.domain.scopes import Scope
from fulfill.domain.time import epoch_from_iso, iso_from_epoch
from fulfill.engine.intake import ExecutionLock, request_for, start_if_queued, take_execution_lock
from fulfill.engine.outbox_relay import COMPENSATION_TOPIC, ENGINE_DESTINATION
from fulfill.ports.store import UnitOfWork
from fulfill.tokens import Principal
from fulfill.usecases.context import UseCaseContext
from fulfill.usecases.errors import Conflict, Forbidden, Invalid, NotFound
from fulfill.usecases.notifications import enqueue_proposal_notice

_BASE36 = string.digits + string.ascii_lowercase


log = logging.getLogger(__name__)


class Approval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approved_by: str = Field(min_length=1, max_length=256, description="Who approved it upstream.")
    approval_timestamp: str = Field(
        min_length=1, max_length=40, description="When it was approved upstream (ISO 8601)."
    )


class CreateIntent(BaseModel):
    """``POST /intents`` body (DESIGN §4.1). The tenant comes from the token, never from here."""

    model_config = ConfigDict(extra="forbid")

    action_intent_id: Identifier | None = None
    action_type: ActionType
    account_id: Identifier
    parameters: dict[str, Any]
    target: Target | None = None
    parameters_schema_version: str | None = Field(default=None, max_length=64)
    registry_version: int | None = Field(default=None, ge=1, le=1_000_000)
    expires_at: str | None = Field(default=None, max_length=40)
    execution_policy: ExecutionPolicy | None = None
    original_decision_id: str | None = Field(default=None, max_length=256)
    original_proposal_id: str | None = Field(default=None, max_length=256)
    trace_id: str | None = Field(default=None, max_length=128)
    approval: Approval | None = Field(
        default=None,
        description="Import an intent approved upstream: stored APPROVED, started by its ACTION_APPROVED "
        "event. The token must also hold intents:approve and the registry version's required_scopes.",
    )


class ApprovalChange(BaseModel):
    action_intent_id: str
    approval_status: ApprovalStatus
    approvals_required: int | None = Field(
        default=None, description="Approve: how many distinct people must approve the intent."
    )
    approvals: list[ApprovalGiven] | None = Field(
        default=None, description="Approve: the approvals of the current action counted so far, oldest first."
    )
    action_hash: str | None = Field(
        default=None, description="The hash of the action approved, once the intent is APPROVED."
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="What will happen that the approver may not expect: a kill switch that is on "
        "when the intent is approved (its execution will be stopped before its tool call and end "
        "CANCELLED / KILL_SWITCH_ENABLED; a tenant admin reruns it once the switch is off).",
    )


def active_stop_warnings(rt: UseCaseContext, intent: ActionIntentV1) -> list[str]:
    """What approving ``intent`` now runs into (the console says it before the click too). Only
    advice: switches that cannot be read make no approval fail (the execution itself reads them
    again, and stops to be safe), they are named instead."""
    try:
        with rt.store.read() as uow:
            return approval_warnings(rt, uow, intent)
    except Exception:
        return _switches_unreadable()


def _switches_unreadable() -> list[str]:
    log.warning("kill switches could not be read for the approval warning", exc_info=True)
    return [
        "the kill switches could not be read: if one is on, this execution will be stopped "
        "before its tool call and end CANCELLED (KILL_SWITCH_ENABLED)"
    ]


def approval_warnings(rt: UseCaseContext, uow: UnitOfWork, intent: ActionIntentV1) -> list[str]:
    """The active stop an approval runs into, named, with the way out."""
    global_config, tenant_config = uow.killswitches.get_global_and_tenant(intent.tenant_id)
    decision = evaluate_kill_switches(
        environment_stop=rt.settings.global_execution_stop,
        global_config=global_config,
        tenant_config=tenant_config,
        action_type=intent.action_type,
    )
    if decision.allowed:
        return []
    return [
        f"kill switch {decision.scope} is on ({decision.reason}): this execution will be stopped "
        "before its tool call and end CANCELLED (KILL_SWITCH_ENABLED); once the switch is off, a "
        f"tenant admin reruns it (POST /intents/{intent.action_intent_id}/rerun, or "
        f"`fulfill rerun {intent.action_intent_id} --tenant {intent.tenant_id}`)"
    ]


def new_intent_id(now: float) -> str:
    return f"ai_{int(now * 1000)}_{''.join(secrets.choice(_BASE36) for _ in range(8))}"


def create_intent(
    rt: UseCaseContext,
    principal: Principal,
    body: CreateIntent,
    *,
    proposed_via: ProposedVia = ProposedVia.API,
) -> tuple[ActionIntentV1, bool]:
    """Store a new intent; returns ``(intent, created)``. The same body again returns the stored
    intent (``created`` False); another body under the same id is a conflict.

    The intent records its proposer, the token's subject (``proposed_by``: who may not approve it),
    and ``proposed_via``, where it came in (the HTTP API, or an action tool of the agent endpoint).
    """
    intent, created, _entry = _create_intent(rt, principal, body, proposed_via)
    return intent, created


def create_intent_answer(
    rt: UseCaseContext, principal: Principal, body: CreateIntent
) -> tuple[ActionIntentV1, bool, list[str]]:
    """:func:`create_intent` through the HTTP API, with the intent's :func:`ignored_parameters`
    from the registry version the creating transaction read (versions are immutable), so a new
    intent costs no second transaction."""
    intent, created, entry = _create_intent(rt, principal, body, ProposedVia.API)
    if entry is None:  # a repeat, answered from the stored intent
        return intent, created, ignored_parameters(rt, intent)
    return intent, created, _ignored(intent, entry)


def _create_intent(
    rt: UseCaseContext, principal: Principal, body: CreateIntent, proposed_via: ProposedVia
) -> tuple[ActionIntentV1, bool, RegistryEntry | None]:
    """``(intent, created, the registry entry read when created)``: see :func:`create_intent`."""
    if not principal.may_access_account(body.account_id):
        raise Forbidden("the token does not grant access to this account")
    # First: everything below (the body's hash, the serialisers, the schema check) recurses.
    if too_deep(body.parameters):
        raise Invalid(
            f"parameters are nested deeper than {MAX_PARAMETER_DEPTH} levels", code="PARAMETERS_TOO_DEEP"
        )
    now = rt.clock.now()
    now_iso = iso_from_epoch(now)
    request_hash = hashlib.sha256(
        canonical_json({"tenant_id": principal.tenant_id, **body.model_dump(mode="json")}).encode()
    ).hexdigest()
    if body.action_intent_id is not None:
        existing = _existing(rt, principal, body.action_intent_id, request_hash)
        if existing is not None:
            return existing, False, None
    built, entry = _build_intent(rt, principal, body, now, now_iso, proposed_via)
    lock: ExecutionLock | None = None
    with rt.store.write() as uow:
        # The approval policies are read and applied in the creating transaction: the intent is
        # stored with its decision, and a policy changed meanwhile applies to the next intent.
        # The registry version is the one the intent was built from (versions are immutable:
        # reading it again here would give the same entry).
        policies, held_back = _applicable(uow.policies.list_effective(principal.tenant_id), entry)
        verdict = decide_policy(policies, _candidate(built))
        intent = _decided(rt, principal, built, verdict, now, imported=body.approval is not None)
        inserted = uow.intents.insert_intent(intent, request_hash)
        if inserted:
            if policies:  # with no policy at all, the default rule applies and nothing is recorded
                _append_evaluations(
                    uow, intent, verdict, imported=body.approval is not None, held_back=held_back
                )
            if intent.approval_status is ApprovalStatus.REJECTED:
                uow.intents.mark_execution(
                    intent.tenant_id, intent.action_intent_id, status=ExecutionStatus.CANCELLED, at=now_iso
                )
                _append_decision(
                    uow, intent, "INTENT_REJECTED", _policy_subject(verdict.rule), rule=verdict.rule
                )
            elif body.approval is not None:
                _append_approved(uow, intent, asserted_by=principal.subject, imported=True)
            elif intent.approval_status is ApprovalStatus.APPROVED:
                _append_approved(
                    uow, intent, asserted_by=_policy_subject(verdict.rule), imported=False, rule=verdict.rule
                )
                lock = take_execution_lock(uow, intent, now)
            enqueue_proposal_notice(uow, rt.settings, intent)
    if not inserted:
        # Created meanwhile under the same id (a concurrent retry): answer as for a repeat.
        existing = _existing(rt, principal, intent.action_intent_id, request_hash)
        if existing is None:  # pragma: no cover - the row that won the insert cannot vanish
            raise Conflict("action_intent_id is already in use", code="INTENT_ID_IN_USE")
        return existing, False, None
    if lock is not None:  # AUTO_APPROVE: started after the commit, as an approval's execution is
        start_if_queued(
            lock, request_for(lock.attempt, approval_source=ApprovalSource.POLICY, auto_executed=True)
        )
    return intent, True, entry


def _applicable(policies: list[Policy], entry: RegistryEntry | None) -> tuple[list[Policy], dict[str, str]]:
    """The policies as they may act on an intent of ``entry``: approving an action type whose
    registry version requires scopes (``required_scopes``) needs an approver holding them, which a
    tenant's own policy cannot vouch for; its ENFORCE AUTO_APPROVE is then only recorded, as a
    SHADOW policy's would be, and the next policy decides. The platform's policies, written by
    those who set the scopes, approve such intents too. Returns the policies and the ones held
    back (their id → why, for their ledger entries)."""
    if entry is None or not entry.required_scopes:
        return policies, {}
    reason = (
        f"not auto-approved: approving {entry.action_type} (registry version {entry.registry_version}) "
        f"needs an approver holding {', '.join(sorted(entry.required_scopes))}, which a tenant's policy "
        "cannot vouch for"
    )
    held = {
        policy.policy_id: reason
        for policy in policies
        if policy.tenant_id is not None
        and policy.decision is PolicyDecision.AUTO_APPROVE
        and policy.mode is PolicyMode.ENFORCE
    }
    return [
        policy.model_copy(update={"mode": PolicyMode.SHADOW}) if policy.policy_id in held else policy
        for policy in policies
    ], held


def _candidate(intent: ActionIntentV1) -> Candidate:
    return Candidate(
        account_id=intent.account_id,
        action_type=intent.action_type,
        risk_class=intent.risk_class.value if intent.risk_class is not None else None,
        proposed_by=intent.proposed_by,
        parameters=intent.parameters,
    )


def _policy_subject(rule: ApprovalRule) -> str:
    """Who a policy's decision is recorded as made by: ``policy:<policy_id>``."""
    return f"policy:{rule.policy_id}"


def _decided(
    rt: UseCaseContext,
    principal: Principal,
    intent: ActionIntentV1,
    verdict: Verdict,
    now: float,
    *,
    imported: bool,
) -> ActionIntentV1:
    """The intent as the deciding policy has it stored (DESIGN §4.7): AUTO_APPROVE approved by the
    policy and bound to its action hash; DENY rejected; REQUIRE_APPROVAL pending with the rule
    (an ESCALATE policy's window: ``escalates_at_epoch`` the expiry it would have had, and
    ``expires_at`` extended past it, within the platform's maximum TTL).

    An imported approval is kept where the policy lets one approval stand: DENY still rejects it,
    and a policy asking for more approvals, or for approver scopes the asserting token lacks,
    refuses the import (403 ``POLICY_REQUIRES_APPROVALS``)."""
    rule = verdict.rule
    decided = intent.model_copy(update={"approval_rule": rule})
    if rule.decision is PolicyDecision.DENY:
        return decided.model_copy(
            update={
                "approval_status": ApprovalStatus.REJECTED,
                "approved_by": None,
                "approval_timestamp": None,
                "action_hash": None,
            }
        )
    if imported:
        if rule.decision is PolicyDecision.REQUIRE_APPROVAL:
            missing = sorted(set(rule.approver_scopes) - principal.scopes)
            if rule.approvals_required > 1 or missing:
                needs = (
                    f"{rule.approvals_required} distinct approvals"
                    if rule.approvals_required > 1
                    else f"approvers holding {', '.join(missing)}, which the token lacks"
                )
                raise Forbidden(
                    f"the approval policy '{rule.policy_name}' ({rule.policy_id}, version "
                    f"{rule.policy_version}) requires {needs}: an imported approval cannot satisfy it; "
                    "create the intent without its approval block and approve it here",
                    code="POLICY_REQUIRES_APPROVALS",
                )
        return decided
    if rule.decision is PolicyDecision.AUTO_APPROVE:
        approved = decided.model_copy(
            update={
                "approval_status": ApprovalStatus.APPROVED,
                "approved_by": _policy_subject(rule),
                "approval_timestamp": decided.created_at,
            }
        )
        return approved.model_copy(update={"action_hash": action_hash(approved)})
    if rule.on_expiry is ExpiryAction.ESCALATE and rule.escalation_extend_seconds is not None:
        escalates_at = decided.expires_at_epoch
        extended = min(
            escalates_at + rule.escalation_extend_seconds, int(now) + rt.settings.max_intent_ttl_seconds
        )
        extended = max(extended, escalates_at)
        return decided.model_copy(
            update={
                "escalates_at_epoch": escalates_at,
                "expires_at_epoch": extended,
                "expires_at": iso_from_epoch(extended),
            }
        )
    return decided


def _append_evaluations(
    uow: UnitOfWork,
    intent: ActionIntentV1,
    verdict: Verdict,
    *,
    imported: bool,
    held_back: dict[str, str],
) -> None:
    """``POLICY_EVALUATED``: the deciding policy's (or the default rule's), then each matching
    SHADOW policy's, never acted on, then each AUTO_APPROVE policy whose expression failed. For an
    import the policy lets stand, the outcome says that the imported approval is what approved it."""
    rule = verdict.rule
    deciding = verdict.deciding
    outcome = policy_outcome(rule.decision, rule.approvals_required, applied=True)
    if imported and rule.decision is not PolicyDecision.DENY:
        outcome = f"{outcome}; the imported approval stands"
    uow.executions.append_ledger(
        policy_evaluated_entry(
            intent,
            policy_id=rule.policy_id,
            policy_version=rule.policy_version,
            policy_name=rule.policy_name,
            decision=rule.decision,
            mode=PolicyMode.ENFORCE,
            applied=True,
            outcome=outcome,
            error=deciding.error if deciding is not None else None,
        )
    )
    for shadow in verdict.shadows:
        policy = shadow.policy
        held = held_back.get(policy.policy_id)  # an ENFORCE AUTO_APPROVE _applicable held back
        uow.executions.append_ledger(
            policy_evaluated_entry(
                intent,
                policy_id=policy.policy_id,
                policy_version=policy.version,
                policy_name=policy.name,
                decision=policy.decision,
                mode=PolicyMode.ENFORCE if held else PolicyMode.SHADOW,
                applied=False,
                outcome=held or policy_outcome(policy.decision, policy.approvals_required, applied=False),
                error=shadow.error,
            )
        )
    for failed in verdict.errors:  # AUTO_APPROVE policies whose expression failed: fail-safe, no match
        policy = failed.policy
        uow.executions.append_ledger(
            policy_evaluated_entry(
                intent,
                policy_id=policy.policy_id,
                policy_version=policy.version,
                policy_name=policy.name,
                decision=policy.decision,
                mode=policy.mode,
                applied=False,
                outcome="not applied: its expression could not be evaluated",
                error=failed.error,
            )
        )


def ignored_parameters(rt: UseCaseContext, intent: ActionIntentV1) -> list[str]:
    """The intent's parameters its pinned registry version's mapping never sends (stored, never
    sent to the tool), sorted: usually a misspelt name."""
    with rt.store.read() as uow:
        entry = uow.registry.get_entry(intent.action_type, intent.registry_version)
    return _ignored(intent, entry)


def _ignored(intent: ActionIntentV1, entry: RegistryEntry | None) -> list[str]:
    mapped = set(entry.parameter_mapping) if entry is not None else set(intent.parameters)
    return sorted(set(intent.parameters) - mapped)


def _existing(
    rt: UseCaseContext, principal: Principal, action_intent_id: str, request_hash: str
) -> ActionIntentV1 | None:
    with rt.store.read() as uow:
        found = uow.intents.get_intent_with_request_hash(principal.tenant_id, action_intent_id)
    if found is None:
        return None
    stored, stored_hash = found
    if not principal.may_access_account(stored.account_id):
        raise Forbidden("the token does not grant access to this account")
    if stored_hash != request_hash:
        raise Conflict(
            "an intent with this action_intent_id exists with a different body", code="INTENT_BODY_MISMATCH"
        )
    return stored


def _policy(asked: ExecutionPolicy | None, max_timeout: int) -> ExecutionPolicy:
    """The intent's execution policy within the platform's maximum budget: a ``timeout_seconds``
    asked above it is refused; the default one is lowered to it."""
    policy = asked or ExecutionPolicy()
    if policy.timeout_seconds <= max_timeout:
        return policy
    if asked is not None and "timeout_seconds" in asked.model_fields_set:
        raise Invalid(
            f"execution_policy.timeout_seconds may be at most {max_timeout} on this platform "
            f"(FULFILL_MAX_TIMEOUT_SECONDS); got {asked.timeout_seconds}",
            code="TIMEOUT_ABOVE_MAXIMUM",
        )
    return policy.model_copy(update={"timeout_seconds": max_timeout})


def _build_intent(
    rt: UseCaseContext,
    principal: Principal,
    body: CreateIntent,
    now: float,
    now_iso: str,
    proposed_via: ProposedVia,
) -> tuple[ActionIntentV1, RegistryEntry]:
    """The intent to store, and the registry version it is pinned to."""
    with rt.store.read() as uow:
        if body.registry_version is None:
            entry = uow.registry.latest_active_entry(body.action_type)
            newest = uow.registry.latest_version(body.action_type) if entry is None else None
        else:
            entry = uow.registry.get_entry(body.action_type, body.registry_version)
            newest = None
    if newest is not None:  # known, but every version retired: not "no registry entry"
        raise Invalid(
            f"every registry version of {body.action_type} is deprecated (the newest is {newest}): "
            "register a new version (POST /admin/registry) to create intents of it again",
            code="REGISTRY_VERSION_DEPRECATED",
        )
    if entry is None:
        raise Invalid(
            f"no registry entry for action type {body.action_type}"
            + (f" version {body.registry_version}" if body.registry_version else ""),
            code="TOOL_MAPPING_NOT_FOUND",
        )
    if entry.deprecated_at is not None:
        raise Invalid(
            f"registry version {entry.registry_version} of {entry.action_type} is deprecated",
            code="REGISTRY_VERSION_DEPRECATED",
        )
    if body.approval is not None:  # the token asserting the approval must be one that may approve
        if not principal.has_scope(Scope.INTENTS_APPROVE):
            raise Forbidden(
                f"importing an approved intent needs the scope '{Scope.INTENTS_APPROVE}' (an agent that may "
                "only propose intents cannot approve them)",
                code="MISSING_SCOPE",
            )
        _require_approval_scopes(principal, entry)
        # The token asserting the approval proposes the intent: it must not be an agent's, and
        # the approver it names must be someone else.
        _require_may_decide(
            _Asserted(subject=body.approval.approved_by, is_agent=principal.is_agent),
            Decision.APPROVE,
            proposed_by=principal.subject,
        )
    _check_parameters(rt, entry, body.parameters)
    max_ttl = rt.settings.max_intent_ttl_seconds
    if body.expires_at is not None:
        try:
            expires_epoch = int(epoch_from_iso(body.expires_at))
        except (ValueError, OverflowError):
            raise Invalid("expires_at must be an ISO-8601 timestamp", code="INVALID_EXPIRES_AT") from None
        if beyond_max_ttl(expires_epoch, now, max_ttl):
            raise Invalid(
                f"expires_at may be at most {describe_seconds(max_ttl)} after the intent's creation "
                "(the platform's FULFILL_MAX_INTENT_TTL_SECONDS)",
                code="EXPIRES_AT_TOO_LATE",
            )
    else:
        expires_epoch = default_expiry_epoch(body.action_type, now, max_ttl)
    if body.approval is not None:
        try:
            epoch_from_iso(body.approval.approval_timestamp)
        except ValueError:
            raise Invalid(
                "approval.approval_timestamp must be an ISO-8601 timestamp", code="INVALID_APPROVAL"
            ) from None
    if (
        body.original_decision_id is not None
        and body.original_proposal_id is not None
        and body.original_decision_id != body.original_proposal_id
    ):
        raise Invalid("original_decision_id must equal original_proposal_id", code="PROVENANCE_MISMATCH")
    intent = ActionIntentV1(
        action_intent_id=body.action_intent_id or new_intent_id(now),
        action_type=body.action_type,
        target=body.target,
        parameters=body.parameters,
        parameters_schema_version=body.parameters_schema_version,
        approved_by=body.approval.approved_by if body.approval else None,
        approval_timestamp=body.approval.approval_timestamp if body.approval else None,
        approval_status=ApprovalStatus.APPROVED if body.approval else ApprovalStatus.PENDING_APPROVAL,
        execution_policy=_policy(body.execution_policy, rt.settings.max_timeout_seconds),
        expires_at=iso_from_epoch(expires_epoch),
        expires_at_epoch=expires_epoch,
        original_decision_id=body.original_decision_id,
        original_proposal_id=body.original_proposal_id,
        proposed_by=principal.subject,
        proposed_via=proposed_via,
        tenant_id=principal.tenant_id,
        account_id=body.account_id,
        trace_id=body.trace_id or f"decision-{int(now * 1000)}-{secrets.token_hex(6)}",
        registry_version=entry.registry_version,
        risk_class=entry.risk_class,
        created_at=now_iso,
        updated_at=now_iso,
    )
    # An imported intent is approved as it is stored: bound to that exact action.
    if body.approval:
        intent = intent.model_copy(update={"action_hash": action_hash(intent)})
    return intent, entry


@dataclass(frozen=True)
class _Asserted:
    """The approver an import names, with the agent marker of the token that asserts it."""

    subject: str
    is_agent: bool


def _require_may_decide(decider: Decider, decision: Decision, *, proposed_by: str | None) -> None:
    """A person decides, and not on their own proposal (domain/approvers.py): 403 otherwise."""
    verdict = decide(decider, decision, proposed_by=proposed_by)
    if not isinstance(verdict, Allowed):
        raise Forbidden(verdict.message, code=verdict.code)


def _require_approval_scopes(principal: Principal, entry: RegistryEntry) -> None:
    """Approving needs every scope the pinned registry version requires, besides the route's."""
    missing = sorted(set(entry.required_scopes) - principal.scopes)
    if missing:
        raise Forbidden(
            f"approving {entry.action_type} (registry version {entry.registry_version}) needs the "
            f"scope{'s' if len(missing) > 1 else ''} {', '.join(missing)}, which the token lacks",
            code="MISSING_APPROVAL_SCOPE",
        )


def _check_tool_arguments(rt: UseCaseContext, entry: RegistryEntry, mapped: dict[str, Any]) -> None:
    """The mapped parameters must satisfy the input schema of the pinned version's tool."""
    schema = rt.tool_schemas.get(entry.tool_name)
    if schema is None:
        raise Invalid(f"the gateway has no tool {entry.tool_name}", code="UNKNOWN_TOOL")
    placeholders = dict.fromkeys(TRUSTED_ARGUMENTS, "x" * 64)
    # What the tool will receive: a trusted argument its schema does not declare is not sent.
    arguments = arguments_for_tool({**mapped, **placeholders}, schema)
    to_parameter = {rule.tool_param: name for name, rule in entry.parameter_mapping.items()}
    try:
        # A gateway target's schema: no network, bounded patterns (this runs in a worker thread).
        found = _validator(entry.tool_name, schema, rt.settings.schema_pattern_timeout_seconds).errors(
            arguments
        )
    except UncheckableSchema as exc:
        raise Invalid(
            f"the input schema of {entry.tool_name} cannot be used: {exc}", code="UNCHECKABLE_SCHEMA"
        ) from None
    except PatternTimeout as exc:
        argument = next((name for name, value in arguments.items() if value is exc.value), None)
        where = f"parameters.{to_parameter.get(argument, argument)}" if argument else "parameters"
        raise Invalid(
            f"{where} could not be checked against the pattern of {entry.tool_name}'s input schema "
            f"within {rt.settings.schema_pattern_timeout_seconds:g} s",
            code="PATTERN_CHECK_TIMEOUT",
        ) from None
    errors = sorted(found, key=lambda e: list(e.path))
    if errors:
        problems = []
        for error in errors[:10]:
            argument = str(error.path[0]) if error.path else ""
            where = f"parameters.{to_parameter.get(argument, argument)}" if argument else "parameters"
            problems.append(f"{where}: {_schema_message(error)}")
        raise Invalid("; ".join(problems), code="INVALID_PARAMETERS")


_VALIDATORS: dict[str, UntrustedSchema] = {}
_MAX_VALIDATORS = 1024


def _validator(tool_name: str, schema: dict[str, Any], pattern_timeout: float) -> UntrustedSchema:
    """The validator of a tool's current input schema, built once for that schema object (a new
    schema, as a target's refreshed tool list brings, gets a new one): building one costs more
    than checking a typical intent's parameters with it."""
    cached = _VALIDATORS.get(tool_name)
    if cached is not None and cached.schema is schema and cached.pattern_timeout == pattern_timeout:
        return cached
    validator = UntrustedSchema(schema, pattern_timeout=pattern_timeout)
    if len(_VALIDATORS) >= _MAX_VALIDATORS:
        _VALIDATORS.clear()
    _VALIDATORS[tool_name] = validator
    return validator


def _schema_message(error: jsonschema.ValidationError) -> str:
    if error.validator == "type":
        return f"must be of type {error.validator_value}"
    if error.validator == "required":
        return "a required argument is missing"
    return f"fails '{error.validator}'"


def get_intent(rt: UseCaseContext, principal: Principal, action_intent_id: str) -> ActionIntentV1:
    with rt.store.read() as uow:
        return _visible(principal, uow.intents.get_intent(principal.tenant_id, action_intent_id))


def _visible(principal: Principal, intent: ActionIntentV1 | None) -> ActionIntentV1:
    """The intent read for the principal's tenant, if its account is one the token may see: an
    intent of another tenant is never read (404), one of another account is refused (403)."""
    if intent is None:
        raise NotFound("action intent not found")
    if not principal.may_access_account(intent.account_id):
        raise Forbidden("the token does not grant access to this account")
    return intent


MAX_COMMENT_LENGTH = 500
PENDING_LISTING_LIMIT = 200


def list_pending_approval(
    rt: UseCaseContext, principal: Principal, *, limit: int = PENDING_LISTING_LIMIT
) -> list[ActionIntentV1]:
    """The token's tenant's intents waiting for approval, newest first, only of the accounts the
    token may access; expired ones are included (they can no longer be approved)."""
    with rt.store.read() as uow:
        return uow.intents.list_pending_approval(
            tenant_id=principal.tenant_id, account_ids=principal.account_ids, limit=limit
        )


def list_accounts(
    rt: UseCaseContext, principal: Principal, *, limit: int = PENDING_LISTING_LIMIT
) -> list[str]:
    """The accounts of the token's tenant that have intents and that the token may access."""
    with rt.store.read() as uow:
        accounts = uow.intents.list_accounts(tenant_id=principal.tenant_id, limit=limit)
    return [account for account in accounts if principal.may_access_account(account)]


def _checked_comment(comment: str | None) -> str | None:
    if comment is None or not comment.strip():
        return None
    if len(comment) > MAX_COMMENT_LENGTH:
        raise Invalid(f"the comment is longer than {MAX_COMMENT_LENGTH} characters", code="COMMENT_TOO_LONG")
    return comment.strip()


def approve_intent(
    rt: UseCaseContext,
    principal: Principal,
    action_intent_id: str,
    *,
    comment: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> ApprovalChange:
    """Count the token holder's approval; the last one needed moves PENDING_APPROVAL → APPROVED and
    takes the execution lock (a QUEUED attempt) in the same transaction.

    This is what the ACTION_APPROVED intake does for an event, done where the approval is
    accepted, so an approval and its execution are committed together; the workflow is enqueued
    right after the commit (or, if that fails, by the reconciler). The token needs, besides
    ``intents:approve``, every scope in the pinned registry version's ``required_scopes`` and in
    the intent's ``approval_rule.approver_scopes`` (once escalated, its ``escalate_to_scopes``
    qualify too): 403 ``MISSING_APPROVAL_SCOPE`` otherwise, even for a repeat. An agent's token
    (403 ``AGENT_CANNOT_APPROVE``) and the intent's proposer (403 ``SELF_APPROVAL``) are refused,
    even for a repeat.

    An intent whose rule needs several approvals stays PENDING_APPROVAL until that many distinct
    people have approved the same action: each counted approval is an ``APPROVAL_RECORDED``
    ledger entry, a repeat by someone already counted changes nothing. Everything is decided
    under the intent's row lock, so concurrent approvals count one after the other and exactly
    one of them completes it.

    ``parameters`` (edit before approve) replaces the whole parameter object, validated as at
    creation; the edit is an ``INTENT_EDITED`` ledger entry, clears the approvals given so far and
    counts as the editor's approval. Only a PENDING_APPROVAL intent is edited (409 otherwise).
    """
    comment = _checked_comment(comment)
    intent, entry, warnings = _read_for_approval(rt, principal, action_intent_id)
    _require_approval_scopes(principal, entry)
    _require_may_decide(principal, Decision.APPROVE, proposed_by=intent.proposed_by)
    _require_entitled(principal, intent, Decision.APPROVE)
    if parameters is not None:
        if intent.approval_status is not ApprovalStatus.PENDING_APPROVAL:
            raise Conflict(
                f"an intent that is {intent.approval_status.value} cannot be edited",
                code="INVALID_TRANSITION",
            )
        _check_parameters(rt, entry, parameters)
    if intent.approval_status is ApprovalStatus.APPROVED:
        return _approval_change(intent)
    if intent.approval_status is not ApprovalStatus.PENDING_APPROVAL:
        raise Conflict(
            f"an intent that is {intent.approval_status.value} cannot be approved", code="INVALID_TRANSITION"
        )
    now = rt.clock.now()
    if is_expired(intent.expires_at_epoch, now):
        raise Conflict("the intent has expired and can no longer be approved", code="INTENT_EXPIRED")
    now_iso = iso_from_epoch(now)
    started: ExecutionLock | None = None
    with rt.store.write() as uow:
        locked = uow.intents.get_intent(intent.tenant_id, action_intent_id, for_update=True)
        if locked is None:  # pragma: no cover - intents are never deleted
            raise NotFound("action intent not found")
        if locked.approval_status is ApprovalStatus.APPROVED and parameters is None:
            return _approval_change(locked)
        if locked.approval_status is not ApprovalStatus.PENDING_APPROVAL:
            raise Conflict(
                f"an intent that is {locked.approval_status.value} cannot be "
                f"{'edited' if parameters is not None else 'approved'}",
                code="INVALID_TRANSITION",
            )
        current = locked
        if parameters is not None:
            current = _edited(uow, entry, locked, parameters, edited_by=principal.subject, now_iso=now_iso)
        hashed = action_hash(current)
        approval = IntentApproval(
            approved_by=principal.subject, approved_at=now_iso, action_hash=hashed, comment=comment
        )
        counted = count_approval(
            current.approval_rule,
            current.approvals,
            approval,
            principal.scopes,
            escalated=current.escalated_at is not None,
            action_hash=hashed,
        )
        if isinstance(counted, CountRefused):
            raise Forbidden(counted.message, code=counted.code)
        if isinstance(counted, AlreadyCounted):
            result = current
        elif not counted.complete:
            result = current.model_copy(update={"approvals": list(counted.approvals), "updated_at": now_iso})
            uow.intents.save_intent(result)
            uow.executions.append_ledger(
                approval_recorded_entry(
                    result,
                    approved_by=principal.subject,
                    approved_at=now_iso,
                    action_hash=hashed,
                    approvals=len(counted.approvals),
                    approvals_required=approvals_required(result.approval_rule),
                    comment=comment,
                )
            )
        else:
            result = _transition(
                uow,
                current.model_copy(update={"approvals": list(counted.approvals)}),
                to_status=ApprovalStatus.APPROVED,
                now=now_iso,
                approved_by=principal.subject,
                action_hash=hashed,
            )
            _append_human_approval(uow, result, comment=comment)
            started = take_execution_lock(uow, result, now)
    if started is None:
        return _approval_change(result)
    start_if_queued(
        started, request_for(started.attempt, approval_source=ApprovalSource.HUMAN, auto_executed=False)
    )
    return _approval_change(result, warnings=warnings)


def _read_for_approval(
    rt: UseCaseContext, principal: Principal, action_intent_id: str
) -> tuple[ActionIntentV1, RegistryEntry, list[str]]:
    """What an approval reads before its write transaction, in one read transaction: the intent
    (404, 403 as :func:`get_intent`), its pinned registry version, and, for an intent still
    waiting for approval, the kill switches it would run into (:func:`active_stop_warnings`:
    only advice, and switches that cannot be read are named instead, never a failed approval)."""
    with rt.store.read() as uow:
        found = uow.intents.get_intent_with_entry(principal.tenant_id, action_intent_id)
        intent = _visible(principal, found[0] if found else None)
        entry = found[1] if found else None
        warnings: list[str] = []
        if entry is not None and intent.approval_status is ApprovalStatus.PENDING_APPROVAL:
            try:
                warnings = approval_warnings(rt, uow, intent)
            except Exception:
                warnings = _switches_unreadable()
    if entry is None:
        raise Invalid(
            f"no registry entry for action type {intent.action_type} version {intent.registry_version}",
            code="TOOL_MAPPING_NOT_FOUND",
        )
    return intent, entry, warnings


def _approval_change(intent: ActionIntentV1, *, warnings: list[str] | None = None) -> ApprovalChange:
    """The answer to an approval: where the intent stands and the approvals counted so far."""
    return ApprovalChange(
        action_intent_id=intent.action_intent_id,
        approval_status=intent.approval_status,
        approvals_required=approvals_required(intent.approval_rule),
        approvals=[
            ApprovalGiven(approved_by=a.approved_by, approved_at=a.approved_at, action_hash=a.action_hash)
            for a in intent.approvals
        ],
        action_hash=intent.action_hash,
        warnings=warnings or [],
    )


def _require_entitled(principal: Principal, intent: ActionIntentV1, decision: Decision) -> None:
    """The approver scopes of the intent's rule (domain/approval_count.py): 403 without them."""
    refused = entitlement(
        intent.approval_rule,
        principal.scopes,
        escalated=intent.escalated_at is not None,
        decision=decision.value,
    )
    if refused is not None:
        raise Forbidden(refused.message, code=refused.code)


def _check_parameters(rt: UseCaseContext, entry: RegistryEntry, parameters: dict[str, Any]) -> None:
    """A new intent's parameters, and an approver's edit of them: depth, the pinned version's
    mapping, JSON they can be stored as, and the tool's input schema (422 otherwise, nothing is
    stored or changed)."""
    if too_deep(parameters):
        raise Invalid(
            f"parameters are nested deeper than {MAX_PARAMETER_DEPTH} levels", code="PARAMETERS_TOO_DEEP"
        )
    try:
        mapped = map_parameters(parameters, entry.parameter_mapping)
        canonical_json(parameters)
    except MappingError as exc:
        raise Invalid(exc.error.error_message, code=exc.error.error_code) from None
    except ValueError as exc:
        raise Invalid(f"parameters: {exc}", code="INVALID_PARAMETER_TYPE") from None
    _check_tool_arguments(rt, entry, mapped)


def _edited(
    uow: UnitOfWork,
    entry: RegistryEntry,
    locked: ActionIntentV1,
    parameters: dict[str, Any],
    *,
    edited_by: str,
    now_iso: str,
) -> ActionIntentV1:
    """The locked intent with the edited parameters (its round's approvals cleared), and the
    ``INTENT_EDITED`` entry; unchanged parameters are no edit. An edit that changes which policy
    decides is refused (:func:`_require_same_policy`)."""
    changed = edited_fields(locked.parameters, parameters)
    if not changed:
        return locked
    edited = locked.model_copy(
        update={
            "parameters": parameters,
            "edited_fields": sorted(set(locked.edited_fields) | set(changed)),
            "approvals": [],
            "updated_at": now_iso,
        }
    )
    _require_same_policy(uow, entry, locked, edited)
    uow.intents.save_intent(edited)
    uow.executions.append_ledger(
        intent_edited_entry(
            locked,
            edited,
            edited_by=edited_by,
            edited_fields=changed,
            action_hash_before=action_hash(locked),
            action_hash_after=action_hash(edited),
        )
    )
    return edited


def _require_same_policy(
    uow: UnitOfWork, entry: RegistryEntry, proposed: ActionIntentV1, edited: ActionIntentV1
) -> None:
    """An edit may not move the action to another policy's rule: the intent keeps the rule it was
    created with, so an approver editing a call into a wire and approving it alone would execute,
    with one approval, what a policy asks two (or a DENY refuses) for. Both actions are decided
    by the tenant's current policies; when the deciding policy differs, 409
    ``EDIT_CHANGES_POLICY`` (the edited action is proposed anew, and decided at its creation)."""
    policies, _ = _applicable(uow.policies.list_effective(proposed.tenant_id), entry)
    before = decide_policy(policies, _candidate(proposed)).rule
    after = decide_policy(policies, _candidate(edited)).rule
    if before.policy_id == after.policy_id:
        return

    def named(rule: ApprovalRule) -> str:
        if rule.policy_id is None:
            return "the default rule (one approval)"
        return f"the policy '{rule.policy_name}' ({rule.policy_id}, {rule.decision.value})"

    raise Conflict(
        f"the edited action falls under {named(after)}, the proposed one under {named(before)}: "
        "an edit may not change which approval policy decides; propose the edited action anew",
        code="EDIT_CHANGES_POLICY",
    )


def _append_human_approval(uow: UnitOfWork, intent: ActionIntentV1, *, comment: str | None) -> None:
    """ACTION_APPROVED for the approval that completed the intent, with every approver when the
    rule needed several."""
    rule = intent.approval_rule
    uow.executions.append_ledger(
        action_approved_entry(
            timestamp=intent.approval_timestamp or intent.updated_at,
            tenant_id=intent.tenant_id,
            account_id=intent.account_id,
            action_intent_id=intent.action_intent_id,
            trace_id=intent.trace_id,
            approved_by=intent.approved_by,
            asserted_by=intent.approved_by or "",
            decision_id=intent.original_decision_id,
            imported=False,
            comment=comment,
            approval_source=ApprovalSource.HUMAN,
            policy_id=rule.policy_id if rule else None,
            policy_version=rule.policy_version if rule else None,
            action_hash=intent.action_hash,
            approvers=[a.approved_by for a in intent.approvals] if approvals_required(rule) > 1 else None,
        ),
    )


def reject_intent(
    rt: UseCaseContext, principal: Principal, action_intent_id: str, *, comment: str | None = None
) -> ApprovalChange:
    """PENDING_APPROVAL → REJECTED: the first rejection rejects, whatever approvals were counted.
    An approved intent is stopped with cancel, not reject. An agent's token is refused (403
    ``AGENT_CANNOT_APPROVE``); a proposer may reject (withdraw) its own proposal; anyone else
    needs the approver scopes of the intent's rule, as to approve (403 ``MISSING_APPROVAL_SCOPE``)."""
    comment = _checked_comment(comment)
    intent = get_intent(rt, principal, action_intent_id)
    _require_may_decide(principal, Decision.REJECT, proposed_by=intent.proposed_by)
    if intent.proposed_by != principal.subject:  # a proposer may always withdraw their own
        _require_entitled(principal, intent, Decision.REJECT)
    if intent.approval_status is ApprovalStatus.REJECTED:
        return ApprovalChange(action_intent_id=action_intent_id, approval_status=ApprovalStatus.REJECTED)
    if intent.approval_status is not ApprovalStatus.PENDING_APPROVAL:
        raise Conflict(
            f"an intent that is {intent.approval_status.value} cannot be rejected", code="INVALID_TRANSITION"
        )
    with rt.store.write() as uow:
        rejected = _transition(
            uow,
            intent,
            to_status=ApprovalStatus.REJECTED,
            now=rt.clock.now_iso(),
            execution_status=ExecutionStatus.CANCELLED,
        )
        _append_decision(uow, rejected, "INTENT_REJECTED", principal.subject, comment=comment)
    return ApprovalChange(action_intent_id=action_intent_id, approval_status=ApprovalStatus.REJECTED)


def cancel_intent(
    rt: UseCaseContext, principal: Principal, action_intent_id: str, *, reason: str | None = None
) -> ApprovalChange:
    """Stop an intent wherever it is.

    Not yet executed: it never will be. Executing: it stops before its tool call if it has not
    reached it. Already written: the write is compensated when the registry says AUTOMATIC (the
    compensation workflow starts through the outbox, in the cancel's own transaction).
    """
    intent = get_intent(rt, principal, action_intent_id)
    if intent.approval_status is ApprovalStatus.CANCELLED:
        return ApprovalChange(action_intent_id=action_intent_id, approval_status=ApprovalStatus.CANCELLED)
    if intent.approval_status is ApprovalStatus.REJECTED:
        raise Conflict("a rejected intent cannot be cancelled", code="INVALID_TRANSITION")
    now = rt.clock.now_iso()
    with rt.store.write() as uow:
        # Locked: RecordOutcome either sees this cancel or is seen by it (see steps.record_outcome).
        locked = uow.intents.get_intent(intent.tenant_id, action_intent_id, for_update=True)
        if locked is None or locked.approval_status is not intent.approval_status:
            raise Conflict(
                "the intent changed while it was being cancelled; read it and retry", code="CONCURRENT_CHANGE"
            )
        attempt = uow.executions.get_attempt(intent.tenant_id, intent.account_id, action_intent_id)
        if attempt is not None and attempt.status is AttemptStatus.AMBIGUOUS:
            # Its call may have written: a cancel could neither undo a write nobody has named nor
            # know there is none. A person resolves it first (POST /executions/{id}/resolve).
            raise Conflict(
                "the execution is AMBIGUOUS (its call may have written at the target): resolve it "
                "first (committed, not_committed or abandon), then cancel",
                code="EXECUTION_AMBIGUOUS",
            )
        cancelled = _transition(
            uow,
            locked,
            to_status=ApprovalStatus.CANCELLED,
            now=now,
            execution_status=None if attempt else ExecutionStatus.CANCELLED,
        )
        _append_decision(uow, cancelled, "INTENT_CANCELLED", principal.subject, comment=reason)
        outcome = (
            uow.executions.get_outcome(
                intent.tenant_id, intent.account_id, action_intent_id, attempt.attempt_count
            )
            if attempt
            else None
        )
        if (
            outcome is not None
            and outcome.status is ExecutionStatus.SUCCEEDED
            and outcome.external_object_refs
        ):
            request = CompensationRequest(
                tenant_id=outcome.tenant_id,
                account_id=outcome.account_id,
                action_intent_id=action_intent_id,
                attempt_count=outcome.attempt_count,
                requested_by=principal.subject,
            )
            uow.outbox.enqueue(
                message_id=f"compensate:{request.workflow_id}",
                topic=COMPENSATION_TOPIC,
                tenant_id=intent.tenant_id,
                payload=request.model_dump(mode="json"),
                destinations=[ENGINE_DESTINATION],
                now=now,
                now_epoch=rt.clock.now(),
            )
    rt.outbox_wakeup.set()
    return ApprovalChange(action_intent_id=action_intent_id, approval_status=ApprovalStatus.CANCELLED)


def _transition(uow: UnitOfWork, intent: ActionIntentV1, **change: Any) -> ActionIntentV1:
    """Move the approval status, or 409 when the intent changed since it was read."""
    moved = uow.intents.transition_approval(intent, **change)
    if moved is None:
        raise Conflict(
            "the intent changed while this request was handled; read it and retry", code="CONCURRENT_CHANGE"
        )
    return moved


def _append_decision(
    uow: UnitOfWork,
    intent: ActionIntentV1,
    event_type: str,
    decided_by: str,
    *,
    comment: str | None = None,
    rule: ApprovalRule | None = None,
) -> None:
    """A decision's ledger entry; with ``rule``, a policy's (its id and version)."""
    uow.executions.append_ledger(
        intent_decision_entry(
            intent,
            event_type,
            decided_by=decided_by,
            comment=comment,
            policy_id=rule.policy_id if rule else None,
            policy_version=rule.policy_version if rule else None,
        )
    )


def _append_approved(
    uow: UnitOfWork,
    intent: ActionIntentV1,
    *,
    asserted_by: str,
    imported: bool,
    comment: str | None = None,
    rule: ApprovalRule | None = None,
) -> None:
    """``ACTION_APPROVED``: a person's (source HUMAN), or with ``rule`` an AUTO_APPROVE policy's
    (source POLICY, with its id and version); with the hash of the action approved."""
    uow.executions.append_ledger(
        action_approved_entry(
            timestamp=intent.approval_timestamp or intent.updated_at,
            tenant_id=intent.tenant_id,
            account_id=intent.account_id,
            action_intent_id=intent.action_intent_id,
            trace_id=intent.trace_id,
            approved_by=intent.approved_by,
            asserted_by=asserted_by,
            decision_id=intent.original_decision_id,
            imported=imported,
            comment=comment,
            approval_source=ApprovalSource.POLICY if rule is not None else ApprovalSource.HUMAN,
            policy_id=rule.policy_id if rule is not None else None,
            policy_version=rule.policy_version if rule is not None else None,
            action_hash=intent.action_hash,
        ),
    )
