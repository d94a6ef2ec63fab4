"""Stored flow control of each connector: limits, circuit breaker, and the calls admitted to it.

Times are epoch seconds of the **database's** clock (:func:`database_now`), so that processes on
several machines agree on every window without trusting each other's clocks. Admissions lock the
connector's ``connector_state`` row (:func:`lock_state`): on PostgreSQL with ``SELECT … FOR
UPDATE``, on SQLite with the write lock every write transaction takes (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, String, and_, bindparam, delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from fulfill.domain.fairness import Waiter
from fulfill.domain.flowcontrol import Circuit, CircuitState, ConnectorLimits
from fulfill.domain.records import StoredLimits as StoredLimits
from fulfill.domain.records import TenantCap as TenantCap
from fulfill.store.tables import (
    connector_calls,
    connector_limits,
    connector_state,
    connector_tenant_limits,
    connector_waiters,
)


def database_now(conn: Connection) -> float:
    """The database server's clock, in epoch seconds (read after any lock this transaction holds)."""
    if conn.dialect.name == "postgresql":
        value = conn.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one()
    else:
        value = conn.execute(text("SELECT (julianday('now') - 2440587.5) * 86400.0")).scalar_one()
    return float(value)


# --- limits -------------------------------------------------------------------------------------


def get_limits(conn: Connection, name: str) -> StoredLimits:
    row = conn.execute(select(connector_limits).where(connector_limits.c.name == name)).first()
    return _limits(row)


def list_limits(conn: Connection) -> dict[str, StoredLimits]:
    rows = conn.execute(select(connector_limits).order_by(connector_limits.c.name)).all()
    return {row.name: _limits(row) for row in rows}


def put_limits(conn: Connection, name: str, limits: ConnectorLimits, *, now: str) -> StoredLimits:
    """Replace a connector's limits atomically (one upsert); returns what was stored."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(connector_limits).values(
        name=name,
        rate_per_second=limits.rate_per_second,
        concurrency=limits.concurrency,
        updated_at=now,
        revision=1,
    )
    row = conn.execute(
        statement.on_conflict_do_update(
            index_elements=[connector_limits.c.name],
            set_={
                "rate_per_second": statement.excluded.rate_per_second,
                "concurrency": statement.excluded.concurrency,
                "updated_at": statement.excluded.updated_at,
                "revision": connector_limits.c.revision + 1,
            },
        ).returning(connector_limits)
    ).one()
    return _limits(row)


def _limits(row: Any) -> StoredLimits:
    if row is None:
        return StoredLimits(limits=ConnectorLimits())
    return StoredLimits(
        limits=ConnectorLimits(rate_per_second=row.rate_per_second, concurrency=row.concurrency),
        updated_at=row.updated_at,
        revision=row.revision,
    )


def _gate_view_statement() -> Any:
    """The statement of :func:`gate_view`, built once: its connector name and tenant are bound
    parameters, so a call's admission neither builds the statement nor computes its cache key."""
    key = select(bindparam("gate_name", type_=String).label("name")).subquery("gated")
    lim, state, cap = connector_limits, connector_state, connector_tenant_limits
    columns = [
        column.label(f"{prefix}_{column.name}")
        for prefix, table in _GATE_TABLES.items()
        for column in table.c
    ]
    return select(*columns).select_from(
        key.outerjoin(lim, lim.c.name == key.c.name)
        .outerjoin(state, state.c.name == key.c.name)
        .outerjoin(
            cap, and_(cap.c.name == key.c.name, cap.c.tenant_id == bindparam("gate_tenant", type_=String))
        )
    )


_GATE_TABLES = {"l": connector_limits, "s": connector_state, "t": connector_tenant_limits}
_GATE_VIEW = _gate_view_statement()


def gate_view(
    conn: Connection, name: str, tenant_id: str
) -> tuple[StoredLimits, Circuit, ConnectorLimits | None]:
    """What a call's admission looks at first, in one statement: the connector's limits
    (:func:`get_limits`), its circuit (:func:`get_circuit`) and the tenant's own cap
    (:func:`tenant_cap`), each row outer-joined to the connector's name."""
    row = conn.execute(_GATE_VIEW, {"gate_name": name, "gate_tenant": tenant_id}).one()._mapping

    def part(prefix: str) -> Any:
        values = {column.name: row[f"{prefix}_{column.name}"] for column in _GATE_TABLES[prefix].c}
        return None if values["name"] is None else SimpleNamespace(**values)

    tenant_row = part("t")
    return _limits(part("l")), _circuit(part("s")), None if tenant_row is None else _cap(tenant_row).cap


# --- circuit breaker ----------------------------------------------------------------------------


def get_circuit(conn: Connection, name: str) -> Circuit:
    row = conn.execute(select(connector_state).where(connector_state.c.name == name)).first()
    return _circuit(row)


def list_circuits(conn: Connection) -> dict[str, Circuit]:
    rows = conn.execute(select(connector_state).order_by(connector_state.c.name)).all()
    return {row.name: _circuit(row) for row in rows}


def fast_commit(conn: Connection) -> None:
    """Let this transaction commit without waiting for its WAL flush (PostgreSQL): flow control
    rows are short-lived bookkeeping, visible to others at commit all the same, and a call must
    not wait for a disk flush between its admission and its sending. A database crash loses at
    most the last moments of them, which only makes the next calls wait less."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL synchronous_commit = off"))


def lock_state(conn: Connection, name: str) -> Circuit:
    """Lock the connector's row for the rest of this write transaction (creating it if needed)."""
    fast_commit(conn)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(connector_state).values(name=name).on_conflict_do_nothing())
    row = conn.execute(select(connector_state).where(connector_state.c.name == name).with_for_update()).one()
    return _circuit(row)


def save_circuit(conn: Connection, name: str, circuit: Circuit, *, now: float) -> None:
    conn.execute(
        update(connector_state)
        .where(connector_state.c.name == name)
        .values(
            circuit_state=circuit.state.value,
            failures=circuit.failures,
            window_started_epoch=circuit.window_started,
            opened_epoch=circuit.opened_at,
            probe_call_id=circuit.probe_call_id,
            probe_until_epoch=circuit.probe_until,
            updated_epoch=now,
        )
    )


def _circuit(row: Any) -> Circuit:
    if row is None:
        return Circuit()
    return Circuit(
        state=CircuitState(row.circuit_state),
        failures=row.failures,
        window_started=row.window_started_epoch,
        opened_at=row.opened_epoch,
        probe_call_id=row.probe_call_id,
        probe_until=row.probe_until_epoch,
    )


# --- admitted calls -----------------------------------------------------------------------------


def _of(name: str, tenant_id: str | None) -> Any:
    """The calls to ``name`` (of one tenant only, when ``tenant_id`` is given)."""
    if tenant_id is None:
        return connector_calls.c.name == name
    return and_(connector_calls.c.name == name, connector_calls.c.tenant_id == tenant_id)


def count_in_flight(conn: Connection, name: str, now: float, *, tenant_id: str | None = None) -> int:
    """Calls admitted and not finished, except those whose lease ran out (their process died)."""
    query = (
        select(func.count())
        .select_from(connector_calls)
        .where(
            _of(name, tenant_id),
            connector_calls.c.finished_epoch.is_(None),
            connector_calls.c.lease_until_epoch > now,
        )
    )
    return int(conn.execute(query).scalar_one())


def count_not_sent(conn: Connection, name: str, now: float, *, tenant_id: str | None = None) -> int:
    """Calls admitted and not sent yet (nor given up, nor of a process that died)."""
    query = (
        select(func.count())
        .select_from(connector_calls)
        .where(
            _of(name, tenant_id),
            connector_calls.c.dispatched_epoch.is_(None),
            connector_calls.c.finished_epoch.is_(None),
            connector_calls.c.lease_until_epoch > now,
        )
    )
    return int(conn.execute(query).scalar_one())


def recent_sends(
    conn: Connection, name: str, *, since: float, limit: int, tenant_id: str | None = None
) -> list[float]:
    """When the ``limit`` latest calls sent after ``since`` were sent, latest first."""
    query = (
        select(connector_calls.c.dispatched_epoch)
        .where(_of(name, tenant_id), connector_calls.c.dispatched_epoch > since)
        .order_by(connector_calls.c.dispatched_epoch.desc())
        .limit(limit)
    )
    return [float(value) for value in conn.execute(query).scalars()]


def last_admitted(conn: Connection, name: str, tenants: Iterable[str]) -> dict[str, float]:
    """When each of ``tenants``' latest call to ``name`` still on record was admitted (a tenant
    with none is absent)."""
    wanted = sorted(set(tenants))
    if not wanted:
        return {}
    query = (
        select(connector_calls.c.tenant_id, func.max(connector_calls.c.admitted_epoch))
        .where(connector_calls.c.name == name, connector_calls.c.tenant_id.in_(wanted))
        .group_by(connector_calls.c.tenant_id)
    )
    return {str(tenant): float(when) for tenant, when in conn.execute(query).all()}


def insert_call(
    conn: Connection,
    *,
    call_id: str,
    name: str,
    admitted: float,
    lease_until: float,
    tenant_id: str | None = None,
) -> None:
    conn.execute(
        connector_calls.insert().values(
            call_id=call_id,
            name=name,
            tenant_id=tenant_id,
            admitted_epoch=admitted,
            lease_until_epoch=lease_until,
        )
    )


def mark_dispatched(conn: Connection, call_id: str, *, at: float) -> None:
    conn.execute(
        update(connector_calls)
        .where(connector_calls.c.call_id == call_id, connector_calls.c.dispatched_epoch.is_(None))
        .values(dispatched_epoch=at)
    )


def finish_call(conn: Connection, call_id: str, *, now: float, sent_at: float | None) -> None:
    """The call is over; ``sent_at`` (if it was sent) is stored with it, in case the separate
    write of it has not landed yet, so the rate window never loses sight of a sent call."""
    values: dict[str, Any] = {"finished_epoch": now}
    if sent_at is not None:
        values["dispatched_epoch"] = func.coalesce(connector_calls.c.dispatched_epoch, sent_at)
    conn.execute(
        update(connector_calls)
        .where(connector_calls.c.call_id == call_id, connector_calls.c.finished_epoch.is_(None))
        .values(**values)
    )


def prune_calls(conn: Connection, name: str, *, before: float, now: float) -> None:
    """Forget calls no window needs any more: finished before ``before``, or admitted before it by
    a process that died (lease run out)."""
    conn.execute(
        delete(connector_calls).where(
            connector_calls.c.name == name,
            or_(
                connector_calls.c.finished_epoch < before,
                and_(
                    connector_calls.c.finished_epoch.is_(None),
                    connector_calls.c.lease_until_epoch <= now,
                    connector_calls.c.admitted_epoch < before,
                ),
            ),
        )
    )


# --- calls waiting, of every process ------------------------------------------------------------


def waiting(conn: Connection, name: str, *, now: float, other_than: str) -> list[Waiter]:
    """The calls waiting for ``name`` whose process still renews their lease, except those of the
    process ``other_than`` (it knows its own)."""
    rows = conn.execute(
        select(connector_waiters.c.waiter_id, connector_waiters.c.tenant_id, connector_waiters.c.since_epoch)
        .where(
            connector_waiters.c.name == name,
            connector_waiters.c.lease_until_epoch > now,
            connector_waiters.c.owner != other_than,
        )
        .order_by(connector_waiters.c.since_epoch, connector_waiters.c.waiter_id)
    ).all()
    return [Waiter(row.waiter_id, row.tenant_id, float(row.since_epoch)) for row in rows]


def add_waiters(
    conn: Connection, name: str, waiters: Iterable[Waiter], *, owner: str, lease_until: float
) -> None:
    rows = [
        {
            "waiter_id": waiter.waiter_id,
            "name": name,
            "tenant_id": waiter.tenant_id,
            "owner": owner,
            "since_epoch": waiter.since,
            "lease_until_epoch": lease_until,
        }
        for waiter in waiters
    ]
    if rows:
        conn.execute(connector_waiters.insert(), rows)


def renew_waiters(conn: Connection, waiter_ids: Iterable[str], *, lease_until: float) -> None:
    """Extend the lease of these waiting calls (their process is alive and they still wait)."""
    ids = list(waiter_ids)
    if ids:
        conn.execute(
            update(connector_waiters)
            .where(connector_waiters.c.waiter_id.in_(ids))
            .values(lease_until_epoch=lease_until)
        )


def remove_waiters(conn: Connection, waiter_ids: Iterable[str]) -> None:
    ids = list(waiter_ids)
    if ids:
        conn.execute(delete(connector_waiters).where(connector_waiters.c.waiter_id.in_(ids)))


def prune_waiters(conn: Connection, name: str, *, before: float) -> None:
    """Forget the waiting calls of processes that died (lease run out before ``before``)."""
    conn.execute(
        delete(connector_waiters).where(
            connector_waiters.c.name == name, connector_waiters.c.lease_until_epoch < before
        )
    )


# --- a tenant's own caps ------------------------------------------------------------------------


def tenant_caps(conn: Connection, name: str) -> dict[str, ConnectorLimits]:
    """Every tenant's own cap on ``name``, by tenant."""
    rows = conn.execute(select(connector_tenant_limits).where(connector_tenant_limits.c.name == name)).all()
    return {row.tenant_id: _cap(row).cap for row in rows}


def tenant_cap(conn: Connection, name: str, tenant_id: str) -> ConnectorLimits | None:
    row = conn.execute(
        select(connector_tenant_limits).where(
            connector_tenant_limits.c.name == name, connector_tenant_limits.c.tenant_id == tenant_id
        )
    ).first()
    return None if row is None else _cap(row).cap


def list_tenant_caps(conn: Connection, *, tenant_id: str | None = None) -> list[TenantCap]:
    query = select(connector_tenant_limits).order_by(
        connector_tenant_limits.c.name, connector_tenant_limits.c.tenant_id
    )
    if tenant_id is not None:
        query = query.where(connector_tenant_limits.c.tenant_id == tenant_id)
    return [_cap(row) for row in conn.execute(query).all()]


def put_tenant_cap(
    conn: Connection, name: str, tenant_id: str, cap: ConnectorLimits, *, now: str, by: str
) -> TenantCap:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(connector_tenant_limits).values(
        name=name,
        tenant_id=tenant_id,
        rate_per_second=cap.rate_per_second,
        concurrency=cap.concurrency,
        updated_at=now,
        updated_by=by,
        revision=1,
    )
    row = conn.execute(
        statement.on_conflict_do_update(
            index_elements=[connector_tenant_limits.c.name, connector_tenant_limits.c.tenant_id],
            set_={
                "rate_per_second": statement.excluded.rate_per_second,
                "concurrency": statement.excluded.concurrency,
                "updated_at": statement.excluded.updated_at,
                "updated_by": statement.excluded.updated_by,
                "revision": connector_tenant_limits.c.revision + 1,
            },
        ).returning(connector_tenant_limits)
    ).one()
    return _cap(row)


def delete_tenant_cap(conn: Connection, name: str, tenant_id: str) -> bool:
    result = conn.execute(
        delete(connector_tenant_limits).where(
            connector_tenant_limits.c.name == name, connector_tenant_limits.c.tenant_id == tenant_id
        )
    )
    return bool(result.rowcount)


def _cap(row: Any) -> TenantCap:
    return TenantCap(
        name=row.name,
        tenant_id=row.tenant_id,
        cap=ConnectorLimits(rate_per_second=row.rate_per_second, concurrency=row.concurrency),
        updated_at=row.updated_at,
        updated_by=row.updated_by,
        revision=row.revision,
    )


class SqlConnectorsRepository:
    """The connectors repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def database_now(self) -> float:
        return database_now(self._conn)

    def get_limits(self, name: str) -> StoredLimits:
        return get_limits(self._conn, name)

    def gate_view(self, name: str, tenant_id: str) -> tuple[StoredLimits, Circuit, ConnectorLimits | None]:
        return gate_view(self._conn, name, tenant_id)

    def list_limits(self) -> dict[str, StoredLimits]:
        return list_limits(self._conn)

    def put_limits(self, name: str, limits: ConnectorLimits, *, now: str) -> StoredLimits:
        return put_limits(self._conn, name, limits, now=now)

    def get_circuit(self, name: str) -> Circuit:
        return get_circuit(self._conn, name)

    def list_circuits(self) -> dict[str, Circuit]:
        return list_circuits(self._conn)

    def fast_commit(self) -> None:
        return fast_commit(self._conn)

    def lock_state(self, name: str) -> Circuit:
        return lock_state(self._conn, name)

    def save_circuit(self, name: str, circuit: Circuit, *, now: float) -> None:
        return save_circuit(self._conn, name, circuit, now=now)

    def count_in_flight(self, name: str, now: float, *, tenant_id: str | None = None) -> int:
        return count_in_flight(self._conn, name, now, tenant_id=tenant_id)

    def count_not_sent(self, name: str, now: float, *, tenant_id: str | None = None) -> int:
        return count_not_sent(self._conn, name, now, tenant_id=tenant_id)

    def recent_sends(
        self, name: str, *, since: float, limit: int, tenant_id: str | None = None
    ) -> list[float]:
        return recent_sends(self._conn, name, since=since, limit=limit, tenant_id=tenant_id)

    def last_admitted(self, name: str, tenants: Iterable[str]) -> dict[str, float]:
        return last_admitted(self._conn, name, tenants)

    def insert_call(
        self, *, call_id: str, name: str, admitted: float, lease_until: float, tenant_id: str | None = None
    ) -> None:
        return insert_call(
            self._conn,
            call_id=call_id,
            name=name,
            admitted=admitted,
            lease_until=lease_until,
            tenant_id=tenant_id,
        )

    def mark_dispatched(self, call_id: str, *, at: float) -> None:
        return mark_dispatched(self._conn, call_id, at=at)

    def finish_call(self, call_id: str, *, now: float, sent_at: float | None) -> None:
        return finish_call(self._conn, call_id, now=now, sent_at=sent_at)

    def prune_calls(self, name: str, *, before: float, now: float) -> None:
        return prune_calls(self._conn, name, before=before, now=now)

    def waiting(self, name: str, *, now: float, other_than: str) -> list[Waiter]:
        return waiting(self._conn, name, now=now, other_than=other_than)

    def add_waiters(self, name: str, waiters: Iterable[Waiter], *, owner: str, lease_until: float) -> None:
        return add_waiters(self._conn, name, waiters, owner=owner, lease_until=lease_until)

    def renew_waiters(self, waiter_ids: Iterable[str], *, lease_until: float) -> None:
        return renew_waiters(self._conn, waiter_ids, lease_until=lease_until)

    def remove_waiters(self, waiter_ids: Iterable[str]) -> None:
        return remove_waiters(self._conn, waiter_ids)

    def prune_waiters(self, name: str, *, before: float) -> None:
        return prune_waiters(self._conn, name, before=before)

    def tenant_caps(self, name: str) -> dict[str, ConnectorLimits]:
        return tenant_caps(self._conn, name)

    def tenant_cap(self, name: str, tenant_id: str) -> ConnectorLimits | None:
        return tenant_cap(self._conn, name, tenant_id)

    def list_tenant_caps(self, *, tenant_id: str | None = None) -> list[TenantCap]:
        return list_tenant_caps(self._conn, tenant_id=tenant_id)

    def put_tenant_cap(
        self, name: str, tenant_id: str, cap: ConnectorLimits, *, now: str, by: str
    ) -> TenantCap:
        return put_tenant_cap(self._conn, name, tenant_id, cap, now=now, by=by)

    def delete_tenant_cap(self, name: str, tenant_id: str) -> bool:
        return delete_tenant_cap(self._conn, name, tenant_id)
