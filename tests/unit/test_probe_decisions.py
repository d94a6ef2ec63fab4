"""Reconcile probes: the pure decision (``domain/probes.decide``) and how a lookup tool's answer is
read (``gateway/lookups.probe_result_of``)."""

from __future__ import annotations

import pytest

from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.models import ExternalObjectRef
from fulfill.domain.ports import ToolCallOutcome
from fulfill.domain.probes import (
    Absent,
    Commit,
    Found,
    HandOver,
    Inconclusive,
    ProbeHistory,
    ProbeResult,
    Resend,
    Undeclared,
    Wait,
    backoff_seconds,
    decide,
    decided_by,
)
from fulfill.gateway.lookups import ActionLookups, probe_result_of

REF = ExternalObjectRef(system="MCP:tickets", object_type="Ticket", object_id="T-1")
NOW = 1_000_000.0


def decision(result: ProbeResult, **history: object) -> object:
    return decide(
        result,
        ProbeHistory(**history),  # type: ignore[arg-type]
        now=NOW,
        interval_seconds=60.0,
        max_backoff_seconds=600.0,
    )


def test_found_commits_with_the_refs_it_found() -> None:
    assert decision(Found((REF,))) == Commit((REF,))
    # Found, whatever came before and even while a kill switch is on: nothing is sent.
    assert decision(Found((REF,)), probes=7, resent_before=True, stopped=True) == Commit((REF,))


def test_found_without_refs_is_not_a_resolution() -> None:
    assert isinstance(decision(Found(())), Wait)


def test_absent_resends_once() -> None:
    assert decision(Absent()) == Resend()
    handed = decision(Absent(), resent_before=True)
    assert isinstance(handed, HandOver)
    assert handed.next_probe_epoch == NOW + 600.0


def test_absent_under_a_kill_switch_waits_instead_of_resending() -> None:
    waited = decision(Absent(), probes=1, stopped=True)
    assert isinstance(waited, Wait)
    assert waited.next_probe_epoch == NOW + 120.0
    assert "kill switch" in waited.reason


@pytest.mark.parametrize(
    ("probes", "pause"), [(0, 60.0), (1, 120.0), (2, 240.0), (3, 480.0), (4, 600.0), (50, 600.0)]
)
def test_inconclusive_waits_with_a_backoff_that_doubles_up_to_the_maximum(probes: int, pause: float) -> None:
    waited = decision(Inconclusive("timeout"), probes=probes)
    assert waited == Wait(NOW + pause, "inconclusive: timeout")
    assert backoff_seconds(probes + 1, interval_seconds=60.0, max_backoff_seconds=600.0) == pause


def test_no_lookup_hands_over_to_a_person() -> None:
    handed = decision(Undeclared("no lookup_tool"))
    assert handed == HandOver(NOW + 600.0, "no lookup_tool")


def test_the_decider_names_the_connector() -> None:
    assert decided_by("tickets") == "probe:tickets"


def _failure(code: str) -> ToolCallOutcome:
    return ToolCallOutcome(
        success=False,
        error=ExecutionError(error_class=ErrorClass.VALIDATION, error_code=code, error_message="m"),
    )


def test_a_lookup_answer_in_the_declared_shape() -> None:
    assert probe_result_of(ToolCallOutcome(success=True, external_object_refs=[REF])) == Found((REF,))
    assert probe_result_of(_failure("TARGET:NOT_FOUND")) == Absent()


@pytest.mark.parametrize(
    "answer",
    [
        # A success whose refs are the gateway's fallback ref to the call itself: nothing found.
        ToolCallOutcome(success=True, external_object_refs=[REF], refs_note="no external_object_refs"),
        ToolCallOutcome(success=True),
        _failure("TARGET:UNAVAILABLE"),
        _failure("NOT_FOUND"),  # fulfill's own code, not the target's answer
        _failure("TARGET:NOT_FOUND_OR_MAYBE"),
        _failure("UNKNOWN_OUTCOME"),
        _failure("RESPONSE_TOO_LARGE"),
        ToolCallOutcome(success=False),
    ],
)
def test_any_other_answer_is_inconclusive_never_absent(answer: ToolCallOutcome) -> None:
    assert isinstance(probe_result_of(answer), Inconclusive)


class _Raising:
    def lookup(self, **_: object) -> ProbeResult:
        raise RuntimeError("boom")


class _Gateway:
    def __init__(self) -> None:
        self.calls = 0

    def call_tool(self, **_: object) -> ToolCallOutcome:
        self.calls += 1
        return ToolCallOutcome(success=True, external_object_refs=[REF])


def test_a_connector_lookup_that_raises_is_inconclusive_and_an_unknown_namespace_undeclared() -> None:
    gateway = _Gateway()
    lookups = ActionLookups({"internal": _Raising()}, None, gateway)
    args = {
        "tenant_id": "t1",
        "account_id": "acc-1",
        "action_intent_id": "ai-1",
        "idempotency_key": "k" * 64,
        "timeout_seconds": 1.0,
    }
    assert isinstance(lookups.lookup(tool_name="internal.create_task", **args), Inconclusive)  # type: ignore[arg-type]
    assert isinstance(lookups.lookup(tool_name="tickets.create_ticket", **args), Undeclared)  # type: ignore[arg-type]
    assert gateway.calls == 0
