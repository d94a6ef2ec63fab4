"""Action intents: stored as a validated document plus the columns queries need."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, text, tuple_, update

from fulfill.domain.models import (
    ActionIntentV1,
    ActionOutcomeV1,
    ApprovalStatus,
    ExecutionAttempt,
    ExecutionStatus,
    RegistryEntry,
)
from fulfill.domain.records import ListedExecution as ListedExecution
from fulfill.domain.records import PendingFilter as PendingFilter
from fulfill.store.db import insert_ignore
from fulfill.store.tables import (
    action_intents,
    action_type_registry,
    execution_attempts,
    execution_outcomes,
    is_pending_approval,
)

# The statements of every request's path, built once with their values bound at execution: a
# statement built per call costs its construction and its cache key on every execution (about
# 60 µs each), for the same SQL from SQLAlchemy's compiled cache.
_KEY = (
    action_intents.c.tenant_id == bindparam("k_tenant_id"),
    action_intents.c.action_intent_id == bindparam("k_action_intent_id"),
)
_GET_INTENT = select(action_intents.c.document).where(*_KEY)
_GET_INTENT_FOR_UPDATE = _GET_INTENT.with_for_update()
_GET_APPROVAL_STATUSES = select(
    action_intents.c.tenant_id, action_intents.c.action_intent_id, action_intents.c.approval_status
).where(
    tuple_(action_intents.c.tenant_id, action_intents.c.action_intent_id).in_(
        bindparam("k_keys", expanding=True)
    )
)
# Keys per statement: far below SQLite's 32,766 bound variables and PostgreSQL's 65,535.
_KEYS_PER_STATEMENT = 500
_GET_INTENT_WITH_REQUEST_HASH = select(action_intents.c.document, action_intents.c.request_hash).where(*_KEY)
# The intent and the registry version it is pinned to (an outer join: the entry may be missing).
_GET_INTENT_WITH_ENTRY = (
    select(action_intents.c.document, action_type_registry.c.document.label("entry"))
    .select_from(
        action_intents.outerjoin(
            action_type_registry,
            and_(
                action_type_registry.c.action_type == action_intents.c.action_type,
                action_type_registry.c.registry_version == action_intents.c.registry_version,
            ),
        )
    )
    .where(*_KEY)
)
_DOCUMENT = bindparam("v_document", type_=action_intents.c.document.type)
_SAVED = {
    "approval_status": bindparam("v_approval_status"),
    "document": _DOCUMENT,
    "updated_at": bindparam("v_updated_at"),
    "last_update_at": bindparam("v_updated_at"),
}
_SAVE_INTENT = update(action_intents).where(*_KEY).values(**_SAVED)
_SAVE_INTENT_AND_EXECUTION = _SAVE_INTENT.values(execution_status=bindparam("v_execution_status"))
_TRANSITION = (
    update(action_intents)
    .where(*_KEY, action_intents.c.approval_status == bindparam("k_approval_status"))
    .values(**_SAVED)
)
_TRANSITION_AND_EXECUTION = _TRANSITION.values(execution_status=bindparam("v_execution_status"))
# An execution's moves, marked on its intent for the account listing (every step that moves it).
_MARK_CHANGE = update(action_intents).where(*_KEY).values(last_update_at=bindparam("v_at"))
_MARK_EXECUTION = _MARK_CHANGE.values(execution_status=bindparam("v_execution_status"))
_LOCK_AND_MARK_EXECUTION = _MARK_EXECUTION.returning(action_intents.c.document)


def _key(tenant_id: str, action_intent_id: str) -> dict[str, Any]:
    return {"k_tenant_id": tenant_id, "k_action_intent_id": action_intent_id}


def insert_intent(conn: Connection, intent: ActionIntentV1, request_hash: str) -> bool:
    return insert_ignore(
        conn,
        action_intents,
        {
            "tenant_id": intent.tenant_id,
            "account_id": intent.account_id,
            "action_intent_id": intent.action_intent_id,
            "action_type": intent.action_type,
            "approval_status": intent.approval_status.value,
            "registry_version": intent.registry_version,
            "expires_at_epoch": intent.expires_at_epoch,
            "request_hash": request_hash,
            "document": intent.model_dump(mode="json"),
            "created_at": intent.created_at,
            "updated_at": intent.updated_at,
            "execution_status": ExecutionStatus.PENDING.value,
            "last_update_at": intent.updated_at,
            "proposed_by": intent.proposed_by,
            "proposed_via": intent.proposed_via.value if intent.proposed_via else None,
            "escalates_at_epoch": intent.escalates_at_epoch if intent.escalated_at is None else None,
            "policy_id": intent.approval_rule.policy_id if intent.approval_rule else None,
        },
    )


def get_intent(
    conn: Connection, tenant_id: str, action_intent_id: str, *, for_update: bool = False
) -> ActionIntentV1 | None:
    """One intent of one tenant. ``for_update`` locks the row until the transaction ends, so that
    transactions deciding on the intent's state (cancel, RecordOutcome) serialise."""
    query = _GET_INTENT_FOR_UPDATE if for_update else _GET_INTENT
    row = conn.execute(query, _key(tenant_id, action_intent_id)).first()
    return ActionIntentV1.model_validate(row.document) if row else None


def get_approval_statuses(
    conn: Connection, keys: Collection[tuple[str, str]]
) -> dict[tuple[str, str], ApprovalStatus]:
    """The approval status of several intents, each named by its ``(tenant_id, action_intent_id)``,
    in one statement (per 500 keys): a key with no intent of that tenant is absent."""
    ordered = sorted(set(keys))
    found: dict[tuple[str, str], ApprovalStatus] = {}
    for start in range(0, len(ordered), _KEYS_PER_STATEMENT):
        chunk = [list(key) for key in ordered[start : start + _KEYS_PER_STATEMENT]]
        for row in conn.execute(_GET_APPROVAL_STATUSES, {"k_keys": chunk}):
            found[(row.tenant_id, row.action_intent_id)] = ApprovalStatus(row.approval_status)
    return found


def get_intent_with_request_hash(
    conn: Connection, tenant_id: str, action_intent_id: str
) -> tuple[ActionIntentV1, str] | None:
    """One intent of one tenant and the hash of the request that created it (what a repeated
    creation is compared with), in one statement."""
    row = conn.execute(_GET_INTENT_WITH_REQUEST_HASH, _key(tenant_id, action_intent_id)).first()
    return (ActionIntentV1.model_validate(row.document), row.request_hash) if row else None


def get_intent_with_entry(
    conn: Connection, tenant_id: str, action_intent_id: str
) -> tuple[ActionIntentV1, RegistryEntry | None] | None:
    """One intent of one tenant and the registry entry it is pinned to (its action type at its
    registry version; None when there is none), in one statement: what
    ``uow.intents.get_intent`` and then ``uow.registry.get_entry`` of its version read."""
    row = conn.execute(_GET_INTENT_WITH_ENTRY, _key(tenant_id, action_intent_id)).first()
    if row is None:
        return None
    entry = RegistryEntry.model_validate(row.entry) if row.entry is not None else None
    return ActionIntentV1.model_validate(row.document), entry


def transition_approval(
    conn: Connection,
    intent: ActionIntentV1,
    *,
    to_status: ApprovalStatus,
    now: str,
    approved_by: str | None = None,
    action_hash: str | None = None,
    execution_status: ExecutionStatus | None = None,
) -> ActionIntentV1 | None:
    """Move an intent to a new approval status, only if nobody moved it meanwhile."""
    changes: dict[str, object] = {"approval_status": to_status, "updated_at": now}
    if to_status is ApprovalStatus.APPROVED:
        changes["approved_by"] = approved_by
        changes["approval_timestamp"] = now
        changes["action_hash"] = action_hash
    updated = intent.model_copy(update=changes)
    values = {
        **_key(intent.tenant_id, intent.action_intent_id),
        "k_approval_status": intent.approval_status.value,
        "v_approval_status": to_status.value,
        "v_document": updated.model_dump(mode="json"),
        "v_updated_at": now,
    }
    if execution_status is not None:
        result = conn.execute(
            _TRANSITION_AND_EXECUTION, {**values, "v_execution_status": execution_status.value}
        )
    else:
        result = conn.execute(_TRANSITION, values)
    return updated if result.rowcount == 1 else None


def save_intent(
    conn: Connection, intent: ActionIntentV1, *, execution_status: ExecutionStatus | None = None
) -> None:
    """Write an intent read in the same transaction with ``for_update`` (its row is locked, so
    nothing changed it meanwhile): its document, approval status and last change."""
    values = {
        **_key(intent.tenant_id, intent.action_intent_id),
        "v_approval_status": intent.approval_status.value,
        "v_document": intent.model_dump(mode="json"),
        "v_updated_at": intent.updated_at,
    }
    if execution_status is not None:
        conn.execute(_SAVE_INTENT_AND_EXECUTION, {**values, "v_execution_status": execution_status.value})
    else:
        conn.execute(_SAVE_INTENT, values)


def escalation_candidates(conn: Connection, *, now_epoch: float, limit: int) -> list[ActionIntentV1]:
    """Intents of every tenant still waiting for approval whose first approval window ended by
    ``now_epoch`` and which are not escalated yet (nor expired), the longest overdue first: a range
    scan of the partial index of pending intents by ``escalates_at_epoch``. ``domain/escalation.select_due``
    decides which of them are due."""
    query = (
        select(action_intents.c.document)
        .where(
            is_pending_approval(),
            action_intents.c.escalates_at_epoch.is_not(None),
            action_intents.c.escalates_at_epoch <= now_epoch,
            action_intents.c.expires_at_epoch > now_epoch,
        )
        .order_by(action_intents.c.escalates_at_epoch, action_intents.c.action_intent_id)
        .limit(limit)
    )
    return [ActionIntentV1.model_validate(row.document) for row in conn.execute(query).all()]


def mark_escalated(conn: Connection, intent: ActionIntentV1) -> bool:
    """Write the escalated intent (read in the same transaction with ``for_update``), only if it
    still waits for approval and nobody escalated it meanwhile (compare-and-set: the escalation
    column is cleared by the escalation itself). True when this call escalated it."""
    result = conn.execute(
        update(action_intents)
        .where(
            action_intents.c.tenant_id == intent.tenant_id,
            action_intents.c.action_intent_id == intent.action_intent_id,
            is_pending_approval(),
            action_intents.c.escalates_at_epoch.is_not(None),
        )
        .values(
            escalates_at_epoch=None,
            document=intent.model_dump(mode="json"),
            updated_at=intent.updated_at,
            last_update_at=intent.updated_at,
        )
    )
    return result.rowcount == 1


def mark_execution(
    conn: Connection, tenant_id: str, action_intent_id: str, *, status: ExecutionStatus | None, at: str
) -> None:
    """Record the execution's latest status (or only its latest change) for the account listing."""
    if status is None:
        conn.execute(_MARK_CHANGE, {**_key(tenant_id, action_intent_id), "v_at": at})
        return
    conn.execute(
        _MARK_EXECUTION, {**_key(tenant_id, action_intent_id), "v_at": at, "v_execution_status": status.value}
    )


def lock_and_mark_execution(
    conn: Connection, tenant_id: str, action_intent_id: str, *, status: ExecutionStatus, at: str
) -> ActionIntentV1 | None:
    """:func:`mark_execution` that returns the intent as it is now, its row locked until the
    transaction ends: what ``get_intent(for_update=True)`` followed by ``mark_execution`` do, in
    one statement (``UPDATE … RETURNING``; an update locks the row as ``FOR UPDATE`` does, and
    under READ COMMITTED returns the row as the transaction it waited for left it)."""
    row = conn.execute(
        _LOCK_AND_MARK_EXECUTION,
        {**_key(tenant_id, action_intent_id), "v_at": at, "v_execution_status": status.value},
    ).first()
    return ActionIntentV1.model_validate(row.document) if row else None


def list_account_executions(
    conn: Connection,
    *,
    tenant_id: str,
    account_id: str,
    status: ExecutionStatus | None,
    now_epoch: float,
    after: tuple[str, str] | None,
    limit: int,
) -> list[ListedExecution]:
    """An account's executions, newest change first, starting after ``(last_update_at, id)``.

    Keyset pagination on the ``(tenant, account[, status], last_update_at, id)`` index: the cost
    is O(limit) whatever the number of executions. Attempts and outcomes are joined on their
    primary keys for the rows of the page only.
    """
    i, a, o = action_intents, execution_attempts, execution_outcomes
    query = (
        select(i.c.document, i.c.last_update_at, a, o.c.document.label("outcome_document"))
        .select_from(
            i.outerjoin(
                a,
                and_(
                    a.c.tenant_id == i.c.tenant_id,
                    a.c.account_id == i.c.account_id,
                    a.c.action_intent_id == i.c.action_intent_id,
                ),
            ).outerjoin(
                o,
                and_(
                    o.c.tenant_id == a.c.tenant_id,
                    o.c.account_id == a.c.account_id,
                    o.c.action_intent_id == a.c.action_intent_id,
                    o.c.attempt_count == a.c.attempt_count,
                ),
            )
        )
        .where(i.c.tenant_id == tenant_id, i.c.account_id == account_id)
        .order_by(i.c.last_update_at.desc(), i.c.action_intent_id.desc())
        .limit(limit)
    )
    if status is ExecutionStatus.PENDING:
        query = query.where(i.c.execution_status == status.value, i.c.expires_at_epoch > now_epoch)
    elif status is ExecutionStatus.EXPIRED:
        query = query.where(
            or_(
                i.c.execution_status == status.value,
                and_(
                    i.c.execution_status == ExecutionStatus.PENDING.value, i.c.expires_at_epoch <= now_epoch
                ),
            )
        )
    elif status is not None:
        query = query.where(i.c.execution_status == status.value)
    if after is not None:
        updated, intent_id = after
        # "<=" lets the database seek straight to the cursor in the index instead of walking
        # every newer entry (a deep page costs what the first page costs); the OR then skips the
        # rows of the cursor's own timestamp that the previous page already returned.
        query = query.where(
            i.c.last_update_at <= updated,
            or_(i.c.last_update_at < updated, i.c.action_intent_id < intent_id),
        )
    listed: list[ListedExecution] = []
    for row in conn.execute(query).all():
        values = dict(row._mapping)
        attempt = None
        if values.get("attempt_count") is not None:
            attempt = ExecutionAttempt.model_validate(
                {field: values[field] for field in ExecutionAttempt.model_fields}
            )
        outcome_document = values.get("outcome_document")
        listed.append(
            ListedExecution(
                intent=ActionIntentV1.model_validate(values["document"]),
                attempt=attempt,
                outcome=ActionOutcomeV1.model_validate(outcome_document) if outcome_document else None,
                last_update_at=values["last_update_at"],
            )
        )
    return listed


def list_pending_approval(
    conn: Connection, *, tenant_id: str, account_ids: frozenset[str] | None, limit: int
) -> list[ActionIntentV1]:
    """A tenant's intents waiting for approval (expired ones included), newest first; only the
    given accounts when ``account_ids`` is a set."""
    query = (
        select(action_intents.c.document)
        .where(
            action_intents.c.tenant_id == tenant_id,
            is_pending_approval(),
        )
        .order_by(action_intents.c.created_at.desc(), action_intents.c.action_intent_id.desc())
        .limit(limit)
    )
    if account_ids is not None:
        query = query.where(action_intents.c.account_id.in_(sorted(account_ids)))
    return [ActionIntentV1.model_validate(row.document) for row in conn.execute(query).all()]


def _pending_query(tenant_id: str, wanted: PendingFilter) -> list[Any]:
    conditions: list[Any] = [
        action_intents.c.tenant_id == tenant_id,
        is_pending_approval(),
    ]
    if wanted.account_ids is not None:
        conditions.append(action_intents.c.account_id.in_(sorted(wanted.account_ids)))
    if wanted.account_id is not None:
        conditions.append(action_intents.c.account_id == wanted.account_id)
    if wanted.action_type is not None:
        conditions.append(action_intents.c.action_type == wanted.action_type)
    if wanted.created_before is not None:
        conditions.append(action_intents.c.created_at < wanted.created_before)
    if wanted.proposed_by is not None:
        conditions.append(action_intents.c.proposed_by == wanted.proposed_by)
    if wanted.policy_id is not None:
        conditions.append(action_intents.c.policy_id == wanted.policy_id)
    return conditions


def page_pending_approval(
    conn: Connection,
    *,
    tenant_id: str,
    wanted: PendingFilter,
    oldest_first: bool,
    after: tuple[str, str] | None,
    limit: int,
) -> tuple[list[ActionIntentV1], bool]:
    """One page of a tenant's intents waiting for approval (expired ones included), by creation
    time, newest or oldest first, after the (created_at, id) of the last row of the previous page;
    and whether more follow. Keyset paging: rows approved meanwhile shift nothing."""
    conditions = _pending_query(tenant_id, wanted)
    created, intent_id = action_intents.c.created_at, action_intents.c.action_intent_id
    if after is not None:
        at, last = after
        if oldest_first:
            conditions.append(or_(created > at, and_(created == at, intent_id > last)))
        else:
            conditions.append(or_(created < at, and_(created == at, intent_id < last)))
    order = [created.asc(), intent_id.asc()] if oldest_first else [created.desc(), intent_id.desc()]
    query = select(action_intents.c.document).where(*conditions).order_by(*order).limit(limit + 1)
    rows = conn.execute(query).all()
    return [ActionIntentV1.model_validate(row.document) for row in rows[:limit]], len(rows) > limit


def count_pending_approval(conn: Connection, *, tenant_id: str, wanted: PendingFilter) -> int:
    query = select(func.count()).select_from(action_intents).where(*_pending_query(tenant_id, wanted))
    return int(conn.execute(query).scalar_one())


# A tenant's account names, one index seek each: the first after the one before (in the primary
# key, tenant then account), up to ``most``. A DISTINCT over the tenant's intents walked every
# intent it ever had, on every console page that offers the accounts to choose from: 2.2 ms on
# SQLite at 30,000 intents in one account, growing with the tenant's history. (The names come
# out in order as they are found; the last ORDER BY, over at most ``most`` rows, says so.)
_ACCOUNTS = text(
    """
    WITH RECURSIVE listed(account_id, n) AS (
        SELECT (SELECT account_id FROM action_intents WHERE tenant_id = :tenant_id
                ORDER BY account_id LIMIT 1), 1
        UNION ALL
        SELECT (SELECT later.account_id FROM action_intents AS later
                WHERE later.tenant_id = :tenant_id AND later.account_id > listed.account_id
                ORDER BY later.account_id LIMIT 1), listed.n + 1
        FROM listed
        WHERE listed.account_id IS NOT NULL AND listed.n < :most
    )
    SELECT account_id FROM listed WHERE account_id IS NOT NULL ORDER BY account_id
    """
)


def list_accounts(conn: Connection, *, tenant_id: str, limit: int) -> list[str]:
    """The accounts of a tenant that have intents, in name order (at most ``limit``)."""
    if limit < 1:
        return []
    rows = conn.execute(_ACCOUNTS, {"tenant_id": tenant_id, "most": limit}).all()
    return [row.account_id for row in rows]


def list_recent(conn: Connection, tenant_id: str, limit: int) -> list[ActionIntentV1]:
    """A tenant's most recently created intents (every account and status), newest first."""
    query = (
        select(action_intents.c.document)
        .where(action_intents.c.tenant_id == tenant_id)
        .order_by(action_intents.c.created_at.desc(), action_intents.c.action_intent_id.desc())
        .limit(limit)
    )
    return [ActionIntentV1.model_validate(row.document) for row in conn.execute(query).all()]


class SqlIntentsRepository:
    """The intents repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def insert_intent(self, intent: ActionIntentV1, request_hash: str) -> bool:
        return insert_intent(self._conn, intent, request_hash)

    def get_intent(
        self, tenant_id: str, action_intent_id: str, *, for_update: bool = False
    ) -> ActionIntentV1 | None:
        return get_intent(self._conn, tenant_id, action_intent_id, for_update=for_update)

    def get_approval_statuses(
        self, keys: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], ApprovalStatus]:
        return get_approval_statuses(self._conn, keys)

    def get_intent_with_request_hash(
        self, tenant_id: str, action_intent_id: str
    ) -> tuple[ActionIntentV1, str] | None:
        return get_intent_with_request_hash(self._conn, tenant_id, action_intent_id)

    def get_intent_with_entry(
        self, tenant_id: str, action_intent_id: str
    ) -> tuple[ActionIntentV1, RegistryEntry | None] | None:
        return get_intent_with_entry(self._conn, tenant_id, action_intent_id)

    def transition_approval(
        self,
        intent: ActionIntentV1,
        *,
        to_status: ApprovalStatus,
        now: str,
        approved_by: str | None = None,
        action_hash: str | None = None,
        execution_status: ExecutionStatus | None = None,
    ) -> ActionIntentV1 | None:
        return transition_approval(
            self._conn,
            intent,
            to_status=to_status,
            now=now,
            approved_by=approved_by,
            action_hash=action_hash,
            execution_status=execution_status,
        )

    def save_intent(self, intent: ActionIntentV1, *, execution_status: ExecutionStatus | None = None) -> None:
        return save_intent(self._conn, intent, execution_status=execution_status)

    def escalation_candidates(self, *, now_epoch: float, limit: int) -> list[ActionIntentV1]:
        return escalation_candidates(self._conn, now_epoch=now_epoch, limit=limit)

    def mark_escalated(self, intent: ActionIntentV1) -> bool:
        return mark_escalated(self._conn, intent)

    def mark_execution(
        self, tenant_id: str, action_intent_id: str, *, status: ExecutionStatus | None, at: str
    ) -> None:
        return mark_execution(self._conn, tenant_id, action_intent_id, status=status, at=at)

    def lock_and_mark_execution(
        self, tenant_id: str, action_intent_id: str, *, status: ExecutionStatus, at: str
    ) -> ActionIntentV1 | None:
        return lock_and_mark_execution(self._conn, tenant_id, action_intent_id, status=status, at=at)

    def list_account_executions(
        self,
        *,
        tenant_id: str,
        account_id: str,
        status: ExecutionStatus | None,
        now_epoch: float,
        after: tuple[str, str] | None,
        limit: int,
    ) -> list[ListedExecution]:
        return list_account_executions(
            self._conn,
            tenant_id=tenant_id,
            account_id=account_id,
            status=status,
            now_epoch=now_epoch,
            after=after,
            limit=limit,
        )

    def list_pending_approval(
        self, *, tenant_id: str, account_ids: frozenset[str] | None, limit: int
    ) -> list[ActionIntentV1]:
        return list_pending_approval(self._conn, tenant_id=tenant_id, account_ids=account_ids, limit=limit)

    def page_pending_approval(
        self,
        *,
        tenant_id: str,
        wanted: PendingFilter,
        oldest_first: bool,
        after: tuple[str, str] | None,
        limit: int,
    ) -> tuple[list[ActionIntentV1], bool]:
        return page_pending_approval(
            self._conn,
            tenant_id=tenant_id,
            wanted=wanted,
            oldest_first=oldest_first,
            after=after,
            limit=limit,
        )

    def count_pending_approval(self, *, tenant_id: str, wanted: PendingFilter) -> int:
        return count_pending_approval(self._conn, tenant_id=tenant_id, wanted=wanted)

    def list_accounts(self, *, tenant_id: str, limit: int) -> list[str]:
        return list_accounts(self._conn, tenant_id=tenant_id, limit=limit)

    def list_recent(self, tenant_id: str, limit: int) -> list[ActionIntentV1]:
        return list_recent(self._conn, tenant_id, limit)
