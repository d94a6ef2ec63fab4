"""The console's dashboard against a real service on SQLite and PostgreSQL: every figure matches
what was written to the store (percentiles computed here independently), every figure belongs
to the viewer's tenant (a platform admin sees all, or the tenant it picks), and the window is
``1h``, ``24h`` or ``7d`` only."""

from __future__ import annotations

import math
import re

import pytest

from fulfill.store.tables import action_intents
from fulfill.tokens import Principal
from fulfill.usecases.dashboard import Dashboard, read_dashboard
from fulfill.usecases.errors import Forbidden, Invalid
from tests.support.console import Console
from tests.support.dashboard_seed import Seeded, seed_two_tenants
from tests.support.harness import Harness


def nearest_rank(values: list[float], q: float) -> float:
    """The percentile as the docs define it, computed here without the service's code."""
    ordered = sorted(values)
    rank = math.ceil(q * len(ordered))
    return ordered[rank - 1]


@pytest.fixture
def seeded(harness: Harness) -> tuple[Harness, dict[str, Seeded], dict[str, list[str]]]:
    data, special = seed_two_tenants(harness)
    return harness, data, special


def board_of(harness: Harness, principal: Principal, **kwargs: str | None) -> Dashboard:
    return read_dashboard(harness.service.runtime, principal, **kwargs)


def user(tenant: str, *scopes: str, accounts: frozenset[str] | None = None) -> Principal:
    return Principal(
        subject="viewer", tenant_id=tenant, scopes=frozenset(scopes or ["intents:read"]), account_ids=accounts
    )


def status_counts(board: Dashboard) -> dict[str, int]:
    totals: dict[str, int] = {}
    for bucket in board.buckets:
        for status, n in bucket.counts.items():
            if n:
                totals[status] = totals.get(status, 0) + n
    return totals


def test_every_figure_matches_the_store_for_the_tenant(
    seeded: tuple[Harness, dict[str, Seeded], dict[str, list[str]]],
) -> None:
    harness, data, special = seeded
    t1 = data["t1"]
    board = board_of(harness, user("t1", "intents:read", "executions:read"))
    assert board.tenant_id == "t1"
    assert len(board.buckets) in (60, 61)  # one-minute bars over the hour
    assert status_counts(board) == t1.statuses_1h
    assert board.failures == t1.failures_1h
    assert board.approval_wait.count == len(t1.waits_1h)
    assert board.approval_wait.p50 == pytest.approx(nearest_rank(t1.waits_1h, 0.5), abs=0.002)
    assert board.approval_wait.p95 == pytest.approx(nearest_rank(t1.waits_1h, 0.95), abs=0.002)
    assert board.approval_to_outcome.count == len(t1.approval_to_outcome_1h)
    assert board.approval_to_outcome.p95 == pytest.approx(
        nearest_rank(t1.approval_to_outcome_1h, 0.95), abs=0.002
    )
    assert not board.approval_wait.sampled
    figures = {figure.connector: figure for figure in board.connectors}
    assert set(figures) == set(t1.tool_1h)
    for connector, runs in t1.tool_1h.items():
        retried = t1.retried_1h.get(connector, 0)
        assert figures[connector].calls == len(runs) + retried
        assert figures[connector].errors == t1.tool_errors_1h.get(connector, 0) + retried
        assert figures[connector].latency.p95 == pytest.approx(nearest_rank(runs, 0.95), abs=0.002)
    # four waiting; a fifth PENDING_APPROVAL one is past its expiry and waits for nobody
    assert harness.count(action_intents, tenant_id="t1", approval_status="PENDING_APPROVAL") == 5
    assert [age.count for age in board.pending] == [1, 1, 1, 1]
    assert board.oldest_pending is not None
    assert [item.action_intent_id for item in board.stuck.items] == special["stuck"]
    assert board.stuck.count == 1
    assert [item.action_intent_id for item in board.unknown.items] == special["unknown"]
    assert [item.action_intent_id for item in board.compensations.items] == special["compensation"]
    assert board.dead_letters == 1
    assert board.switches.stopped_tenants == []
    assert not board.switches.global_stop


def test_a_longer_window_counts_what_the_hour_leaves_out(
    seeded: tuple[Harness, dict[str, Seeded], dict[str, list[str]]],
) -> None:
    harness, data, _ = seeded
    day = board_of(harness, user("t1"), window="24h")
    assert day.window.value == "24h"
    assert len(day.buckets) in (96, 97)  # 15-minute bars
    assert status_counts(day) == data["t1"].statuses_24h
    assert day.failures["AUTH"] == 1
    week = board_of(harness, user("t1"), window="7d")
    assert len(week.buckets) in (168, 169)
    # the one recorded 8 days ago is in no window
    assert week.executions == sum(data["t1"].statuses_24h.values())


def test_each_tenant_sees_only_its_own_figures(
    seeded: tuple[Harness, dict[str, Seeded], dict[str, list[str]]],
) -> None:
    harness, data, special = seeded
    t2 = data["t2"]
    for scopes in (["intents:read"], ["admin"], ["executions:read", "intents:approve"]):
        board = board_of(harness, user("t2", *scopes))
        assert board.tenant_id == "t2"
        assert status_counts(board) == t2.statuses_1h
        assert board.failures == {"RATE_LIMIT": 1}
        assert board.approval_wait.p95 == pytest.approx(nearest_rank(t2.waits_1h, 0.95), abs=0.002)
        assert [figure.connector for figure in board.connectors] == ["mail"]
        assert [age.count for age in board.pending] == [1, 0, 0, 0]
        assert board.stuck.count == board.unknown.count == board.compensations.count == 0
        assert board.dead_letters == 2
        assert board.switches.stopped_tenants == ["t2"]
        assert board.tenants == []  # no tenant list for a tenant's user
    # asking for another tenant is refused, whatever the tenant scopes
    with pytest.raises(Forbidden) as refused:
        board_of(harness, user("t2", "admin", "intents:read"), tenant="t1")
    assert refused.value.code == "TENANT_NOT_ALLOWED"
    # its own tenant named explicitly is fine
    assert board_of(harness, user("t2"), tenant="t2").tenant_id == "t2"
    del special


def test_a_token_limited_to_some_accounts_sees_only_those(
    seeded: tuple[Harness, dict[str, Seeded], dict[str, list[str]]],
) -> None:
    harness, data, _ = seeded
    everything = board_of(harness, user("t1"))
    only_acc2 = board_of(harness, user("t1", accounts=frozenset({"acc-2"})))
    # the plan put every odd execution on acc-2: 7 of the 14 in the hour
    assert only_acc2.executions == 7
    assert everything.executions == sum(data["t1"].statuses_1h.values())
    assert only_acc2.pending_total == 0  # every pending one is on acc-1
    assert only_acc2.stuck.count == 0
    assert only_acc2.dead_letters is None  # the outbox has no accounts: not shown


def test_a_platform_admin_sees_every_tenant_or_the_one_it_picks(
    seeded: tuple[Harness, dict[str, Seeded], dict[str, list[str]]],
) -> None:
    harness, data, _ = seeded
    admin = user("t1", "platform:admin")
    everyone = board_of(harness, admin)
    assert everyone.tenant_id is None
    assert {"t1", "t2"} <= set(everyone.tenants)
    both = {
        status: data["t1"].statuses_1h.get(status, 0) + data["t2"].statuses_1h.get(status, 0)
        for status in set(data["t1"].statuses_1h) | set(data["t2"].statuses_1h)
    }
    assert status_counts(everyone) == both
    assert everyone.approval_wait.p95 == pytest.approx(
        nearest_rank(data["t1"].waits_1h + data["t2"].waits_1h, 0.95), abs=0.002
    )
    assert everyone.dead_letters == 3
    assert everyone.pending_total == 5
    assert everyone.switches.stopped_tenants == ["t2"]
    only_t2 = board_of(harness, admin, tenant="t2")
    assert only_t2.tenant_id == "t2"
    assert status_counts(only_t2) == data["t2"].statuses_1h
    assert only_t2.dead_letters == 2
    with pytest.raises(Invalid):
        board_of(harness, admin, tenant="../t1")


@pytest.mark.parametrize("window", ["2h", "1H", "24", "7days", "-1h", "1h ", "x" * 300])
def test_a_window_other_than_1h_24h_7d_is_refused(harness: Harness, window: str) -> None:
    with pytest.raises(Invalid) as refused:
        board_of(harness, user("t1"), window=window)
    assert refused.value.code == "INVALID_WINDOW"
    console = Console(harness).login(scopes=["intents:read"])
    try:
        page = console.get("/console/dashboard", params={"window": window})
        assert page.status_code == 422
        assert "1h, 24h, 7d" in page.text
    finally:
        console.close()


def test_without_a_console_scope_the_dashboard_is_refused(harness: Harness) -> None:
    with pytest.raises(Forbidden):
        board_of(harness, Principal(subject="x", tenant_id="t1", scopes=frozenset({"intents:propose"})))


def _count(page: str, tile: str) -> int:
    match = re.search(rf'id="{tile}-tile".*?data-count="(\d+)"', page, re.S)
    assert match, tile
    return int(match.group(1))


def test_the_console_opens_on_the_dashboard_and_shows_the_tenants_figures(
    seeded: tuple[Harness, dict[str, Seeded], dict[str, list[str]]],
) -> None:
    harness, data, special = seeded
    console = Console(harness).login(tenant="t1", scopes=["intents:read", "executions:read"])
    try:
        first = console.get("/console/")
        assert first.status_code == 303
        assert first.headers["location"] == "/console/dashboard"
        page = console.get("/console/dashboard")
        assert page.status_code == 200
        text = page.text
        assert "Executions running" in text
        assert _count(text, "pending") == 4
        assert _count(text, "stuck") == 1
        assert _count(text, "unknown") == 1
        assert _count(text, "dead") == 1
        # links to the tenant's own executions, and the approvals page still in the nav
        assert f'href="/console/executions/{special["stuck"][0]}"' in text
        assert 'href="/console/approvals"' in text
        assert "<svg" in text
        assert "<script" not in text.split("<main", 1)[1]
        for intent_id in data["t2"].intent_ids:
            assert intent_id not in text
        assert "mail" not in re.sub(r"<[^>]+>", " ", text).split()  # t2's connector
        # the other tenant's banner: stopped
        other = Console(harness).login(tenant="t2", scopes=["admin"])
        try:
            theirs = other.get("/console/dashboard").text
            assert "STOPPED" in theirs
            assert "t2" in theirs
            assert _count(theirs, "dead") == 2
            for intent_id in data["t1"].intent_ids:
                assert intent_id not in theirs
            assert other.get("/console/dashboard", params={"tenant": "t1"}).status_code == 403
        finally:
            other.close()
    finally:
        console.close()


def test_the_platform_admin_filter_in_the_console(
    seeded: tuple[Harness, dict[str, Seeded], dict[str, list[str]]],
) -> None:
    harness, _, _ = seeded
    console = Console(harness).login(tenant="t1", scopes=["platform:admin"])
    try:
        everyone = console.get("/console/dashboard").text
        assert 'id="tenant-filter"' in everyone
        assert _count(everyone, "dead") == 3
        assert _count(everyone, "pending") == 5
        only_t2 = console.get("/console/dashboard", params={"tenant": "t2", "window": "24h"}).text
        assert _count(only_t2, "dead") == 2
        assert _count(only_t2, "pending") == 1
        assert 'aria-current="page">24 hours' in only_t2
    finally:
        console.close()
