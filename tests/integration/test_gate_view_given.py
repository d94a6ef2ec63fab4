"""A call's admission decides on the gate view its caller read: InvokeTool reads the connector's
limits, circuit and the tenant's cap in the same read of the store as the kill switches and the
intent, right before the call, and hands that view to the gate, which then reads nothing more;
without one, the gate reads it itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fulfill.clock import SystemClock
from fulfill.config import Settings
from fulfill.domain.flowcontrol import CallResult, Circuit, ConnectorLimits
from fulfill.domain.records import StoredLimits
from fulfill.engine.flow import FlowControl
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.sql_store import SqlStore, SqlUnitOfWork
from tests.support import postgres

SECRET = "gate-view-secret-0123456789abcdef0123"


class CountingStore(SqlStore):
    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.reads = 0

    @contextmanager
    def read(self) -> Iterator[SqlUnitOfWork]:
        self.reads += 1
        with super().read() as uow:
            yield uow


@pytest.fixture
def flow(tmp_path: Path) -> Iterator[tuple[FlowControl, CountingStore]]:
    url = postgres.create_database() if postgres.enabled() else f"sqlite:///{tmp_path / 'gate.db'}"
    database = Database(url)
    upgrade_to_head(database)
    store = CountingStore(database)
    control = FlowControl(store, Settings(jwt_secret=SECRET), SystemClock())
    try:
        yield control, store
    finally:
        control.close()
        database.dispose()
        if postgres.enabled():
            postgres.drop_database(url)


def _admit(control: FlowControl, view: object | None) -> object:
    return control.admit(
        "crm",
        tenant_id="t1",
        deadline=time.time() + 5,
        lease_seconds=10.0,
        view=view,  # type: ignore[arg-type]
    )


def test_the_gate_decides_on_the_view_it_is_given_without_reading_it_again(
    flow: tuple[FlowControl, CountingStore],
) -> None:
    control, store = flow
    unlimited = (StoredLimits(limits=ConnectorLimits()), Circuit(), None)
    with _admit(control, unlimited) as permit:  # type: ignore[attr-defined]
        assert (permit.call_id, permit.waited) == (None, False)  # admitted at once: nothing to track
        permit.finish(CallResult.ANSWERED)
    assert store.reads == 0
    # A view that says the connector is limited sends the call through the line (a tracked call),
    # though nothing is stored: the view given is what decides.
    limited = (StoredLimits(limits=ConnectorLimits(concurrency=1)), Circuit(), None)
    with _admit(control, limited) as permit:  # type: ignore[attr-defined]
        assert permit.call_id is not None
        permit.finish(CallResult.ANSWERED)


def test_without_a_view_the_gate_reads_it(flow: tuple[FlowControl, CountingStore]) -> None:
    control, store = flow
    with _admit(control, None) as permit:  # type: ignore[attr-defined]
        assert permit.call_id is None  # nothing stored: unlimited, admitted at once
        permit.finish(CallResult.ANSWERED)
    assert store.reads == 1
