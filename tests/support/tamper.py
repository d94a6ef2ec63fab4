"""Changing a stored intent behind the service's back: SQL on its JSON document, as someone with
write access to the database could (its recorded ``action_hash`` stays what the approval wrote)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from fulfill.domain.action_hash import action_hash
from fulfill.domain.models import ActionIntentV1
from fulfill.store.db import Database
from fulfill.store.tables import action_intents


def _where(tenant_id: str, action_intent_id: str) -> list[Any]:
    return [action_intents.c.tenant_id == tenant_id, action_intents.c.action_intent_id == action_intent_id]


def tamper_document(
    db: Database, action_intent_id: str, *, tenant_id: str = "t1", **changes: Any
) -> ActionIntentV1:
    """Overwrite fields of the intent's stored document (JSON values); only the document changes,
    no column. Returns the intent as the service will now read it."""
    with db.write() as conn:
        document = conn.execute(
            select(action_intents.c.document).where(*_where(tenant_id, action_intent_id))
        ).scalar_one()
        changed = {**dict(document), **changes}
        conn.execute(
            update(action_intents).where(*_where(tenant_id, action_intent_id)).values(document=changed)
        )
    return ActionIntentV1.model_validate(changed)


def bind_stored(db: Database, action_intent_id: str, *, tenant_id: str = "t1") -> ActionIntentV1:
    """Record on a stored (seeded) intent the hash an approval would have recorded."""
    with db.write() as conn:
        document = conn.execute(
            select(action_intents.c.document).where(*_where(tenant_id, action_intent_id))
        ).scalar_one()
        intent = ActionIntentV1.model_validate(document)
        bound = intent.model_copy(update={"action_hash": action_hash(intent)})
        conn.execute(
            update(action_intents)
            .where(*_where(tenant_id, action_intent_id))
            .values(document=bound.model_dump(mode="json"))
        )
    return bound
