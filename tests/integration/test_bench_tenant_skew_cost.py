"""``bench.tenant_skew_cost``: on the suite's database (SQLite, or PostgreSQL on its pass), every
read of the small tenant is timed at each of the other tenant's backlogs, and finds the same
answer whatever that backlog."""

from __future__ import annotations

from pathlib import Path

from bench.tenant_skew_cost import _reads, measure

from tests.support.harness import fresh_database_url


def test_every_read_is_timed_and_sees_only_its_tenant(tmp_path: Path) -> None:
    result = measure(fresh_database_url(tmp_path), [0, 60], small=40, calls=3)
    assert result["changed"] == []
    assert set(result["reads"]) == set(_reads())
    assert set(result["own_reads"]) == set(_reads())
    for timed in [*result["reads"].values(), *result["own_reads"].values()]:
        assert set(timed) == {"0", "60"}
        assert all(median > 0 for median in timed.values())
