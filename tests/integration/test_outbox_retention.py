"""The outbox's retention (``store/outbox.delete_delivered``, ``engine/retention.py``): deliveries an
external destination accepted more than ``FULFILL_OUTBOX_RETENTION_DAYS`` ago are deleted, and a
message once it has no delivery left. What is still pending, what was given up (a person may
redeliver it), what was accepted since, and the engine's own messages stay. SQLite, and
PostgreSQL on its pass: the store's statements on a fresh database, the pass through a real
service that delivers its signals to a webhook receiver on 127.0.0.1.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from fulfill.domain.outbox import ENGINE_DESTINATION
from fulfill.domain.time import iso_from_epoch
from fulfill.engine.reconciler import reconcile_once
from fulfill.engine.retention import delete_delivered_messages
from fulfill.store import outbox
from fulfill.store.db import Database
from fulfill.store.tables import outbox_deliveries, outbox_messages
from tests.support.harness import Harness, fresh_database, make_settings
from tests.support.http_doubles import WebhookSink, wait_for
from tests.support.metrics import delta, scrape
from tests.support.outages import database_down
from tests.support.plans import last_statement_plan

NOW = 1_900_000_000.0
DAY = 86_400.0
CUTOFF = NOW - 7 * DAY
HOOK = "https://hooks.example/a"
OTHER_HOOK = "https://hooks.example/b"


def _enqueue(db: Database, message_id: str, destinations: list[str], *, at: float) -> None:
    with db.write() as conn:
        assert outbox.enqueue(
            conn,
            message_id=message_id,
            topic="SIGNAL_CREATED",
            tenant_id="t1",
            payload={"id": message_id},
            destinations=destinations,
            now=iso_from_epoch(at),
            now_epoch=at,
        )


def _settle(db: Database, message_id: str, destination: str, *, at: float, refuse: bool = False) -> None:
    """Lease the delivery as a relay does at ``at``, then record it accepted (or given up)."""
    with db.write() as conn:
        (delivery,) = outbox.claim_due(
            conn, now_epoch=at, lease_seconds=60, owner="relay", only=[destination]
        )
        assert delivery.message_id == message_id
        if refuse:
            assert outbox.mark_failed(
                conn,
                delivery,
                owner="relay",
                error="410",
                next_attempt_epoch=at,
                dead_letter_at=iso_from_epoch(at),
            )
        else:
            assert outbox.mark_delivered(conn, delivery, owner="relay", now=iso_from_epoch(at))


def _left(db: Database) -> tuple[set[str], set[tuple[str, str]]]:
    with db.read() as conn:
        messages = {row.message_id for row in conn.execute(select(outbox_messages.c.message_id))}
        deliveries = {
            (row.message_id, row.destination)
            for row in conn.execute(select(outbox_deliveries.c.message_id, outbox_deliveries.c.destination))
        }
    return messages, deliveries


def _delivered_long_ago(db: Database, messages: int) -> None:
    """``m0``, ``m1``, …: each accepted by the webhook ten days ago, a second apart, oldest first."""
    for n in range(messages):
        _enqueue(db, f"m{n}", [HOOK], at=NOW - 10 * DAY + n)
        _settle(db, f"m{n}", HOOK, at=NOW - 10 * DAY + n)


def _delete(db: Database, *, limit: int = 200) -> tuple[int, int]:
    with db.write() as conn:
        return outbox.delete_delivered(conn, cutoff_epoch=CUTOFF, cutoff=iso_from_epoch(CUTOFF), limit=limit)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    with fresh_database(tmp_path) as db:
        yield db


def test_only_deliveries_accepted_before_the_cutoff_go_and_their_messages_with_them(
    database: Database,
) -> None:
    old, recent = NOW - 10 * DAY, NOW - DAY
    _enqueue(database, "old", [HOOK], at=old)
    _settle(database, "old", HOOK, at=old)
    _enqueue(database, "recent", [HOOK], at=recent)
    _settle(database, "recent", HOOK, at=recent)
    # Due ten days ago, accepted yesterday: its next try is old, its acceptance is not.
    _enqueue(database, "late", [OTHER_HOOK], at=old)
    _settle(database, "late", OTHER_HOOK, at=recent)
    _enqueue(database, "pending", [HOOK], at=old)
    _enqueue(database, "given_up", [OTHER_HOOK], at=old - 1)
    _settle(database, "given_up", OTHER_HOOK, at=old, refuse=True)
    _enqueue(database, "engine", [ENGINE_DESTINATION], at=old)
    _settle(database, "engine", ENGINE_DESTINATION, at=old)

    assert _delete(database) == (1, 1)
    messages, deliveries = _left(database)
    assert messages == {"recent", "late", "pending", "given_up", "engine"}
    assert deliveries == {
        ("recent", HOOK),
        ("late", OTHER_HOOK),
        ("pending", HOOK),
        ("given_up", OTHER_HOOK),
        ("engine", ENGINE_DESTINATION),
    }
    assert _delete(database) == (0, 0)
    # The dead letter is still there to be listed and redelivered.
    with database.write() as conn:
        assert [letter.message_id for letter in outbox.dead_letters(conn)] == ["given_up"]
        assert [letter.message_id for letter in outbox.redeliver(conn, now_epoch=NOW)] == ["given_up"]


def test_a_message_stays_while_any_of_its_deliveries_is_left(database: Database) -> None:
    old = NOW - 10 * DAY
    _enqueue(database, "both", [HOOK, OTHER_HOOK], at=old)
    _settle(database, "both", HOOK, at=old)
    assert _delete(database) == (1, 0)
    assert _left(database) == ({"both"}, {("both", OTHER_HOOK)})
    # The other destination accepts it later; once that is old too, the message goes.
    _settle(database, "both", OTHER_HOOK, at=old + DAY)
    assert _delete(database) == (1, 1)
    assert _left(database) == (set(), set())


def test_a_batch_deletes_at_most_its_limit(database: Database) -> None:
    _delivered_long_ago(database, 5)
    assert _delete(database, limit=2) == (2, 2)
    # Oldest first.
    assert _left(database)[0] == {"m2", "m3", "m4"}
    assert _delete(database, limit=2) == (2, 2)
    assert _delete(database, limit=2) == (1, 1)
    assert _left(database) == (set(), set())


def test_two_passes_at_once_delete_each_row_once(database: Database) -> None:
    _delivered_long_ago(database, 12)
    start = threading.Barrier(2)

    def drain() -> tuple[int, int]:
        start.wait()
        total = (0, 0)
        while (done := _delete(database, limit=2)) != (0, 0):
            total = (total[0] + done[0], total[1] + done[1])
        return total

    with ThreadPoolExecutor(2) as pool:
        results = [future.result() for future in [pool.submit(drain), pool.submit(drain)]]
    assert tuple(map(sum, zip(*results, strict=True))) == (12, 12)
    assert _left(database) == (set(), set())


def test_the_choice_reads_the_index_of_status_and_next_try(database: Database) -> None:
    """The old accepted deliveries are found by the index the relay reads (status, next try), in
    order, not by reading every delivery a deployment ever made."""
    plan = last_statement_plan(
        database,
        lambda conn: outbox.delete_delivered(
            conn, cutoff_epoch=CUTOFF, cutoff=iso_from_epoch(CUTOFF), limit=10
        ),
    )
    assert "ix_outbox_deliveries_status_next" in plan, plan


# --- the pass, through a real service ---------------------------------------------------------------

# The service keeps accepted deliveries a day; the tests move its clock past that instead of
# waiting, so whether a delivery is old enough never depends on how fast the machine is.
RETENTION_DAYS = 1.0


def _a_day_later(harness: Harness) -> None:
    harness.service.clock.advance(RETENTION_DAYS * DAY + 60)


def _counts(harness: Harness) -> tuple[int, int]:
    with harness.db.read() as conn:
        return (
            int(conn.execute(select(func.count()).select_from(outbox_messages)).scalar_one()),
            int(conn.execute(select(func.count()).select_from(outbox_deliveries)).scalar_one()),
        )


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    receiver = WebhookSink()
    yield receiver
    receiver.close()


@pytest.fixture
def service(tmp_path: Path, sink: WebhookSink) -> Iterator[Harness]:
    running = Harness(
        make_settings(tmp_path, webhook_urls=[sink.url], outbox_retention_days=RETENTION_DAYS)
    ).start()
    yield running
    running.stop()


def _run_and_deliver(harness: Harness, sink: WebhookSink, executions: int) -> list[dict[str, Any]]:
    with harness.client("t1") as client:
        statuses = [harness.run_task(client) for _ in range(executions)]
    assert {status["status"] for status in statuses} == {"SUCCEEDED"}
    wait_for(lambda: len(sink.deliveries) >= executions)
    wait_for(lambda: _pending(harness) == 0)
    return statuses


def _pending(harness: Harness) -> int:
    with harness.db.read() as conn:
        return outbox.pending_count(conn)


def test_delivered_signals_are_deleted_and_the_executions_answer_as_before(
    service: Harness, sink: WebhookSink
) -> None:
    statuses = _run_and_deliver(service, sink, 3)
    assert _counts(service) == (3, 3)
    before = scrape(service.url)
    assert delete_delivered_messages(service.service.runtime) == 0  # accepted less than a day ago
    _a_day_later(service)
    assert delete_delivered_messages(service.service.runtime, batch=2) == 3
    assert _counts(service) == (0, 0)
    assert delta(before, scrape(service.url), "fulfill_outbox_messages_deleted_total") == 3
    with service.client("t1") as client:
        for status in statuses:
            assert client.get(f"/executions/{status['action_intent_id']}/status").json() == status
    # Nothing was delivered again.
    assert len(sink.deliveries) == 3


def test_a_dead_letter_stays_until_it_is_redelivered_and_accepted(tmp_path: Path) -> None:
    refusing = WebhookSink(refuse=1)
    # Refused once, given up: no relay tries it again until someone redelivers it.
    harness = Harness(
        make_settings(
            tmp_path, webhook_urls=[refusing.url], outbox_retention_days=RETENTION_DAYS, outbox_max_attempts=1
        )
    ).start()
    try:
        with harness.client("t1") as client:
            assert harness.run_task(client)["status"] == "SUCCEEDED"
        wait_for(lambda: _dead_letters(harness) == 1)
        _a_day_later(harness)
        assert delete_delivered_messages(harness.service.runtime) == 0
        assert _counts(harness) == (1, 1)
        with harness.db.write() as conn:
            assert len(outbox.redeliver(conn, now_epoch=harness.service.clock.now())) == 1
        harness.service.runtime.outbox_wakeup.set()
        wait_for(lambda: len(refusing.deliveries) == 1)
        wait_for(lambda: _pending(harness) == 0)
        assert delete_delivered_messages(harness.service.runtime) == 0  # accepted just now
        _a_day_later(harness)
        assert delete_delivered_messages(harness.service.runtime) == 1
        assert _counts(harness) == (0, 0)
    finally:
        harness.stop()
        refusing.close()


def _dead_letters(harness: Harness) -> int:
    with harness.db.read() as conn:
        return len(outbox.dead_letters(conn))


def test_a_store_outage_deletes_nothing(
    service: Harness, sink: WebhookSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run_and_deliver(service, sink, 2)
    _a_day_later(service)
    monkeypatch.setattr(outbox, "delete_delivered", database_down)
    with pytest.raises(OperationalError):
        delete_delivered_messages(service.service.runtime)
    assert _counts(service) == (2, 2)
    monkeypatch.undo()
    assert delete_delivered_messages(service.service.runtime) == 2


def test_no_retention_keeps_every_message(tmp_path: Path, sink: WebhookSink) -> None:
    harness = Harness(make_settings(tmp_path, webhook_urls=[sink.url], outbox_retention_days=0)).start()
    try:
        _run_and_deliver(harness, sink, 2)
        _a_day_later(harness)
        assert delete_delivered_messages(harness.service.runtime) == 0
        assert _counts(harness) == (2, 2)
    finally:
        harness.stop()


def test_workers_run_the_pass_on_their_own(tmp_path: Path, sink: WebhookSink) -> None:
    harness = Harness(
        make_settings(
            tmp_path,
            webhook_urls=[sink.url],
            outbox_retention_days=RETENTION_DAYS,
            outbox_retention_interval_seconds=0.5,
        )
    ).start()
    try:
        _run_and_deliver(harness, sink, 2)
        assert _counts(harness) == (2, 2)
        _a_day_later(harness)
        wait_for(lambda: _counts(harness) == (0, 0), timeout=15)
    finally:
        harness.stop()


def test_a_restart_after_the_pass_sends_nothing_again(tmp_path: Path, sink: WebhookSink) -> None:
    """What deleting delivered messages rests on (OPERATIONS, "Accepted deliveries are deleted"):
    a message is written again only when the step that wrote it runs again, and a finished
    execution's steps never do. After the pass, a restart on the same database (which recovers
    this executor's workflows) and a reconciler pass send nothing again: the next execution's
    signal is the only new delivery, and once nothing is pending there is nothing else."""
    settings = make_settings(
        tmp_path, webhook_urls=[sink.url], outbox_retention_days=RETENTION_DAYS, executor_id="outbox-restart"
    )
    first = Harness(settings).start()
    _run_and_deliver(first, sink, 2)
    _a_day_later(first)
    assert delete_delivered_messages(first.service.runtime) == 2
    first.server.stop()  # not Harness.stop(): the database stays, for the restart
    second = Harness(settings).start()
    try:
        assert not reconcile_once(second.service.runtime)  # nothing of a finished execution to do
        with second.client("t1") as client:
            assert second.run_task(client)["status"] == "SUCCEEDED"
        wait_for(lambda: len(sink.deliveries) >= 3)
        wait_for(lambda: _pending(second) == 0)
        assert len(sink.deliveries) == 3
        assert _counts(second) == (1, 1)  # the new execution's message and delivery only
    finally:
        second.stop()


def test_an_api_process_runs_no_pass(tmp_path: Path) -> None:
    """Only worker processes, which relay the outbox, delete from it: an api process has no
    outbox retention thread whatever its settings; a worker has one."""
    thread = "fulfill-outbox-retention"
    api = Harness(
        make_settings(
            tmp_path, role="api", outbox_retention_days=RETENTION_DAYS, outbox_retention_interval_seconds=0.5
        )
    ).start()
    try:
        assert thread not in {running.name for running in threading.enumerate()}
    finally:
        api.stop()
    worker = Harness(make_settings(tmp_path / "worker", outbox_retention_days=RETENTION_DAYS)).start()
    try:
        assert thread in {running.name for running in threading.enumerate()}
    finally:
        worker.stop()
