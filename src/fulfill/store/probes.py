"""Reconcile probes of AMBIGUOUS attempts: which are due, a worker's claim on one, what it found.

The claim is a compare-and-set on ``next_probe_epoch``: the worker that moves it from the time it
read (or inserts the row first) probes, and the moved time is its lease; every other worker sees
the attempt as not due. A worker that dies while probing leaves the lease to run out.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select, update

from fulfill.domain.probes import DueProbe, ProbeRecord
from fulfill.domain.time import iso_from_epoch
from fulfill.store.db import insert_ignore
from fulfill.store.tables import execution_attempts, execution_probes, is_ambiguous_attempt

_REASON_LENGTH = 500


def due_probes(
    conn: Connection, *, now_epoch: float, first_after_seconds: float, limit: int
) -> list[DueProbe]:
    """AMBIGUOUS attempts whose next probe is due: never probed and AMBIGUOUS for at least
    ``first_after_seconds``, or probed and past their next probe time (oldest first)."""
    joined = execution_attempts.outerjoin(
        execution_probes,
        and_(
            execution_probes.c.tenant_id == execution_attempts.c.tenant_id,
            execution_probes.c.account_id == execution_attempts.c.account_id,
            execution_probes.c.action_intent_id == execution_attempts.c.action_intent_id,
            execution_probes.c.attempt_count == execution_attempts.c.attempt_count,
        ),
    )
    rows = conn.execute(
        select(
            execution_attempts.c.tenant_id,
            execution_attempts.c.account_id,
            execution_attempts.c.action_intent_id,
            execution_attempts.c.attempt_count,
            execution_probes.c.probes,
            execution_probes.c.next_probe_epoch,
        )
        .select_from(joined)
        .where(
            is_ambiguous_attempt(),
            or_(
                and_(
                    execution_probes.c.next_probe_epoch.is_(None),
                    execution_attempts.c.updated_at <= iso_from_epoch(now_epoch - first_after_seconds),
                ),
                execution_probes.c.next_probe_epoch <= now_epoch,
            ),
        )
        .order_by(execution_attempts.c.updated_at)
        .limit(limit)
    ).all()
    return [
        DueProbe(
            tenant_id=row.tenant_id,
            account_id=row.account_id,
            action_intent_id=row.action_intent_id,
            attempt_count=int(row.attempt_count),
            probes=int(row.probes or 0),
            next_probe_epoch=float(row.next_probe_epoch) if row.next_probe_epoch is not None else None,
        )
        for row in rows
    ]


def claim_probe(conn: Connection, due: DueProbe, *, lease_until_epoch: float, now: str) -> bool:
    """Take the probe of ``due`` until ``lease_until_epoch``; False when another worker took it
    (or probed it) since it was read."""
    if due.next_probe_epoch is None:
        return insert_ignore(
            conn,
            execution_probes,
            {
                "tenant_id": due.tenant_id,
                "account_id": due.account_id,
                "action_intent_id": due.action_intent_id,
                "attempt_count": due.attempt_count,
                "probes": 0,
                "next_probe_epoch": lease_until_epoch,
                "last_result": None,
                "last_reason": None,
                "resent": False,
                "updated_at": now,
            },
        )
    moved = conn.execute(
        update(execution_probes)
        .where(*_this(due.tenant_id, due.account_id, due.action_intent_id, due.attempt_count))
        .where(execution_probes.c.next_probe_epoch == due.next_probe_epoch)
        .values(next_probe_epoch=lease_until_epoch, updated_at=now)
    )
    return moved.rowcount == 1


def record_probe(
    conn: Connection,
    tenant_id: str,
    account_id: str,
    action_intent_id: str,
    attempt_count: int,
    record: ProbeRecord,
    *,
    now: str,
) -> None:
    conn.execute(
        update(execution_probes)
        .where(*_this(tenant_id, account_id, action_intent_id, attempt_count))
        .values(
            probes=record.probes,
            next_probe_epoch=record.next_probe_epoch,
            last_result=record.last_result,
            last_reason=record.last_reason[:_REASON_LENGTH] if record.last_reason else None,
            resent=record.resent,
            updated_at=now,
        )
    )


def get_probe(
    conn: Connection, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
) -> ProbeRecord | None:
    row = conn.execute(
        select(execution_probes).where(*_this(tenant_id, account_id, action_intent_id, attempt_count))
    ).first()
    if row is None:
        return None
    return ProbeRecord(
        probes=int(row.probes),
        next_probe_epoch=float(row.next_probe_epoch),
        last_result=str(row.last_result or ""),
        last_reason=row.last_reason,
        resent=bool(row.resent),
    )


def resent_before(conn: Connection, tenant_id: str, account_id: str, action_intent_id: str) -> bool:
    """A probe already sent this intent's call once more (for any of its attempts)."""
    count = conn.execute(
        select(func.count())
        .select_from(execution_probes)
        .where(
            execution_probes.c.tenant_id == tenant_id,
            execution_probes.c.account_id == account_id,
            execution_probes.c.action_intent_id == action_intent_id,
            execution_probes.c.resent.is_(True),
        )
    ).scalar_one()
    return int(count) > 0


def _this(
    tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
) -> list[ColumnElement[bool]]:
    return [
        execution_probes.c.tenant_id == tenant_id,
        execution_probes.c.account_id == account_id,
        execution_probes.c.action_intent_id == action_intent_id,
        execution_probes.c.attempt_count == attempt_count,
    ]


class SqlProbesRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def due_probes(self, *, now_epoch: float, first_after_seconds: float, limit: int) -> list[DueProbe]:
        return due_probes(
            self._conn, now_epoch=now_epoch, first_after_seconds=first_after_seconds, limit=limit
        )

    def claim_probe(self, due: DueProbe, *, lease_until_epoch: float, now: str) -> bool:
        return claim_probe(self._conn, due, lease_until_epoch=lease_until_epoch, now=now)

    def record_probe(
        self,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        attempt_count: int,
        record: ProbeRecord,
        *,
        now: str,
    ) -> None:
        record_probe(self._conn, tenant_id, account_id, action_intent_id, attempt_count, record, now=now)

    def get_probe(
        self, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
    ) -> ProbeRecord | None:
        return get_probe(self._conn, tenant_id, account_id, action_intent_id, attempt_count)

    def resent_before(self, tenant_id: str, account_id: str, action_intent_id: str) -> bool:
        return resent_before(self._conn, tenant_id, account_id, action_intent_id)
