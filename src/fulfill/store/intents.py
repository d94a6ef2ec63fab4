"""Action intents: stored as a validated document plus the columns queries need."""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from fulfill.domain.models import ActionIntentV1, ApprovalStatus
from fulfill.store.db import insert_ignore
from fulfill.store.tables import action_intents


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
        },
    )


def get_intent(conn: Connection, tenant_id: str, action_intent_id: str) -> ActionIntentV1 | None:
    row = conn.execute(
        select(action_intents.c.document).where(
            action_intents.c.tenant_id == tenant_id, action_intents.c.action_intent_id == action_intent_id
        )
    ).first()
    return ActionIntentV1.model_validate(row.document) if row else None


def get_request_hash(conn: Connection, tenant_id: str, action_intent_id: str) -> str | None:
    return conn.execute(
        select(action_intents.c.request_hash).where(
            action_intents.c.tenant_id == tenant_id, action_intents.c.action_intent_id == action_intent_id
        )
    ).scalar_one_or_none()


def intent_id_taken(conn: Connection, action_intent_id: str) -> bool:
    """Whether any tenant already uses this id (ids are unique service-wide)."""
    found = conn.execute(
        select(action_intents.c.tenant_id).where(action_intents.c.action_intent_id == action_intent_id)
    ).first()
    return found is not None


def transition_approval(
    conn: Connection,
    intent: ActionIntentV1,
    *,
    to_status: ApprovalStatus,
    now: str,
    approved_by: str | None = None,
) -> ActionIntentV1 | None:
    """Move an intent to a new approval status, only if nobody moved it meanwhile."""
    changes: dict[str, object] = {"approval_status": to_status, "updated_at": now}
    if to_status is ApprovalStatus.APPROVED:
        changes["approved_by"] = approved_by
        changes["approval_timestamp"] = now
    updated = intent.model_copy(update=changes)
    result = conn.execute(
        update(action_intents)
        .where(
            action_intents.c.tenant_id == intent.tenant_id,
            action_intents.c.action_intent_id == intent.action_intent_id,
            action_intents.c.approval_status == intent.approval_status.value,
        )
        .values(approval_status=to_status.value, document=updated.model_dump(mode="json"), updated_at=now)
    )
    return updated if result.rowcount == 1 else None
