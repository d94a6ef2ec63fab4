"""Fair share of a connector between tenants: round robin across tenants, first come first served
within one, tenants held by their own cap skipped. Property-style checks run a simulated line
over many random backlogs (seeded, so a failure repeats)."""

from __future__ import annotations

import random

import pytest

from fulfill.domain.fairness import MAX_QUEUE_PRIORITY, Waiter, next_in_line, queue_priority, tenant_decision
from fulfill.domain.flowcontrol import Admit, ConnectorLimits, Wait, WaitReason


def backlog(tenant: str, count: int, *, start: float = 0.0) -> list[Waiter]:
    return [Waiter(f"{tenant}-{index:04d}", tenant, start + index * 0.001) for index in range(count)]


def serve(line: list[Waiter], slots: int, last: dict[str, float] | None = None) -> list[Waiter]:
    """Admit ``slots`` calls one after the other, as the engine does, slot i at time 100 + i."""
    waiting = list(line)
    last = dict(last or {})
    order: list[Waiter] = []
    for slot in range(slots):
        turn = next_in_line(waiting, last)
        if turn is None:
            break
        order.append(turn)
        waiting.remove(turn)
        last[turn.tenant_id] = 100.0 + slot
    return order


def test_a_single_call_of_another_tenant_goes_before_a_long_backlog() -> None:
    # Tenant A has 300 calls waiting and has just been served; B's one call arrived last.
    line = [*backlog("A", 300), Waiter("B-0", "B", 50.0)]
    order = serve(line, 3, last={"A": 99.0})
    assert order[0].waiter_id == "B-0"
    assert [waiter.tenant_id for waiter in order[1:]] == ["A", "A"]


def test_tenants_take_turns_and_each_tenant_keeps_its_own_order() -> None:
    line = backlog("A", 5) + backlog("B", 3, start=1.0) + backlog("C", 1, start=2.0)
    order = serve(line, 9)
    assert [waiter.tenant_id for waiter in order] == ["A", "B", "C", "A", "B", "A", "B", "A", "A"]
    for tenant in "AB":
        ids = [waiter.waiter_id for waiter in order if waiter.tenant_id == tenant]
        assert ids == sorted(ids)  # first come, first served within a tenant


def test_a_tenant_never_served_recently_goes_first_and_ties_go_to_the_longest_waiting() -> None:
    line = [Waiter("a", "A", 5.0), Waiter("b", "B", 3.0), Waiter("c", "C", 4.0)]
    assert next_in_line(line, {"A": 1.0}) == Waiter("b", "B", 3.0)  # B and C never served: B waits longer
    assert next_in_line(line, {"A": 1.0, "B": 2.0, "C": 0.5}) == Waiter("c", "C", 4.0)


def test_a_tenant_held_by_its_own_cap_is_skipped_and_blocks_nobody() -> None:
    line = [*backlog("A", 3), Waiter("b", "B", 9.0)]
    assert next_in_line(line, {}, held={"A"}) == Waiter("b", "B", 9.0)
    assert next_in_line(backlog("A", 3), {}, held={"A"}) is None
    assert next_in_line([], {}) is None


@pytest.mark.parametrize("seed", range(40))
def test_property_no_call_waits_more_than_one_slot_per_other_tenant_ahead_of_it(seed: int) -> None:
    """Whatever the backlogs, a call that is its tenant's oldest waits for at most one slot per
    other tenant waiting (plus its own), and the answer does not depend on the order the line is
    read in (every process must agree on it)."""
    rng = random.Random(seed)
    tenants = [f"t{index}" for index in range(rng.randint(2, 8))]
    line: list[Waiter] = []
    for tenant in tenants:
        line += backlog(tenant, rng.randint(1, 40), start=rng.uniform(0, 10))
    last = {tenant: rng.uniform(0, 99) for tenant in tenants if rng.random() < 0.7}
    shuffled = list(line)
    rng.shuffle(shuffled)
    assert next_in_line(shuffled, last) == next_in_line(line, last)
    order = serve(line, len(line), last)
    assert sorted(waiter.waiter_id for waiter in order) == sorted(waiter.waiter_id for waiter in line)
    position = {waiter.waiter_id: slot for slot, waiter in enumerate(order)}
    for tenant in tenants:
        mine = [waiter for waiter in order if waiter.tenant_id == tenant]
        # The k-th call of a tenant is served within k rounds of every tenant.
        for k, waiter in enumerate(mine):
            assert position[waiter.waiter_id] < (k + 1) * len(tenants)


def test_a_tenant_cap_follows_the_connector_rules_for_that_tenant_alone() -> None:
    cap = ConnectorLimits(rate_per_second=None, concurrency=2)
    verdict = tenant_decision(now=10.0, cap=cap, in_flight=2, not_sent=0, recent_sends=[], margin=0.05)
    assert verdict == Wait(WaitReason.CONCURRENCY, None)
    assert isinstance(
        tenant_decision(now=10.0, cap=cap, in_flight=1, not_sent=0, recent_sends=[], margin=0.05), Admit
    )
    rate = ConnectorLimits(rate_per_second=1, concurrency=None)
    verdict = tenant_decision(now=10.0, cap=rate, in_flight=0, not_sent=0, recent_sends=[9.5], margin=0.05)
    assert isinstance(verdict, Wait)
    assert verdict.reason is WaitReason.RATE
    assert verdict.seconds == pytest.approx(0.55)


def test_the_queue_priority_is_the_rank_among_the_tenants_active_executions() -> None:
    assert [queue_priority(rank) for rank in (0, 1, 2, 300)] == [1, 1, 2, 300]
    assert queue_priority(10**12) == MAX_QUEUE_PRIORITY  # within what the queue accepts
    # A tenant's 300th waits behind another tenant's first; their firsts go oldest first.
    assert (
        sorted([("A", queue_priority(300)), ("B", queue_priority(1))], key=lambda item: item[1])[0][0] == "B"
    )
