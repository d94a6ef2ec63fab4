"""What the console's dashboard reads: counts and bounded samples over the stored executions,
intents, ledger and outbox, for one tenant (``tenant_id``) or every tenant (None), optionally
only some accounts (``account_ids``). Read-only.

Counting is done here, in SQL (by status per minute, by error class, by tool and status); the
durations percentiles are computed from come back as pairs of timestamps, the most recent
``limit`` of them (``fulfill.domain.dashboard`` computes the percentiles).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, Connection, FromClause, String, and_, case, func, literal, or_, select

from fulfill.domain.dashboard import WaitingItem, WaitingList
from fulfill.domain.ledger import OUTCOME_UNKNOWN, TOOL_CALL_TRY_FAILED
from fulfill.store.tables import (
    action_intents,
    execution_attempts,
    execution_outcomes,
    is_active_attempt,
    is_ambiguous_attempt,
    is_pending_approval,
    ledger_entries,
    outbox_deliveries,
    outbox_messages,
)

DEAD_LETTER = "DEAD_LETTER"
# The length of "YYYY-MM-DDTHH:MM": an ISO timestamp cut to its minute.
_MINUTE = 16


def _owned(table: Any, tenant_id: str | None, account_ids: Collection[str] | None) -> list[Any]:
    clauses: list[Any] = []
    if tenant_id is not None:
        clauses.append(table.c.tenant_id == tenant_id)
    if account_ids is not None:
        clauses.append(table.c.account_id.in_(sorted(account_ids)))
    return clauses


def _recorded_in(
    since: str, until: str, tenant_id: str | None, account_ids: Collection[str] | None
) -> list[Any]:
    """Outcomes recorded in ``[since, until)``, of one tenant or of every tenant.

    The window's ends are written into the statement as literals. Bound as parameters, they let
    PostgreSQL keep one plan for the prepared statement, built without their values for the
    average tenant, and that plan read one tenant's window through the index of every tenant's
    outcomes (``ix_execution_outcomes_completed``): every other tenant's outcomes of the window
    too, 4-81 ms a read for a tenant with 100 outcomes while another had 30,000 in it, instead
    of 0.6-1.4 ms (``bench/tenant_skew_cost.py``). With the ends in the text, each window is
    planned with its values, where the tenant's own index is the cheaper (a window ends at the
    moment it is read, so its text is never the same twice)."""
    completed = execution_outcomes.c.completed_at
    return [
        completed >= literal(since, String, literal_execute=True),
        completed < literal(until, String, literal_execute=True),
        *_owned(execution_outcomes, tenant_id, account_ids),
    ]


def _event_type(name: str) -> Any:
    """An event type the ledger has a partial index for, written into the statement as a literal:
    a bound parameter would keep either backend from proving the index's condition."""
    return literal(name, String, literal_execute=True)


def _outcome_doc(name: str) -> Any:
    return execution_outcomes.c.document[name].as_string()


def outcomes_per_minute(
    conn: Connection,
    *,
    since: str,
    until: str,
    tenant_id: str | None,
    account_ids: Collection[str] | None = None,
) -> list[tuple[str, str, int]]:
    """(minute ``YYYY-MM-DDTHH:MM``, status, count) of the outcomes recorded in ``[since, until)``."""
    minute = func.substr(execution_outcomes.c.completed_at, 1, _MINUTE)
    rows = conn.execute(
        select(minute, execution_outcomes.c.status, func.count())
        .where(
            *_recorded_in(since, until, tenant_id, account_ids),
        )
        .group_by(minute, execution_outcomes.c.status)
    ).all()
    return [(str(row[0]), str(row[1]), int(row[2])) for row in rows]


def failures_by_class(
    conn: Connection,
    *,
    since: str,
    until: str,
    tenant_id: str | None,
    account_ids: Collection[str] | None = None,
) -> dict[str, int]:
    """How many FAILED outcomes recorded in ``[since, until)`` of each error class (``""``: none
    recorded)."""
    error_class = _outcome_doc("error_class")
    rows = conn.execute(
        select(error_class, func.count())
        .where(
            execution_outcomes.c.status == "FAILED",
            *_recorded_in(since, until, tenant_id, account_ids),
        )
        .group_by(error_class)
    ).all()
    counts: dict[str, int] = {}
    for row in rows:
        key = str(row[0] or "")
        counts[key] = counts.get(key, 0) + int(row[1])
    return counts


def approval_waits(
    conn: Connection,
    *,
    since: str,
    until: str,
    tenant_id: str | None,
    account_ids: Collection[str] | None = None,
    limit: int,
) -> tuple[int, list[tuple[str, str]]]:
    """Intents a person approved in ``[since, until)`` (a policy's approval is not a wait):
    how many, and (created_at, approval_timestamp) of the ``limit`` most recent."""
    approved_at = action_intents.c.document["approval_timestamp"].as_string()
    approved_by = action_intents.c.document["approved_by"].as_string()
    where = [
        # an approval changes updated_at, and nothing moves it back: a cheap first cut
        action_intents.c.updated_at >= since,
        approved_at >= since,
        approved_at < until,
        approved_at > action_intents.c.created_at,  # not an import that arrived approved
        or_(approved_by.is_(None), ~approved_by.startswith("policy:")),
        *_owned(action_intents, tenant_id, account_ids),
    ]
    return _sampled_pairs(
        conn, action_intents, where, (action_intents.c.created_at, approved_at), approved_at, limit
    )


def approval_to_outcome(
    conn: Connection,
    *,
    since: str,
    until: str,
    tenant_id: str | None,
    account_ids: Collection[str] | None = None,
    limit: int,
) -> tuple[int, list[tuple[str, str]]]:
    """First attempts whose outcome was recorded in ``[since, until)``, of approved intents:
    how many, and (approval_timestamp, completed_at) of the ``limit`` most recent."""
    approved_at = action_intents.c.document["approval_timestamp"].as_string()
    joined = execution_outcomes.join(
        action_intents,
        and_(
            action_intents.c.tenant_id == execution_outcomes.c.tenant_id,
            action_intents.c.account_id == execution_outcomes.c.account_id,
            action_intents.c.action_intent_id == execution_outcomes.c.action_intent_id,
        ),
    )
    where = [
        execution_outcomes.c.attempt_count == 1,
        approved_at.is_not(None),
        *_recorded_in(since, until, tenant_id, account_ids),
    ]
    return _sampled_pairs(
        conn,
        joined,
        where,
        (approved_at, execution_outcomes.c.completed_at),
        execution_outcomes.c.completed_at,
        limit,
    )


def _sampled_pairs(
    conn: Connection,
    source: FromClause,
    where: list[ColumnElement[bool]],
    pair: tuple[ColumnElement[Any], ColumnElement[Any]],
    newest_by: ColumnElement[Any],
    limit: int,
) -> tuple[int, list[tuple[str, str]]]:
    """How many rows match, and the ``limit`` most recent pairs: the count is a second query only
    when there are more rows than the sample holds."""
    rows = conn.execute(
        select(*pair).select_from(source).where(*where).order_by(newest_by.desc()).limit(limit + 1)
    ).all()
    total = len(rows)
    if total > limit:
        total = int(conn.execute(select(func.count()).select_from(source).where(*where)).scalar_one())
    return total, [(str(row[0]), str(row[1])) for row in rows[:limit]]


def tool_outcome_counts(
    conn: Connection,
    *,
    since: str,
    until: str,
    tenant_id: str | None,
    account_ids: Collection[str] | None = None,
) -> list[tuple[str, str, int]]:
    """(tool name, status, count) of the SUCCEEDED and FAILED outcomes recorded in ``[since, until)``
    that name a tool."""
    tool = _outcome_doc("tool_name")
    rows = conn.execute(
        select(tool, execution_outcomes.c.status, func.count())
        .where(
            execution_outcomes.c.status.in_(["SUCCEEDED", "FAILED"]),
            tool.is_not(None),
            *_recorded_in(since, until, tenant_id, account_ids),
        )
        .group_by(tool, execution_outcomes.c.status)
    ).all()
    return [(str(row[0]), str(row[1]), int(row[2])) for row in rows if row[0]]


def tool_timings(
    conn: Connection,
    *,
    since: str,
    until: str,
    tenant_id: str | None,
    account_ids: Collection[str] | None = None,
    limit: int,
) -> list[tuple[str, str, str]]:
    """(tool name, started_at, completed_at) of the ``limit`` most recent SUCCEEDED and FAILED
    outcomes recorded in ``[since, until)`` that name a tool."""
    tool = _outcome_doc("tool_name")
    started = _outcome_doc("started_at")
    rows = conn.execute(
        select(tool, started, execution_outcomes.c.completed_at)
        .where(
            execution_outcomes.c.status.in_(["SUCCEEDED", "FAILED"]),
            tool.is_not(None),
            *_recorded_in(since, until, tenant_id, account_ids),
        )
        .order_by(execution_outcomes.c.completed_at.desc())
        .limit(limit)
    ).all()
    return [(str(row[0]), str(row[1]), str(row[2])) for row in rows if row[0] and row[1]]


def retried_tries(
    conn: Connection,
    *,
    since: str,
    until: str,
    tenant_id: str | None,
    account_ids: Collection[str] | None = None,
) -> list[tuple[str, int]]:
    """(tool name, count) of the tries of a tool call that failed in ``[since, until)`` and were
    retried (their ``TOOL_CALL_TRY_FAILED`` ledger entries with ``will_retry``)."""
    tool = ledger_entries.c.data["tool_name"].as_string()
    will_retry = ledger_entries.c.data["will_retry"].as_string()
    rows = conn.execute(
        select(tool, will_retry, func.count())
        .where(
            ledger_entries.c.event_type == _event_type(TOOL_CALL_TRY_FAILED),
            ledger_entries.c.timestamp >= since,
            ledger_entries.c.timestamp < until,
            *_owned(ledger_entries, tenant_id, account_ids),
        )
        .group_by(tool, will_retry)
    ).all()
    # JSON true reads as "true" on PostgreSQL and as 1 on SQLite
    counts: dict[str, int] = {}
    for row in rows:
        if row[0] and str(row[1]).lower() in ("true", "1"):
            counts[str(row[0])] = counts.get(str(row[0]), 0) + int(row[2])
    return sorted(counts.items())


def pending_by_age(
    conn: Connection,
    *,
    bounds: list[str],
    now_epoch: float,
    tenant_id: str | None,
    account_ids: Collection[str] | None = None,
) -> tuple[list[int], str | None]:
    """Intents waiting for approval, counted by creation time: ``bounds`` are ISO timestamps, newest
    first; count ``i`` is of those created at or before ``bounds[i]`` and after ``bounds[i+1]``
    (the last: at or before the last bound). Also the oldest one's created_at. One past its expiry
    waits for nobody (it can no longer be approved) and is not counted."""
    created = action_intents.c.created_at
    columns: list[Any] = []
    for i, bound in enumerate(bounds):
        newer = bounds[i + 1] if i + 1 < len(bounds) else None
        condition = created <= bound if newer is None else and_(created <= bound, created > newer)
        columns.append(func.coalesce(func.sum(case((condition, 1), else_=0)), 0))
    columns.append(func.min(created))
    row = conn.execute(
        select(*columns).where(
            is_pending_approval(),
            action_intents.c.expires_at_epoch > now_epoch,
            *_owned(action_intents, tenant_id, account_ids),
        )
    ).one()
    return [int(value) for value in row[:-1]], (str(row[-1]) if row[-1] is not None else None)


def _waiting(conn: Connection, query: Any, count_query: Any, limit: int, since: Any) -> WaitingList:
    total = int(conn.execute(count_query).scalar_one())
    items = [
        WaitingItem(
            tenant_id=row.tenant_id,
            account_id=row.account_id,
            action_intent_id=row.action_intent_id,
            since=str(row.since),
            detail=str(row.detail or ""),
        )
        # ordered by an expression, so that no index on the time tempts the planner into walking
        # a tenant's every row to avoid sorting the few that match
        for row in conn.execute(
            query.order_by(func.coalesce(since, ""), query.selected_columns.action_intent_id).limit(limit)
        ).all()
    ]
    return WaitingList(count=total, items=items)


def stuck_attempts(
    conn: Connection,
    *,
    now_epoch: float,
    tenant_id: str | None,
    account_ids: Collection[str] | None = None,
    limit: int,
) -> WaitingList:
    """Attempts still QUEUED or RUNNING after their whole budget (``timeout_seconds``) ran out."""
    where = [
        is_active_attempt(),
        execution_attempts.c.deadline_epoch < now_epoch,
        *_owned(execution_attempts, tenant_id, account_ids),
    ]
    query = select(
        execution_attempts.c.tenant_id,
        execution_attempts.c.account_id,
        execution_attempts.c.action_intent_id,
        execution_attempts.c.started_at.label("since"),
        execution_attempts.c.status.label("detail"),
    ).where(*where)
    count = select(func.count()).select_from(execution_attempts).where(*where)
    return _waiting(conn, query, count, limit, execution_attempts.c.started_at)


def unknown_outcomes(
    conn: Connection,
    *,
    tenant_id: str | None,
    account_ids: Collection[str] | None = None,
    limit: int,
) -> WaitingList:
    """Executions whose latest attempt is AMBIGUOUS (``UNKNOWN_OUTCOME``: the call may have written
    at a target that does not deduplicate; nobody has resolved it yet): found by the
    ``OUTCOME_UNKNOWN`` ledger entry recorded next to such an outcome."""
    joined = ledger_entries.join(
        execution_attempts,
        and_(
            execution_attempts.c.tenant_id == ledger_entries.c.tenant_id,
            execution_attempts.c.account_id == ledger_entries.c.account_id,
            execution_attempts.c.action_intent_id == ledger_entries.c.action_intent_id,
            execution_attempts.c.attempt_count == ledger_entries.c.attempt,
        ),
    )
    where = [
        ledger_entries.c.event_type == _event_type(OUTCOME_UNKNOWN),
        is_ambiguous_attempt(),
        *_owned(ledger_entries, tenant_id, account_ids),
    ]
    query = (
        select(
            ledger_entries.c.tenant_id,
            ledger_entries.c.account_id,
            ledger_entries.c.action_intent_id,
            ledger_entries.c.timestamp.label("since"),
            ledger_entries.c.data["tool_name"].as_string().label("detail"),
        )
        .select_from(joined)
        .where(*where)
    )
    count = select(func.count()).select_from(joined).where(*where)
    return _waiting(conn, query, count, limit, ledger_entries.c.timestamp)


def compensations_for_a_person(
    conn: Connection,
    *,
    tenant_id: str | None,
    account_ids: Collection[str] | None = None,
    limit: int,
) -> WaitingList:
    """Compensations nobody will try again: FAILED with no next try (abandoned after the last
    try, or their outcome unknown), and MANUAL ones (PENDING with no workflow in charge)."""
    where = [
        execution_outcomes.c.compensation_status.in_(["FAILED", "PENDING"]),
        or_(
            and_(
                execution_outcomes.c.compensation_status == "FAILED",
                execution_outcomes.c.compensation_retry_epoch.is_(None),
            ),
            and_(
                execution_outcomes.c.compensation_status == "PENDING",
                execution_outcomes.c.compensation_workflow_id.is_(None),
            ),
        ),
        *_owned(execution_outcomes, tenant_id, account_ids),
    ]
    query = select(
        execution_outcomes.c.tenant_id,
        execution_outcomes.c.account_id,
        execution_outcomes.c.action_intent_id,
        execution_outcomes.c.completed_at.label("since"),
        execution_outcomes.c.compensation_status.label("detail"),
    ).where(*where)
    count = select(func.count()).select_from(execution_outcomes).where(*where)
    return _waiting(conn, query, count, limit, execution_outcomes.c.completed_at)


def dead_letter_count(conn: Connection, *, tenant_id: str | None) -> int:
    """Deliveries of the outbox that were dead-lettered (of the tenant's messages, or everyone's)."""
    query = (
        select(func.count())
        .select_from(
            outbox_deliveries.join(
                outbox_messages, outbox_messages.c.message_id == outbox_deliveries.c.message_id
            )
        )
        .where(outbox_deliveries.c.status == DEAD_LETTER)
    )
    if tenant_id is not None:
        query = query.where(outbox_messages.c.tenant_id == tenant_id)
    return int(conn.execute(query).scalar_one())


def tenants(conn: Connection, *, limit: int) -> list[str]:
    """The tenants that have intents, in name order (at most ``limit``)."""
    query = select(action_intents.c.tenant_id).distinct().order_by(action_intents.c.tenant_id).limit(limit)
    return [str(row[0]) for row in conn.execute(query).all()]


class SqlDashboardRepository:
    """The dashboard repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def outcomes_per_minute(
        self, *, since: str, until: str, tenant_id: str | None, account_ids: Collection[str] | None = None
    ) -> list[tuple[str, str, int]]:
        return outcomes_per_minute(
            self._conn, since=since, until=until, tenant_id=tenant_id, account_ids=account_ids
        )

    def failures_by_class(
        self, *, since: str, until: str, tenant_id: str | None, account_ids: Collection[str] | None = None
    ) -> dict[str, int]:
        return failures_by_class(
            self._conn, since=since, until=until, tenant_id=tenant_id, account_ids=account_ids
        )

    def approval_waits(
        self,
        *,
        since: str,
        until: str,
        tenant_id: str | None,
        account_ids: Collection[str] | None = None,
        limit: int,
    ) -> tuple[int, list[tuple[str, str]]]:
        return approval_waits(
            self._conn, since=since, until=until, tenant_id=tenant_id, account_ids=account_ids, limit=limit
        )

    def approval_to_outcome(
        self,
        *,
        since: str,
        until: str,
        tenant_id: str | None,
        account_ids: Collection[str] | None = None,
        limit: int,
    ) -> tuple[int, list[tuple[str, str]]]:
        return approval_to_outcome(
            self._conn, since=since, until=until, tenant_id=tenant_id, account_ids=account_ids, limit=limit
        )

    def tool_outcome_counts(
        self, *, since: str, until: str, tenant_id: str | None, account_ids: Collection[str] | None = None
    ) -> list[tuple[str, str, int]]:
        return tool_outcome_counts(
            self._conn, since=since, until=until, tenant_id=tenant_id, account_ids=account_ids
        )

    def tool_timings(
        self,
        *,
        since: str,
        until: str,
        tenant_id: str | None,
        account_ids: Collection[str] | None = None,
        limit: int,
    ) -> list[tuple[str, str, str]]:
        return tool_timings(
            self._conn, since=since, until=until, tenant_id=tenant_id, account_ids=account_ids, limit=limit
        )

    def retried_tries(
        self, *, since: str, until: str, tenant_id: str | None, account_ids: Collection[str] | None = None
    ) -> list[tuple[str, int]]:
        return retried_tries(
            self._conn, since=since, until=until, tenant_id=tenant_id, account_ids=account_ids
        )

    def pending_by_age(
        self,
        *,
        bounds: list[str],
        now_epoch: float,
        tenant_id: str | None,
        account_ids: Collection[str] | None = None,
    ) -> tuple[list[int], str | None]:
        return pending_by_age(
            self._conn, bounds=bounds, now_epoch=now_epoch, tenant_id=tenant_id, account_ids=account_ids
        )

    def stuck_attempts(
        self,
        *,
        now_epoch: float,
        tenant_id: str | None,
        account_ids: Collection[str] | None = None,
        limit: int,
    ) -> WaitingList:
        return stuck_attempts(
            self._conn, now_epoch=now_epoch, tenant_id=tenant_id, account_ids=account_ids, limit=limit
        )

    def unknown_outcomes(
        self, *, tenant_id: str | None, account_ids: Collection[str] | None = None, limit: int
    ) -> WaitingList:
        return unknown_outcomes(self._conn, tenant_id=tenant_id, account_ids=account_ids, limit=limit)

    def compensations_for_a_person(
        self, *, tenant_id: str | None, account_ids: Collection[str] | None = None, limit: int
    ) -> WaitingList:
        return compensations_for_a_person(
            self._conn, tenant_id=tenant_id, account_ids=account_ids, limit=limit
        )

    def dead_letter_count(self, *, tenant_id: str | None) -> int:
        return dead_letter_count(self._conn, tenant_id=tenant_id)

    def tenants(self, *, limit: int) -> list[str]:
        return tenants(self._conn, limit=limit)
