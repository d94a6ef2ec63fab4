"""What the console says about an intent's approval: who proposed it and how, the rule its
approval follows (the policy that decided it, or the default), the approvals so far and the hash
of the action they are bound to. A pure function of the intent; no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from fulfill.domain.action_hash import action_hash
from fulfill.domain.models import ActionIntentV1, ApprovalStatus

# An action hash is shown by its first characters (``v1:3f2a9c1b…``); the whole of it is in the
# element's title and in a field a person can select and copy.
SHORT_HASH_CHARS = 12

_VIA_WORDS = {"api": "the API", "mcp": "the agent endpoint", "import": "an import"}


@dataclass(frozen=True)
class ShownApproval:
    """One approval counted so far."""

    approved_by: str
    approved_at: str
    comment: str | None


@dataclass(frozen=True)
class ApprovalFacts:
    """Who proposed an intent, the rule its approval follows and where it stands: what a person
    reads before deciding, and after."""

    proposed_by: str | None
    proposed_via: str | None  # in words: "the API", "the agent endpoint", "an import"
    policy: str  # "policy <name> (<id>, version <n>): <decision>" or "default: one approval"
    policy_id: str | None
    approvals_required: int
    approvals: list[ShownApproval]
    progress: str  # "1 of 2"
    action_hash: str | None  # the full hash (the approved one, else the one an approval binds to now)
    hash_approved: bool  # whether ``action_hash`` is the hash that was approved

    @property
    def short_hash(self) -> str | None:
        if self.action_hash is None:
            return None
        scheme, _, digest = self.action_hash.partition(":")
        return f"{scheme}:{digest[:SHORT_HASH_CHARS]}…" if digest else self.action_hash


def approval_facts(intent: ActionIntentV1) -> ApprovalFacts:
    """What the intent says about its proposal and approval, in the words the console shows."""
    rule = intent.approval_rule
    if rule is None or rule.policy_id is None:
        policy = "default: one approval"
        required = 1 if rule is None else rule.approvals_required
    else:
        name = rule.policy_name or rule.policy_id
        version = f", version {rule.policy_version}" if rule.policy_version is not None else ""
        policy = f"policy {name} ({rule.policy_id}{version}): {rule.decision.value}"
        required = rule.approvals_required
    approvals = [ShownApproval(a.approved_by, a.approved_at, a.comment) for a in intent.approvals]
    approved = intent.approval_status is ApprovalStatus.APPROVED
    if approved and not approvals and intent.approved_by:
        # Approved in one step (one person, a policy, an import): that approval is the only one.
        approvals = [ShownApproval(intent.approved_by, intent.approval_timestamp or "", None)]
    counted = len(approvals)
    if intent.action_hash is not None:
        shown_hash: str | None = intent.action_hash
    elif intent.approval_status is ApprovalStatus.PENDING_APPROVAL:
        shown_hash = action_hash(intent)  # what an approval given now is bound to
    else:
        shown_hash = None
    via = intent.proposed_via.value if intent.proposed_via is not None else None
    return ApprovalFacts(
        proposed_by=intent.proposed_by,
        proposed_via=_VIA_WORDS.get(via, via) if via else None,
        policy=policy,
        policy_id=rule.policy_id if rule is not None else None,
        approvals_required=required,
        approvals=approvals,
        progress=f"{min(counted, required) if not approved else max(counted, required)} of {required}",
        action_hash=shown_hash,
        hash_approved=intent.action_hash is not None,
    )
