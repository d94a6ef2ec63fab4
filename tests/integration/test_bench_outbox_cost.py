"""``bench.outbox_cost``: every message is delivered, and the relay's own statements and commits
are counted per message and per idle second (the benchmark's loop's reads are not)."""

from __future__ import annotations

from pathlib import Path

from bench.outbox_cost import run

from tests.support import postgres
from tests.support.harness import service_database_url


def test_the_relay_delivers_every_message_and_its_writes_are_counted(tmp_path: Path) -> None:
    url = service_database_url(tmp_path)
    try:
        result = run(messages=12, idle=0.5, database_url=url)
    finally:
        if postgres.is_postgres_url(url):
            postgres.drop_database(url)
    assert result["delivered"] == 12
    assert result["backend"] == postgres.backend_name()
    # Each delivery's result is one commit of the relay's; its claims add a few more.
    assert 1.0 <= result["commits_per_message"] < 2.0
    assert result["statements_per_message"] >= 1.0
    assert result["idle_seconds"] == 0.5
