from __future__ import annotations

import hashlib
import json

import pytest

from fulfill.domain.errors import ErrorClass
from fulfill.domain.ledger import OUTCOME_EVENT_TYPES, entry_id, ledger_entry, outcome_entry, signal_entry
from fulfill.domain.models import ExecutionStatus
from fulfill.domain.signals import (
    DETECTOR_VERSION,
    build_execution_signal,
    signal_id_for,
    signal_type_for,
)
from tests.unit.factories import COMPLETED_AT, make_intent, make_outcome


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- signal ids and types


@pytest.mark.parametrize(
    ("attempt", "signal_type", "expected"),
    [
        (1, "ACTION_EXECUTED", "exec-ai_1-acc_1-ACTION_EXECUTED"),
        (1, "ACTION_FAILED", "exec-ai_1-acc_1-ACTION_FAILED"),
        (2, "ACTION_EXECUTED", "exec-ai_1-acc_1-ACTION_EXECUTED-a2"),
        (10, "ACTION_FAILED", "exec-ai_1-acc_1-ACTION_FAILED-a10"),
    ],
)
def test_signal_id_for(attempt: int, signal_type: str, expected: str) -> None:
    assert signal_id_for("ai_1", "acc_1", signal_type, attempt) == expected


@pytest.mark.parametrize(
    ("status", "signal_type", "severity"),
    [
        (ExecutionStatus.SUCCEEDED, "ACTION_EXECUTED", "low"),
        (ExecutionStatus.FAILED, "ACTION_FAILED", "medium"),
        (ExecutionStatus.CANCELLED, "ACTION_FAILED", "medium"),
        (ExecutionStatus.EXPIRED, "ACTION_FAILED", "medium"),
    ],
)
def test_signal_type_and_severity_by_status(status: ExecutionStatus, signal_type: str, severity: str) -> None:
    assert signal_type_for(status) == signal_type
    signal = build_execution_signal(make_outcome(status=status), make_intent())
    assert signal.signalType == signal_type
    assert signal.metadata["severity"] == severity
    assert signal.signalId == f"exec-ai_1-acc_1-{signal_type}"
    assert signal.description == f"Execution {status.value.lower()}: ai_1"


@pytest.mark.parametrize(
    ("attempt", "suffix"),
    [(1, ""), (2, "-a2"), (3, "-a3")],
)
def test_signal_id_suffix_per_attempt(attempt: int, suffix: str) -> None:
    signal = build_execution_signal(make_outcome(attempt_count=attempt), None)
    assert signal.signalId == f"exec-ai_1-acc_1-ACTION_EXECUTED{suffix}"
    assert signal.attempt == attempt


# ---------------------------------------------------------------- evidence, dedupe, timestamps


def test_evidence_sha_and_dedupe_key() -> None:
    outcome = make_outcome(status=ExecutionStatus.FAILED, external_object_refs=[])
    signal = build_execution_signal(outcome, make_intent())
    evidence = '{"action_intent_id":"ai_1","completed_at":"' + COMPLETED_AT + '","status":"FAILED"}'
    evidence_sha = sha(evidence)
    assert signal.evidence["evidenceRef"]["sha256"] == evidence_sha
    assert signal.windowKey == "acc_1-ai_1"
    assert signal.dedupeKey == sha(f"acc_1:ACTION_FAILED:acc_1-ai_1:{evidence_sha}")


def test_evidence_json_keeps_non_ascii_unescaped() -> None:
    outcome = make_outcome(action_intent_id="ai_é")
    signal = build_execution_signal(outcome, None)
    evidence = json.dumps(
        {"action_intent_id": "ai_é", "completed_at": COMPLETED_AT, "status": "SUCCEEDED"},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert "é" in evidence
    assert signal.evidence["evidenceRef"]["sha256"] == sha(evidence)


def test_evidence_shape() -> None:
    signal = build_execution_signal(make_outcome(), None)
    assert signal.evidence == {
        "evidenceRef": {
            "s3Uri": "execution://t1/acc_1/ai_1",
            "sha256": signal.evidence["evidenceRef"]["sha256"],
            "capturedAt": COMPLETED_AT,
            "schemaVersion": DETECTOR_VERSION,
            "detectorInputVersion": DETECTOR_VERSION,
        },
        "evidenceSchemaVersion": DETECTOR_VERSION,
    }


def test_different_completion_gives_different_dedupe_key() -> None:
    first = build_execution_signal(make_outcome(), None)
    second = build_execution_signal(make_outcome(completed_at="2026-01-02T03:04:05.679Z"), None)
    assert first.dedupeKey != second.dedupeKey
    assert first.evidence["evidenceRef"]["sha256"] != second.evidence["evidenceRef"]["sha256"]


def test_timestamps_come_from_the_outcome() -> None:
    signal = build_execution_signal(make_outcome(), make_intent())
    assert signal.createdAt == COMPLETED_AT
    assert signal.updatedAt == COMPLETED_AT
    assert signal.timestamp == COMPLETED_AT
    # 90 days after 2026-01-02T03:04:05.678Z
    assert signal.metadata["ttl"] == {
        "ttlDays": 90,
        "expiresAt": "2026-04-02T03:04:05.678Z",
        "isPermanent": False,
    }


def test_identity_fields() -> None:
    signal = build_execution_signal(make_outcome(), make_intent())
    assert signal.tenantId == "t1"
    assert signal.accountId == "acc_1"
    assert signal.traceId == "trace_1"
    assert signal.action_intent_id == "ai_1"
    assert signal.status == "ACTIVE"
    assert signal.detectorVersion == DETECTOR_VERSION
    assert signal.metadata["confidence"] == 1.0
    assert signal.suppression["suppressed"] is False


def test_building_twice_is_identical() -> None:
    outcome = make_outcome(status=ExecutionStatus.FAILED, external_object_refs=[], attempt_count=2)
    intent = make_intent()
    first = build_execution_signal(outcome, intent)
    second = build_execution_signal(outcome, intent)
    assert first == second
    assert first.model_dump_json() == second.model_dump_json()


def test_context_with_intent_has_decision_id() -> None:
    signal = build_execution_signal(
        make_outcome(registry_version=3), make_intent(original_decision_id="dec_9")
    )
    assert signal.context == {"original_decision_id": "dec_9", "registry_version": 3}
    assert list(signal.context) == ["original_decision_id", "registry_version"]


def test_context_without_intent_has_no_decision_id() -> None:
    signal = build_execution_signal(make_outcome(registry_version=3), None)
    assert signal.context == {"registry_version": 3}


def test_intent_does_not_change_ids_or_hashes() -> None:
    with_intent = build_execution_signal(make_outcome(), make_intent())
    without = build_execution_signal(make_outcome(), None)
    assert with_intent.signalId == without.signalId
    assert with_intent.dedupeKey == without.dedupeKey


# ---------------------------------------------------------------- ledger


def test_entry_id_format() -> None:
    assert entry_id("ai_1", 2, "ACTION_EXECUTED") == "ai_1#2#ACTION_EXECUTED"


def test_ledger_entry_builds_id() -> None:
    entry = ledger_entry(
        event_type="INTENT_RECEIVED",
        timestamp=COMPLETED_AT,
        tenant_id="t1",
        account_id="acc_1",
        action_intent_id="ai_1",
        attempt=1,
        trace_id="trace_1",
        data={"k": "v"},
    )
    assert entry.entry_id == "ai_1#1#INTENT_RECEIVED"
    assert entry.data == {"k": "v"}


@pytest.mark.parametrize(
    ("status", "event_type"),
    [
        (ExecutionStatus.SUCCEEDED, "ACTION_EXECUTED"),
        (ExecutionStatus.FAILED, "ACTION_FAILED"),
        (ExecutionStatus.CANCELLED, "EXECUTION_CANCELLED"),
        (ExecutionStatus.EXPIRED, "EXECUTION_EXPIRED"),
    ],
)
def test_outcome_entry_event_types(status: ExecutionStatus, event_type: str) -> None:
    entry = outcome_entry(make_outcome(status=status, attempt_count=2), "dtrace")
    assert entry.event_type == event_type
    assert entry.entry_id == f"ai_1#2#{event_type}"
    assert entry.attempt == 2
    assert entry.timestamp == COMPLETED_AT
    assert entry.data["status"] == status.value


def test_outcome_event_types_cover_only_terminal_statuses() -> None:
    assert set(OUTCOME_EVENT_TYPES) == {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.EXPIRED,
        ExecutionStatus.AMBIGUOUS,
    }
    with pytest.raises(KeyError):
        outcome_entry(make_outcome(status=ExecutionStatus.RUNNING), None)


def test_outcome_entry_data() -> None:
    outcome = make_outcome(
        status=ExecutionStatus.FAILED,
        external_object_refs=[],
        error_code="RATE_LIMIT",
        error_class=ErrorClass.RATE_LIMIT,
        error_message="slow",
    )
    entry = outcome_entry(outcome, None)
    assert entry.data == {
        "action_intent_id": "ai_1",
        "status": "FAILED",
        "external_object_refs": [],
        "error_code": "RATE_LIMIT",
        "error_class": "RATE_LIMIT",
        "error_message": "slow",
        "tool_name": "internal.create_task",
        "registry_version": 1,
        "idempotency_key": "k" * 64,
        "decision_trace_id": None,
        "attempt_count": 1,
    }
    assert entry.tenant_id == "t1"
    assert entry.account_id == "acc_1"
    assert entry.trace_id == "trace_1"


def test_outcome_entry_refs_drop_none_fields() -> None:
    entry = outcome_entry(make_outcome(), "dtrace")
    assert entry.data["external_object_refs"] == [
        {"system": "INTERNAL", "object_type": "task", "object_id": "task_1"}
    ]
    assert entry.data["error_class"] is None
    assert entry.data["decision_trace_id"] == "dtrace"


def test_signal_entry() -> None:
    signal = build_execution_signal(make_outcome(attempt_count=2), make_intent())
    entry = signal_entry(signal)
    assert entry.entry_id == "ai_1#2#SIGNAL"
    assert entry.event_type == "SIGNAL"
    assert entry.timestamp == COMPLETED_AT
    assert entry.data == {
        "signalId": "exec-ai_1-acc_1-ACTION_EXECUTED-a2",
        "signalType": "ACTION_EXECUTED",
        "confidence": 1.0,
        "severity": "low",
        "evidenceRefs": [{"type": "s3", "location": "execution://t1/acc_1/ai_1", "timestamp": COMPLETED_AT}],
    }
