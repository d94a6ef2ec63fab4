"""The records fulfill keeps and the contracts it serves (DESIGN §4, reference spec §1).

Pure pydantic models: no I/O, no framework imports. Timestamps are ISO-8601 UTC strings with
milliseconds (``2026-01-02T03:04:05.678Z``), epochs are integer seconds.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from fulfill.domain.errors import ErrorClass
from fulfill.domain.time import iso_from_epoch

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]
ActionType = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Z][A-Z0-9_]*$")]
# "{namespace}.{tool}": an in-process connector's namespace or a gateway target's name, then the
# tool's own name (a remote target's tools keep theirs, which MCP lets contain capitals, - and .).
ToolName = Annotated[
    str,
    StringConstraints(
        min_length=3, max_length=128, pattern=r"^[a-z][a-z0-9_]*\.[A-Za-z0-9_][A-Za-z0-9_.-]*$"
    ),
]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=2048)]


class ApprovalStatus(StrEnum):
    PENDING_APPROVAL = "PENDING_APPROVAL"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


class ExecutionStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    # The call reached a target that does not deduplicate and its answer was lost: it may have
    # written. Not terminal for the intent: it waits, without retry, rerun or budget running, for
    # a person to resolve it (POST /executions/{id}/resolve).
    AMBIGUOUS = "AMBIGUOUS"


TERMINAL_STATUSES = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED, ExecutionStatus.EXPIRED}
)


class AttemptStatus(StrEnum):
    """The execution lock's state. QUEUED: accepted, its workflow not started yet (a client sees
    PENDING); RUNNING: its workflow holds the lock; then the outcome's terminal status."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    AMBIGUOUS = "AMBIGUOUS"

    @property
    def execution_status(self) -> ExecutionStatus:
        """What a client sees: a queued attempt has not started, so it is still PENDING."""
        return ExecutionStatus.PENDING if self is AttemptStatus.QUEUED else ExecutionStatus(self.value)


# ``fulfill_ambiguous_executions``'s age buckets: (label, lower bound in seconds, upper bound).
AMBIGUOUS_AGE_BUCKETS: tuple[tuple[str, float, float | None], ...] = (
    ("under_1h", 0.0, 3600.0),
    ("1h_to_24h", 3600.0, 86_400.0),
    ("over_24h", 86_400.0, None),
)


def ambiguous_age_bounds(now_epoch: float) -> list[tuple[str, str | None, str | None]]:
    """Each bucket's (label, became AMBIGUOUS after, at or before) as ISO timestamps: an age in
    [lower, upper)."""
    return [
        (
            label,
            iso_from_epoch(now_epoch - upper) if upper is not None else None,
            iso_from_epoch(now_epoch - lower) if lower > 0 else None,
        )
        for label, lower, upper in AMBIGUOUS_AGE_BUCKETS
    ]


ACTIVE_ATTEMPT_STATUSES = frozenset({AttemptStatus.QUEUED, AttemptStatus.RUNNING})
RERUNNABLE_STATUSES = frozenset({AttemptStatus.FAILED, AttemptStatus.CANCELLED})


class CompensationStrategy(StrEnum):
    AUTOMATIC = "AUTOMATIC"
    MANUAL = "MANUAL"
    NONE = "NONE"


class CompensationStatus(StrEnum):
    NONE = "NONE"
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class RiskClass(StrEnum):
    MINIMAL = "MINIMAL"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class Transform(StrEnum):
    PASSTHROUGH = "PASSTHROUGH"
    UPPERCASE = "UPPERCASE"
    LOWERCASE = "LOWERCASE"
    CAPITALIZE = "CAPITALIZE"


class ApprovalSource(StrEnum):
    HUMAN = "HUMAN"
    POLICY = "POLICY"


class ProposedVia(StrEnum):
    """Where a proposal came in."""

    API = "api"  # POST /intents (the CLI's `intent submit` too)
    MCP = "mcp"  # an action tool of the agent endpoint /agent/mcp


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyDecision(StrEnum):
    """What an approval policy decides for the intents it matches."""

    AUTO_APPROVE = "AUTO_APPROVE"  # approved in the creating transaction, and executed
    REQUIRE_APPROVAL = "REQUIRE_APPROVAL"  # waits for ``approvals_required`` distinct people
    DENY = "DENY"  # stored REJECTED, never executed


class PolicyMode(StrEnum):
    ENFORCE = "ENFORCE"  # decides
    SHADOW = "SHADOW"  # evaluated and recorded in the ledger, never acted on


class ExpiryAction(StrEnum):
    """What happens when an intent is not approved in time."""

    EXPIRE = "EXPIRE"  # it expires (the default)
    ESCALATE = "ESCALATE"  # a second approver group is notified once, and the window extended


class ApprovalRule(_Model):
    """What approving one intent takes, fixed when the intent is created: by the ENFORCE policy
    that matched it (named here), or the default rule (one person's approval) when none did."""

    policy_id: str | None = None
    policy_version: int | None = None
    policy_name: str | None = None
    decision: PolicyDecision = PolicyDecision.REQUIRE_APPROVAL
    approvals_required: int = Field(default=1, ge=1, le=10)
    approver_scopes: list[str] = Field(default_factory=list)
    on_expiry: ExpiryAction = ExpiryAction.EXPIRE
    # ESCALATE: the scopes of the second approver group (who may approve once it is escalated)
    # and how long the approval window is extended by.
    escalate_to_scopes: list[str] = Field(default_factory=list)
    escalation_extend_seconds: int | None = Field(default=None, ge=60, le=30 * 86_400)


class IntentApproval(_Model):
    """One person's approval of an M-of-N intent, bound to the exact action it approved."""

    approved_by: str
    approved_at: str
    action_hash: str
    comment: str | None = None


class ApprovalGiven(_Model):
    """An approval as the status DTO and the approve answer show it (its comment stays in the ledger)."""

    approved_by: str
    approved_at: str
    action_hash: str


class Target(_Model):
    entity_type: Literal["ACCOUNT", "CONTACT", "OPPORTUNITY", "DEAL", "ENGAGEMENT"]
    entity_id: NonEmpty


class ExecutionPolicy(_Model):
    """Per-intent execution bounds.

    ``retry_count``: how many times a transient tool failure is retried within one attempt.
    ``timeout_seconds``: the whole attempt's budget, from start to recorded outcome.
    ``max_attempts``: how many attempts the intent may have in all, the first one included. The
    service starts the first itself (the retries within it are ``retry_count``'s, not attempts);
    every further attempt is an explicit admin rerun, refused (409 ``MAX_ATTEMPTS_REACHED``) when
    it would make ``attempt_count`` exceed this. The default 1, what the upstream decision system
    writes, allows no rerun after a try of the tool failed: an intent that may need one is created
    with a higher value. A rerun after a stop before the tool call (a kill switch, an outage) is
    always allowed (``domain/rerun.py``).
    """

    retry_count: int = Field(default=3, ge=0, le=10)
    timeout_seconds: int = Field(default=300, ge=1, le=86_400)
    max_attempts: int = Field(default=1, ge=1, le=10)


class ActionIntentV1(_Model):
    action_intent_id: Identifier
    action_type: ActionType
    target: Target | None = None
    parameters: dict[str, Any]
    parameters_schema_version: str | None = None
    approved_by: str | None = None
    approval_timestamp: str | None = None
    approval_status: ApprovalStatus
    execution_policy: ExecutionPolicy
    expires_at: str
    expires_at_epoch: int
    original_decision_id: str | None = None
    original_proposal_id: str | None = None
    # The subject of the token that proposed the intent (who may therefore not approve it), and
    # where it came in; None for intents stored before they were recorded.
    proposed_by: str | None = None
    proposed_via: ProposedVia | None = None
    supersedes_action_intent_id: str | None = None
    edited_fields: list[str] = Field(default_factory=list)
    tenant_id: Identifier
    account_id: Identifier
    trace_id: str
    registry_version: int = Field(ge=1)
    # The pinned registry version's risk class, copied at creation; None for intents stored before.
    risk_class: RiskClass | None = None
    created_at: str
    updated_at: str
    # What approving it takes (None for intents stored before policies: one person's approval).
    approval_rule: ApprovalRule | None = None
    # The approvals given so far in the current round (an edit starts a new round), oldest first.
    approvals: list[IntentApproval] = Field(default_factory=list)
    # The hash of the exact action that was approved (domain/action_hash.py), set when the intent
    # becomes APPROVED; the workflow recomputes it right before the tool call. None for intents
    # approved before it was recorded.
    action_hash: str | None = None
    # ESCALATE policies: when the first approval window ends (expires_at is then the extended end),
    # and when the escalation was made.
    escalates_at_epoch: int | None = None
    escalated_at: str | None = None


# An object in a gateway target (a remote MCP server): "MCP:{target name}".
TargetSystem = Annotated[str, StringConstraints(pattern=r"^MCP:[a-z][a-z0-9_]{0,31}$")]


class ExternalObjectRef(_Model):
    system: Literal["CRM", "CALENDAR", "INTERNAL"] | TargetSystem
    object_type: NonEmpty
    object_id: NonEmpty
    object_url: str | None = None


class ExecutionAttempt(_Model):
    """One lock row per intent; ``attempt_count`` grows only by an explicit admin rerun."""

    tenant_id: str
    account_id: str
    action_intent_id: str
    attempt_count: int = Field(ge=1)
    attempt_id: str
    workflow_id: str
    status: AttemptStatus
    idempotency_key: str | None = None
    trace_id: str
    last_error_class: ErrorClass | None = None
    started_at: str
    updated_at: str
    completed_at: str | None = None
    # The W3C trace context of the request that accepted this attempt: its workflow's parent span.
    traceparent: str | None = None


class ActionOutcomeV1(_Model):
    """Write-once per (intent, attempt)."""

    tenant_id: str
    account_id: str
    action_intent_id: str
    attempt_count: int = Field(ge=1)
    status: ExecutionStatus
    external_object_refs: list[ExternalObjectRef] = Field(default_factory=list)
    error_code: str | None = None
    error_class: ErrorClass | None = None
    error_message: str | None = None
    tool_name: str | None = None
    tool_schema_version: str | None = None
    registry_version: int | None = None
    tool_run_ref: str
    idempotency_key: str | None = None
    started_at: str
    completed_at: str
    compensation_status: CompensationStatus = CompensationStatus.NONE
    compensation_error: str | None = None
    trace_id: str
    approval_source: ApprovalSource | None = None
    auto_executed: bool | None = None
    # The hash (domain/action_hash.py) of the action this attempt ran, or was about to run when it
    # stopped: the one its tool call was built from, or for an APPROVAL_MISMATCH the intent's as
    # it was found. None when it stopped before that was known (and for outcomes recorded
    # before the hash was).
    action_hash: str | None = None


class ParameterMapping(BaseModel):
    """How one intent parameter becomes one tool argument (reference spec §1.6)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    tool_param: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        alias="toolParam", description="The tool argument this parameter becomes."
    )
    transform: Transform = Field(
        default=Transform.PASSTHROUGH,
        description="PASSTHROUGH, UPPERCASE, LOWERCASE or CAPITALIZE (applied to a string value).",
    )
    required: bool = Field(
        default=False,
        description="An intent without this parameter never reaches the tool: it fails VALIDATION.",
    )


class RegistryEntry(_Model):
    """One immutable version of the action-type → tool mapping."""

    action_type: ActionType
    registry_version: int = Field(ge=1)
    tool_name: ToolName
    tool_schema_version: str = "v1.0"
    required_scopes: list[str] = Field(default_factory=list)
    risk_class: RiskClass = RiskClass.LOW
    compensation_strategy: CompensationStrategy = CompensationStrategy.NONE
    compensation_tool_name: ToolName | None = None
    parameter_mapping: dict[str, ParameterMapping]
    created_at: str
    deprecated_at: str | None = None

    @model_validator(mode="after")
    def _automatic_needs_tool(self) -> RegistryEntry:
        if self.compensation_strategy is CompensationStrategy.AUTOMATIC and not self.compensation_tool_name:
            raise ValueError("compensation_strategy AUTOMATIC needs a compensation_tool_name")
        return self


class TenantExecutionConfig(_Model):
    tenant_id: str
    execution_enabled: bool = True
    disabled_action_types: list[str] = Field(default_factory=list)
    updated_at: str | None = None


class GlobalExecutionConfig(_Model):
    global_stop: bool = False
    disabled_action_types: list[str] = Field(default_factory=list)
    updated_at: str | None = None


class LedgerEntry(_Model):
    entry_id: str
    event_type: str
    timestamp: str
    tenant_id: str
    account_id: str
    action_intent_id: str
    attempt: int
    trace_id: str
    data: dict[str, Any]


class ExecutionSignal(_Model):
    """The execution outcome signal (reference spec §10.2), one per (intent, attempt)."""

    signalId: str  # the signal contract is camelCase
    signalType: Literal["ACTION_EXECUTED", "ACTION_FAILED"]
    tenantId: str
    accountId: str
    traceId: str
    action_intent_id: str
    attempt: int
    createdAt: str
    updatedAt: str
    timestamp: str
    status: Literal["ACTIVE"] = "ACTIVE"
    windowKey: str
    dedupeKey: str
    detectorVersion: str
    detectorInputVersion: str
    description: str
    context: dict[str, Any]
    evidence: dict[str, Any]
    metadata: dict[str, Any]
    suppression: dict[str, Any]


class ExecutionStatusView(BaseModel):
    """The status DTO of DESIGN §4.3; absent fields are left out of the JSON."""

    model_config = ConfigDict(extra="forbid")

    action_intent_id: str
    status: ExecutionStatus
    started_at: str | None = None
    completed_at: str | None = None
    external_object_refs: list[ExternalObjectRef] | None = None
    error_code: str | None = None
    error_class: ErrorClass | None = None
    error_message: str | None = None
    attempt_count: int | None = None
    compensation_status: CompensationStatus | None = None
    # The subject of the token that proposed the intent (absent for intents stored before it was kept).
    proposed_by: str | None = None
    # Intents with an approval rule (a policy's, or the default one stored with it): how many
    # distinct people must approve, the approvals of the current action so far, the deciding policy.
    approvals_required: int | None = None
    approvals: list[ApprovalGiven] | None = None
    policy_id: str | None = None
    # The hash of the action approved (domain/action_hash.py), once APPROVED.
    action_hash: str | None = None
    # An intent an approver edited before approving: the parameters it now has (what runs), and
    # which top-level ones were changed, added or removed.
    parameters: dict[str, Any] | None = None
    edited_fields: list[str] | None = None
