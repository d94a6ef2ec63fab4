"""``bench.sqlite_writers``: both ways of waiting for a SQLite file's writer write every
transaction once, and the lock is the one ``queue_sqlite_writers`` puts on the engine."""

from __future__ import annotations

import pytest
from bench import sqlite_writers

from fulfill.store import db

pytestmark = pytest.mark.backend_free


@pytest.mark.parametrize("queued", [False, True])
def test_every_transaction_is_written_once_and_timed(queued: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    engines: list[object] = []
    queue = db.queue_sqlite_writers

    def counted(engine: object, lock: object = None) -> object:
        engines.append(engine)
        return queue(engine)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_writers, "queue_sqlite_writers", counted)
    result = sqlite_writers.run(threads=4, transactions=10, queued=queued)
    assert result["queued_on_a_lock"] is queued
    assert result["transactions"] == 40
    assert result["rows_written_once"] is True
    assert result["per_second"] > 0
    assert 0 < result["wait_ms"]["p50"] <= result["wait_ms"]["p95"] <= result["wait_ms"]["max"]
    assert len(engines) == (1 if queued else 0)
