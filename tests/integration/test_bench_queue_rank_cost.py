"""``bench.queue_rank_cost``: on the suite's database (SQLite, or PostgreSQL on its pass), each
tenant's count is what is in flight, the greedy tenant's stops at the queue's last rank, and every
count is timed."""

from __future__ import annotations

from pathlib import Path

from bench.queue_rank_cost import measure

from fulfill.domain.fairness import MAX_QUEUE_PRIORITY
from tests.support.harness import fresh_database_url


def test_each_tenant_is_counted_up_to_the_last_rank_and_timed(tmp_path: Path) -> None:
    backlogs = [0, 10, MAX_QUEUE_PRIORITY + 5]
    rows = measure(fresh_database_url(tmp_path), backlogs, history=20, calls=20)
    assert [row["greedy_backlog"] for row in rows] == backlogs
    assert [row["small_tenant"]["counted"] for row in rows] == [3, 3, 3]
    assert [row["greedy_tenant"]["counted"] for row in rows] == [0, 10, MAX_QUEUE_PRIORITY]
    for row in rows:
        for tenant in ("small_tenant", "greedy_tenant"):
            assert 0 < row[tenant]["p50_us"] <= row[tenant]["p95_us"]
            assert row[tenant]["cpu_us_per_count"] > 0
