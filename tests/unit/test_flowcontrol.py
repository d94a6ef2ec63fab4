"""The flow control rules: rate windows, concurrency, the circuit breaker's states, input checks."""

from __future__ import annotations

from typing import Any

import pytest

from fulfill.domain.errors import ErrorClass, ExecutionError
from fulfill.domain.flowcontrol import (
    Admit,
    CallResult,
    Circuit,
    CircuitPolicy,
    CircuitState,
    ConnectorLimits,
    RateWindow,
    Wait,
    WaitReason,
    admitted,
    after_call,
    concurrency_problem,
    connector_of,
    decide,
    rate_problem,
)
from fulfill.domain.ports import ToolCallOutcome
from fulfill.engine.flow import call_result

POLICY = CircuitPolicy(failure_threshold=3, window_seconds=10, cooldown_seconds=30)
NOW = 1_000.0


def ask(
    limits: ConnectorLimits,
    *,
    circuit: Circuit | None = None,
    in_flight: int = 0,
    not_sent: int = 0,
    sends: list[float] | None = None,
    margin: float = 0.05,
    now: float = NOW,
) -> Admit | Wait:
    return decide(
        now=now,
        limits=limits,
        circuit=circuit or Circuit(),
        policy=POLICY,
        in_flight=in_flight,
        not_sent=not_sent,
        recent_sends=sends or [],
        margin=margin,
    )


def test_a_connector_is_the_part_of_a_tool_name_before_the_first_dot() -> None:
    assert connector_of("internal.create_task") == "internal"
    assert connector_of("tickets.issues.create") == "tickets"
    assert connector_of("bare") == "bare"


@pytest.mark.parametrize(
    ("rate", "window"),
    [(5, RateWindow(5, 1.0)), (1, RateWindow(1, 1.0)), (0.5, RateWindow(1, 2.0)), (0.1, RateWindow(1, 10.0))],
)
def test_rate_windows(rate: float, window: RateWindow) -> None:
    assert ConnectorLimits(rate_per_second=rate).rate_window() == window


def test_no_limits_admit_everything() -> None:
    assert ConnectorLimits().unlimited
    assert ask(ConnectorLimits(), in_flight=10_000, sends=[NOW] * 100) == Admit(probe=False)


def test_concurrency_waits_until_a_call_finishes() -> None:
    limits = ConnectorLimits(concurrency=2)
    assert ask(limits, in_flight=1) == Admit(probe=False)
    assert ask(limits, in_flight=2) == Wait(WaitReason.CONCURRENCY, None)


def test_rate_counts_sends_within_the_period_plus_the_margin() -> None:
    limits = ConnectorLimits(rate_per_second=3)
    # Three sends within the last 1.05 s: wait until the oldest of them leaves the window.
    decision = ask(limits, sends=[NOW - 0.3, NOW - 0.5, NOW - 1.0])
    assert isinstance(decision, Wait)
    assert decision.reason is WaitReason.RATE
    assert decision.seconds == pytest.approx(0.05)
    # The oldest is just outside the window (1.05 s ago): room for one more.
    assert ask(limits, sends=[NOW - 0.9, NOW - 0.95, NOW - 1.05]) == Admit(probe=False)


def test_calls_admitted_and_not_sent_yet_count_as_sent_now() -> None:
    limits = ConnectorLimits(rate_per_second=2)
    assert ask(limits, not_sent=2) == Wait(WaitReason.RATE, None)
    decision = ask(limits, not_sent=1, sends=[NOW - 0.6])
    assert isinstance(decision, Wait)
    assert decision.seconds == pytest.approx(0.45)


def test_calls_of_a_window_are_spread_over_half_of_it() -> None:
    limits = ConnectorLimits(rate_per_second=10)
    # Room in the window, but the last call left 10 ms ago: the next waits for a twentieth of it.
    decision = ask(limits, sends=[NOW - 0.01])
    assert isinstance(decision, Wait)
    assert decision.seconds == pytest.approx(1.05 / 10 / 2 - 0.01)
    assert ask(limits, sends=[NOW - 0.06]) == Admit(probe=False)


def test_the_next_slot_is_the_later_of_the_window_and_the_spacing() -> None:
    limits = ConnectorLimits(rate_per_second=3)
    # The oldest send leaves the window in 0.05 s, but the latest left 0.1 s ago and the spacing
    # is a sixth of the window (0.175 s): the slot is the later of the two, in 0.075 s.
    decision = ask(limits, sends=[NOW - 0.1, NOW - 0.5, NOW - 1.0])
    assert decision == Wait(WaitReason.RATE, pytest.approx(0.075))


def test_a_call_whose_slot_is_within_the_lead_is_admitted_for_that_slot() -> None:
    limits = ConnectorLimits(rate_per_second=3)
    sends = [NOW - 0.3, NOW - 0.5, NOW - 1.0]  # the slot opens in 0.05 s

    def lead(seconds: float, **more: Any) -> Admit | Wait:
        return decide(
            now=NOW,
            limits=limits,
            circuit=Circuit(),
            policy=POLICY,
            in_flight=0,
            not_sent=0,
            recent_sends=sends,
            margin=0.05,
            lead=seconds,
            **more,
        )

    assert lead(0.1) == Admit(probe=False, at=pytest.approx(NOW + 0.05))
    assert lead(0.05) == Admit(probe=False, at=pytest.approx(NOW + 0.05))
    # Further than the lead: ask again once the slot is ``lead`` away.
    assert lead(0.02) == Wait(WaitReason.RATE, pytest.approx(0.03))
    # A free slot is now: nothing to wait for after the admission.
    sends = [NOW - 0.9, NOW - 0.95, NOW - 1.05]
    assert lead(0.1) == Admit(probe=False, at=None)
    # Calls not sent yet that fill the window by themselves: their slot is not known yet.
    assert decide(
        now=NOW,
        limits=limits,
        circuit=Circuit(),
        policy=POLICY,
        in_flight=0,
        not_sent=3,
        recent_sends=[],
        margin=0.05,
        lead=10.0,
    ) == Wait(WaitReason.RATE, None)


def test_calls_admitted_ahead_count_at_their_slot_so_the_next_keeps_its_spacing() -> None:
    limits = ConnectorLimits(rate_per_second=10)  # spacing 1.05 / 10 / 2 = 52.5 ms

    def after(planned: list[float]) -> Admit | Wait:
        return decide(
            now=NOW,
            limits=limits,
            circuit=Circuit(),
            policy=POLICY,
            in_flight=1,
            not_sent=1,
            recent_sends=[NOW - 0.5],
            margin=0.05,
            lead=0.1,
            planned=planned,
        )

    # The call not sent yet goes at NOW + 0.08 (admitted ahead): the next one 52.5 ms after it,
    # further than the lead, so it waits; counted as sent now it would go at NOW + 0.0525.
    assert after([NOW + 0.08]) == Wait(WaitReason.RATE, pytest.approx(0.08 + 0.0525 - 0.1))
    assert after([]) == Admit(probe=False, at=pytest.approx(NOW + 0.0525))
    # A slot already past counts as now.
    assert after([NOW - 1.0]) == Admit(probe=False, at=pytest.approx(NOW + 0.0525))


def test_the_lead_admits_nothing_the_concurrency_or_the_circuit_holds() -> None:
    limits = ConnectorLimits(rate_per_second=3, concurrency=1)
    full = decide(
        now=NOW,
        limits=limits,
        circuit=Circuit(),
        policy=POLICY,
        in_flight=1,
        not_sent=0,
        recent_sends=[],
        margin=0.05,
        lead=10.0,
    )
    assert full == Wait(WaitReason.CONCURRENCY, None)
    opened = Circuit(state=CircuitState.OPEN, failures=3, opened_at=NOW - 1)
    held = decide(
        now=NOW,
        limits=limits,
        circuit=opened,
        policy=POLICY,
        in_flight=0,
        not_sent=0,
        recent_sends=[],
        margin=0.05,
        lead=10.0,
    )
    assert held == Wait(WaitReason.CIRCUIT_OPEN, pytest.approx(29.0))


def test_a_fractional_rate_is_one_call_per_period() -> None:
    limits = ConnectorLimits(rate_per_second=0.5)
    decision = ask(limits, sends=[NOW - 1.0])
    assert isinstance(decision, Wait)
    assert decision.seconds == pytest.approx(1.05)
    assert ask(limits, sends=[NOW - 2.1]) == Admit(probe=False)


def test_failures_in_a_row_open_the_circuit() -> None:
    circuit = Circuit()
    for second in range(3):
        assert circuit.state is CircuitState.CLOSED
        circuit = after_call(circuit, CallResult.FAILED, call_id="c", now=NOW + second, policy=POLICY)
    assert circuit.state is CircuitState.OPEN
    assert (circuit.failures, circuit.opened_at) == (3, NOW + 2)


def test_an_answer_resets_the_count_and_old_failures_leave_the_window() -> None:
    circuit = after_call(Circuit(), CallResult.FAILED, call_id="a", now=NOW, policy=POLICY)
    circuit = after_call(circuit, CallResult.FAILED, call_id="b", now=NOW + 1, policy=POLICY)
    assert after_call(circuit, CallResult.ANSWERED, call_id="c", now=NOW + 2, policy=POLICY) == Circuit()
    # The third failure comes 11 s after the first: the window starts again.
    later = after_call(circuit, CallResult.FAILED, call_id="d", now=NOW + 11, policy=POLICY)
    assert (later.state, later.failures, later.window_started) == (CircuitState.CLOSED, 1, NOW + 11)


def test_a_call_not_made_teaches_nothing() -> None:
    circuit = after_call(Circuit(), CallResult.FAILED, call_id="a", now=NOW, policy=POLICY)
    assert after_call(circuit, CallResult.NOT_MADE, call_id="b", now=NOW + 1, policy=POLICY) == circuit


def test_an_open_circuit_waits_out_its_cool_down_then_lets_one_probe_through() -> None:
    opened = Circuit(state=CircuitState.OPEN, failures=3, opened_at=NOW)
    assert ask(ConnectorLimits(), circuit=opened, now=NOW + 10) == Wait(WaitReason.CIRCUIT_OPEN, 20.0)
    decision = ask(ConnectorLimits(), circuit=opened, now=NOW + 30)
    assert decision == Admit(probe=True)
    probing = admitted(opened, decision, call_id="probe", now=NOW + 30, lease_seconds=20)
    assert (probing.state, probing.probe_call_id, probing.probe_until) == (
        CircuitState.HALF_OPEN,
        "probe",
        NOW + 50,
    )
    # Everyone else waits for the probe.
    assert ask(ConnectorLimits(), circuit=probing, now=NOW + 31) == Wait(WaitReason.CIRCUIT_PROBE, None)
    # A probe whose process died (its lease ran out) is replaced by the next call.
    assert ask(ConnectorLimits(), circuit=probing, now=NOW + 51) == Admit(probe=True)


def test_the_probe_decides() -> None:
    probing = Circuit(
        state=CircuitState.HALF_OPEN, failures=3, opened_at=NOW, probe_call_id="probe", probe_until=NOW + 50
    )
    assert after_call(probing, CallResult.ANSWERED, call_id="probe", now=NOW + 31, policy=POLICY) == Circuit()
    reopened = after_call(probing, CallResult.FAILED, call_id="probe", now=NOW + 31, policy=POLICY)
    assert (reopened.state, reopened.opened_at, reopened.probe_call_id) == (CircuitState.OPEN, NOW + 31, None)
    # Stopped before it was made: open again, already cooled down, so the next call probes.
    unmade = after_call(probing, CallResult.NOT_MADE, call_id="probe", now=NOW + 31, policy=POLICY)
    assert (unmade.state, unmade.opened_at) == (CircuitState.OPEN, NOW)
    assert ask(ConnectorLimits(), circuit=unmade, now=NOW + 31) == Admit(probe=True)
    # Answers of calls admitted before the circuit opened do not close it.
    assert after_call(probing, CallResult.ANSWERED, call_id="late", now=NOW + 31, policy=POLICY) == probing


def test_a_threshold_of_zero_turns_the_breaker_off() -> None:
    off = CircuitPolicy(failure_threshold=0, window_seconds=10, cooldown_seconds=30)
    circuit = Circuit()
    for _ in range(10):
        circuit = after_call(circuit, CallResult.FAILED, call_id="c", now=NOW, policy=off)
    assert circuit.state is CircuitState.CLOSED


def test_the_circuit_is_checked_before_the_limits() -> None:
    opened = Circuit(state=CircuitState.OPEN, failures=3, opened_at=NOW)
    decision = ask(ConnectorLimits(concurrency=1), circuit=opened, in_flight=5, now=NOW + 1)
    assert isinstance(decision, Wait)
    assert decision.reason is WaitReason.CIRCUIT_OPEN


@pytest.mark.parametrize("rate", [0.001, 0.5, 0.999, 1, 2, 10_000])
def test_good_rates(rate: float) -> None:
    assert rate_problem(rate) is None


@pytest.mark.parametrize("rate", [0, -1, 0.0001, 1.5, 2.5, 10_001, float("inf"), float("nan")])
def test_bad_rates(rate: float) -> None:
    assert rate_problem(rate)


@pytest.mark.parametrize(("concurrency", "ok"), [(1, True), (10_000, True), (0, False), (10_001, False)])
def test_concurrency_bounds(concurrency: int, ok: bool) -> None:
    assert (concurrency_problem(concurrency) is None) is ok


def _error(error_class: ErrorClass) -> ToolCallOutcome:
    return ToolCallOutcome(
        success=False, error=ExecutionError(error_class=error_class, error_code="X", error_message="x")
    )


def test_what_an_answer_says_about_the_target() -> None:
    assert call_result(ToolCallOutcome(success=True)) is CallResult.ANSWERED
    assert call_result(_error(ErrorClass.VALIDATION)) is CallResult.ANSWERED  # a business error
    assert call_result(_error(ErrorClass.AUTH)) is CallResult.ANSWERED
    for trouble in (ErrorClass.DOWNSTREAM, ErrorClass.RATE_LIMIT, ErrorClass.TIMEOUT):
        assert call_result(_error(trouble)) is CallResult.FAILED
    # A timeout the execution's own budget imposed is not the target's fault.
    assert call_result(_error(ErrorClass.TIMEOUT), timeout_cut_by_budget=True) is CallResult.NOT_MADE
    assert call_result(_error(ErrorClass.DOWNSTREAM), timeout_cut_by_budget=True) is CallResult.FAILED
