"""The execution outcome signal (reference spec §10.2), derived only from the recorded outcome.

Because every field comes from the outcome (``createdAt`` is the outcome's ``completed_at``), a
repeated RecordOutcome derives the identical signal, and the unique signal id makes it a no-op.
"""

from __future__ import annotations

import hashlib
import json

from fulfill.domain.models import ActionIntentV1, ActionOutcomeV1, ExecutionSignal, ExecutionStatus
from fulfill.domain.time import epoch_from_iso, iso_from_epoch

DETECTOR_VERSION = "execution-outcome-v1"
SIGNAL_TTL_DAYS = 90


def signal_type_for(status: ExecutionStatus) -> str:
    return "ACTION_EXECUTED" if status is ExecutionStatus.SUCCEEDED else "ACTION_FAILED"


def signal_id_for(action_intent_id: str, account_id: str, signal_type: str, attempt: int) -> str:
    base = f"exec-{action_intent_id}-{account_id}-{signal_type}"
    return base if attempt == 1 else f"{base}-a{attempt}"


def build_execution_signal(outcome: ActionOutcomeV1, intent: ActionIntentV1 | None) -> ExecutionSignal:
    signal_type = signal_type_for(outcome.status)
    evidence_json = json.dumps(
        {
            "action_intent_id": outcome.action_intent_id,
            "completed_at": outcome.completed_at,
            "status": outcome.status.value,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    evidence_sha = hashlib.sha256(evidence_json.encode("utf-8")).hexdigest()
    window_key = f"{outcome.account_id}-{outcome.action_intent_id}"
    dedupe_key = hashlib.sha256(
        f"{outcome.account_id}:{signal_type}:{window_key}:{evidence_sha}".encode()
    ).hexdigest()
    created_at = outcome.completed_at
    expires_at = iso_from_epoch(epoch_from_iso(created_at) + SIGNAL_TTL_DAYS * 86_400)
    context: dict[str, object] = {"registry_version": outcome.registry_version}
    if intent is not None:
        context = {"original_decision_id": intent.original_decision_id, **context}
    return ExecutionSignal(
        signalId=signal_id_for(
            outcome.action_intent_id, outcome.account_id, signal_type, outcome.attempt_count
        ),
        signalType="ACTION_EXECUTED" if signal_type == "ACTION_EXECUTED" else "ACTION_FAILED",
        tenantId=outcome.tenant_id,
        accountId=outcome.account_id,
        traceId=outcome.trace_id,
        action_intent_id=outcome.action_intent_id,
        attempt=outcome.attempt_count,
        createdAt=created_at,
        updatedAt=created_at,
        timestamp=created_at,
        windowKey=window_key,
        dedupeKey=dedupe_key,
        detectorVersion=DETECTOR_VERSION,
        detectorInputVersion=DETECTOR_VERSION,
        description=f"Execution {outcome.status.value.lower()}: {outcome.action_intent_id}",
        context=context,
        evidence={
            "evidenceRef": {
                "s3Uri": f"execution://{outcome.tenant_id}/{outcome.account_id}/{outcome.action_intent_id}",
                "sha256": evidence_sha,
                "capturedAt": outcome.completed_at,
                "schemaVersion": DETECTOR_VERSION,
                "detectorInputVersion": DETECTOR_VERSION,
            },
            "evidenceSchemaVersion": DETECTOR_VERSION,
        },
        metadata={
            "confidence": 1.0,
            "confidenceSource": "direct",
            "severity": "low" if outcome.status is ExecutionStatus.SUCCEEDED else "medium",
            "ttl": {"ttlDays": SIGNAL_TTL_DAYS, "expiresAt": expires_at, "isPermanent": False},
        },
        suppression={
            "suppressed": False,
            "suppressedAt": None,
            "suppressedBy": None,
            "inferenceActive": True,
        },
    )
