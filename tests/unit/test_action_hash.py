"""The approval's binding to the exact action: ``domain/action_hash.verify`` (a pure function)."""

from __future__ import annotations

from typing import Any

import pytest

from fulfill.console.present import explain_error, timeline_steps
from fulfill.domain.action_hash import PREFIX_LENGTH, Mismatch, Verified, action_hash, prefix, verify
from fulfill.domain.errors import ErrorClass, classify
from fulfill.domain.ledger import outcome_entry
from fulfill.domain.models import ActionIntentV1
from tests.unit.factories import make_intent, make_outcome


def _approved(**fields: Any) -> ActionIntentV1:
    intent = make_intent(**fields)
    return intent.model_copy(update={"action_hash": action_hash(intent)})


def test_an_unchanged_approved_intent_is_verified_with_its_hash() -> None:
    intent = _approved(parameters={"title": "x", "amount": 10})
    assert verify(intent) == Verified(action_hash=action_hash(intent))
    assert verify(intent, sending=action_hash(intent)) == Verified(action_hash=intent.action_hash)


def test_an_intent_approved_before_hashes_were_recorded_is_not_checked() -> None:
    intent = make_intent(parameters={"title": "changed, but nothing says what was approved"})
    assert intent.action_hash is None
    assert verify(intent) == Verified(action_hash=None)
    assert verify(intent, sending="v1:" + "0" * 64) == Verified(action_hash=None)


@pytest.mark.parametrize(
    "change",
    [
        {"parameters": {"title": "y"}},
        {"parameters": {"title": "x", "extra": None}},
        {"registry_version": 2},
        {"account_id": "acc_2"},
        {"expires_at_epoch": 2_000_000_001},
        {"action_type": "CREATE_INTERNAL_NOTE"},
    ],
    ids=["parameter", "added-parameter", "registry-version", "account", "expiry", "action-type"],
)
def test_anything_hashed_that_changed_after_the_approval_is_a_mismatch(change: dict[str, Any]) -> None:
    approved = _approved(parameters={"title": "x"})
    changed = approved.model_copy(update=change)
    checked = verify(changed)
    assert checked == Mismatch(approved=approved.action_hash or "", actual=action_hash(changed))
    assert checked.approved != checked.actual


def test_what_is_not_hashed_may_change() -> None:
    approved = _approved()
    later = approved.model_copy(update={"updated_at": "2026-03-01T00:00:00.000Z", "trace_id": "other"})
    assert verify(later) == Verified(action_hash=approved.action_hash)


def test_a_call_built_from_another_action_is_a_mismatch_even_when_the_intent_is_intact() -> None:
    intent = _approved()
    other = action_hash(intent.model_copy(update={"parameters": {"title": "other"}}))
    assert verify(intent, sending=other) == Mismatch(approved=action_hash(intent), actual=other)


def test_the_message_names_both_hashes_by_their_prefix() -> None:
    approved = "v1:" + "a" * 64
    actual = "v1:" + "b" * 64
    message = Mismatch(approved=approved, actual=actual).message
    assert f"hash {'v1:' + 'b' * 12}…" in message
    assert f"hash {'v1:' + 'a' * 12}…" in message
    assert "a" * 13 not in message
    assert "b" * 13 not in message
    assert message.index("b" * 12) < message.index("a" * 12)  # what runs, then what was approved
    assert "the tool was not called" in message
    assert prefix(approved) == approved[:PREFIX_LENGTH] == "v1:" + "a" * 12


def test_a_mismatch_is_a_validation_failure_that_is_never_retried() -> None:
    assert (
        classify(error_code="APPROVAL_MISMATCH", message="temporarily unavailable") is ErrorClass.VALIDATION
    )


def test_the_console_explains_a_mismatch_and_shows_the_hash_an_execution_was_bound_to() -> None:
    assert explain_error("VALIDATION", "APPROVAL_MISMATCH").startswith(
        "The action about to run was not the one approved"
    )
    bound = "v1:" + "c" * 64
    [start] = timeline_steps(
        [
            {
                "event_type": "EXECUTION_STARTED",
                "timestamp": "2026-01-01T00:00:00.000Z",
                "attempt": 1,
                "data": {"action_hash": bound},
            }
        ]
    )
    assert start.details == [f"bound to the approved action {'v1:' + 'c' * 12}…"]
    [unbound] = timeline_steps(
        [{"event_type": "EXECUTION_STARTED", "timestamp": "", "attempt": 1, "data": {"action_hash": None}}]
    )
    assert unbound.details == []


def test_the_outcomes_ledger_entry_carries_the_hash_when_there_is_one() -> None:
    hashed = "v1:" + "d" * 64
    assert outcome_entry(make_outcome(action_hash=hashed), None).data["action_hash"] == hashed
    assert "action_hash" not in outcome_entry(make_outcome(), None).data
