"""One shape for the switches of either scope: the public names each scope gives its stop, the
CLI's printed shape, and the ledger entry of a change; and the use cases' other ledger entries."""

from __future__ import annotations

import pytest

from fulfill.domain.killswitch import GLOBAL_SCOPE, KillSwitchScope, StoredSwitches, SwitchSettings
from fulfill.domain.ledger import (
    GLOBAL_SWITCHES_SUBJECT,
    KILL_SWITCH_CHANGED,
    PLATFORM_LEDGER_TENANT,
    TENANT_SWITCHES_SUBJECT,
    event_rejected_entry,
    intent_decision_entry,
    kill_switch_entry,
    rerun_requested_entry,
)
from fulfill.domain.models import LedgerEntry
from tests.unit.factories import make_intent

TENANT = KillSwitchScope.of_tenant("t1")


def test_the_global_stop_is_on_when_stopped_and_a_tenants_execution_enabled_is_off() -> None:
    stopped = SwitchSettings(stopped=True, disabled_action_types=("A_B",))
    assert stopped.fields(GLOBAL_SCOPE) == {"global_stop": True, "disabled_action_types": ["A_B"]}
    assert stopped.fields(TENANT) == {"execution_enabled": False, "disabled_action_types": ["A_B"]}
    assert SwitchSettings().fields(TENANT) == {"execution_enabled": True, "disabled_action_types": []}


@pytest.mark.parametrize("scope", [GLOBAL_SCOPE, TENANT])
@pytest.mark.parametrize("stopped", [True, False])
def test_fields_read_back_as_the_same_settings(scope: KillSwitchScope, stopped: bool) -> None:
    settings = SwitchSettings(stopped=stopped, disabled_action_types=("X_Y", "A_B"))
    assert SwitchSettings.from_fields(scope, settings.fields(scope)) == settings


def test_the_printed_shape_names_the_tenant_first_and_the_write_last() -> None:
    stored = StoredSwitches(
        TENANT, SwitchSettings(stopped=True), updated_at="2026-01-01T00:00:00Z", revision=3
    )
    assert list(stored.public().items()) == [
        ("tenant_id", "t1"),
        ("execution_enabled", False),
        ("disabled_action_types", []),
        ("updated_at", "2026-01-01T00:00:00Z"),
        ("revision", 3),
    ]
    assert StoredSwitches(GLOBAL_SCOPE).public() == {
        "global_stop": False,
        "disabled_action_types": [],
        "updated_at": None,
        "revision": 0,
    }


def test_the_engine_reads_either_scope_as_its_config() -> None:
    stored = StoredSwitches(TENANT, SwitchSettings(stopped=True, disabled_action_types=("A_B",)))
    assert stored.tenant_config().execution_enabled is False
    assert stored.tenant_config().disabled_action_types == ["A_B"]
    assert StoredSwitches(GLOBAL_SCOPE, SwitchSettings(stopped=True)).global_config().global_stop is True


def test_a_change_of_the_global_switches_belongs_to_no_tenant() -> None:
    stored = StoredSwitches(
        GLOBAL_SCOPE, SwitchSettings(stopped=True), updated_at="2026-01-01T00:00:00Z", revision=2
    )
    entry = kill_switch_entry(stored, changed_by="alice")
    assert (entry.event_type, entry.tenant_id, entry.action_intent_id, entry.attempt) == (
        KILL_SWITCH_CHANGED,
        PLATFORM_LEDGER_TENANT,
        GLOBAL_SWITCHES_SUBJECT,
        2,
    )
    assert entry.timestamp == "2026-01-01T00:00:00Z"
    assert entry.data == {
        "scope": "global",
        "changed_by": "alice",
        "global_stop": True,
        "disabled_action_types": [],
    }


def test_a_change_of_a_tenants_switches_is_in_that_tenants_ledger() -> None:
    stored = StoredSwitches(
        TENANT, SwitchSettings(disabled_action_types=("A_B",)), updated_at="t", revision=1
    )
    entry = kill_switch_entry(stored, changed_by="bob")
    assert (entry.tenant_id, entry.action_intent_id) == ("t1", TENANT_SWITCHES_SUBJECT)
    assert entry.entry_id == f"{TENANT_SWITCHES_SUBJECT}#1#{KILL_SWITCH_CHANGED}"
    assert entry.data == {
        "scope": "tenant",
        "changed_by": "bob",
        "execution_enabled": True,
        "disabled_action_types": ["A_B"],
    }


# The use cases' other ledger entries are built in domain/ledger.py too.


def test_a_decision_on_an_intent_is_at_its_change_with_the_comment_only_when_given() -> None:
    intent = make_intent(updated_at="2026-02-02T00:00:00Z")
    entry = intent_decision_entry(intent, "INTENT_REJECTED", decided_by="carol", comment="no")
    assert (entry.event_type, entry.timestamp, entry.attempt, entry.trace_id) == (
        "INTENT_REJECTED",
        "2026-02-02T00:00:00Z",
        0,
        intent.trace_id,
    )
    assert entry.data == {"action_intent_id": intent.action_intent_id, "decided_by": "carol", "comment": "no"}
    assert "comment" not in intent_decision_entry(intent, "INTENT_CANCELLED", decided_by="carol").data


def test_a_rerun_after_a_stop_says_so_and_whether_it_goes_beyond_max_attempts() -> None:
    intent = make_intent()
    common = {"trace_id": "tr", "timestamp": "now", "requested_by": "dora", "reason": "retry"}
    plain = rerun_requested_entry(intent, attempt=2, after_stop=None, beyond_max_attempts=True, **common)
    assert plain.data == {
        "action_intent_id": intent.action_intent_id,
        "requested_by": "dora",
        "reason": "retry",
    }
    assert (plain.attempt, plain.entry_id) == (2, f"{intent.action_intent_id}#2#RERUN_REQUESTED")
    stopped = rerun_requested_entry(
        intent, attempt=3, after_stop="KILL_SWITCH_ENABLED", beyond_max_attempts=False, **common
    )
    assert stopped.data["after_stop"] == "KILL_SWITCH_ENABLED"
    assert stopped.data["beyond_max_attempts"] is False


def test_each_refusal_of_an_event_is_its_own_ledger_entry() -> None:
    def refused(at: str) -> LedgerEntry:
        return event_rejected_entry(
            tenant_id="t1",
            account_id="acc-1",
            action_intent_id="ai_1",
            event_tenant_id="t2",
            code="TENANT_MISMATCH",
            message="the event names another tenant",
            fingerprint_of=f"event|TENANT_MISMATCH|{at}|t1",
            timestamp=at,
        )

    first, again, later = (
        refused("2026-01-01T00:00:00Z"),
        refused("2026-01-01T00:00:00Z"),
        refused("2026-01-01T00:00:01Z"),
    )
    assert first == again  # the same refusal written twice is one fact
    assert first.entry_id != later.entry_id
    assert first.entry_id.startswith("ai_1#0#EVENT_REJECTED#")
    assert first.event_type == "EVENT_REJECTED"
    assert first.tenant_id == "t1"
    assert first.data == {
        "reason": "TENANT_MISMATCH",
        "message": "the event names another tenant",
        "event_tenant_id": "t2",
        "event_account_id": "acc-1",
    }
