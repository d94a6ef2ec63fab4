"""Approval policies (domain/policies.py), every version kept.

A policy is kept under its owner: the tenant's id, or :data:`PLATFORM_OWNER` for the platform's.
Every write adds the next version of (owner, policy_id) and marks it current; two writers that
read the same version race for the same key, and the one that comes second inserts nothing (its
caller answers 409). A deletion is a version too, with ``deleted_at`` set: the policy stops
applying, and every version it had stays for the audit.
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select, update

from fulfill.domain.policies import Policy, PolicyVersion, evaluation_order
from fulfill.store.db import insert_ignore
from fulfill.store.tables import PLATFORM_OWNER, approval_policies


def _owner(tenant_id: str | None) -> str:
    return PLATFORM_OWNER if tenant_id is None else tenant_id


def insert_version(conn: Connection, policy: Policy, *, deleted_at: str | None = None) -> bool:
    """Insert exactly this version of the policy and make it the current one; False (and nothing
    changed) when that version is already taken."""
    owner = _owner(policy.tenant_id)
    inserted = insert_ignore(
        conn,
        approval_policies,
        {
            "owner": owner,
            "policy_id": policy.policy_id,
            "version": policy.version,
            "is_current": True,
            "priority": policy.priority,
            "document": policy.model_dump(mode="json"),
            "created_at": policy.created_at,
            "updated_at": policy.updated_at,
            "deleted_at": deleted_at,
        },
    )
    if inserted:
        conn.execute(
            update(approval_policies)
            .where(
                approval_policies.c.owner == owner,
                approval_policies.c.policy_id == policy.policy_id,
                approval_policies.c.version < policy.version,
                approval_policies.c.is_current.is_(True),
            )
            .values(is_current=False)
        )
    return inserted


def get_current(conn: Connection, tenant_id: str | None, policy_id: str) -> Policy | None:
    """The current version of a live policy of ``tenant_id`` (None: of the platform); None when
    there is no such policy or it was deleted."""
    row = conn.execute(
        select(approval_policies.c.document).where(
            approval_policies.c.owner == _owner(tenant_id),
            approval_policies.c.policy_id == policy_id,
            approval_policies.c.is_current.is_(True),
            approval_policies.c.deleted_at.is_(None),
        )
    ).first()
    return Policy.model_validate(row.document) if row else None


def list_versions(conn: Connection, tenant_id: str | None, policy_id: str) -> list[PolicyVersion]:
    """Every version of a policy of ``tenant_id`` (None: of the platform), oldest first; the
    deletion, if any, last."""
    rows = conn.execute(
        select(approval_policies.c.document, approval_policies.c.deleted_at)
        .where(approval_policies.c.owner == _owner(tenant_id), approval_policies.c.policy_id == policy_id)
        .order_by(approval_policies.c.version)
    ).all()
    return [PolicyVersion(Policy.model_validate(row.document), row.deleted_at) for row in rows]


# Read by every intent's creation: built once, the tenant bound at execution (see store/intents.py).
_LIST_EFFECTIVE = select(approval_policies.c.document).where(
    approval_policies.c.owner.in_([bindparam("k_tenant_id"), bindparam("k_platform")]),
    approval_policies.c.is_current.is_(True),
    approval_policies.c.deleted_at.is_(None),
)


def list_effective(conn: Connection, tenant_id: str) -> list[Policy]:
    """The current version of every live policy of the tenant and of the platform, in evaluation
    order: the tenant's by (priority, policy_id), then the platform's."""
    rows = conn.execute(_LIST_EFFECTIVE, {"k_tenant_id": tenant_id, "k_platform": PLATFORM_OWNER}).all()
    return evaluation_order(Policy.model_validate(row.document) for row in rows)


class SqlPoliciesRepository:
    """The policies repository over one connection: each method is this module's function."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def insert_version(self, policy: Policy, *, deleted_at: str | None = None) -> bool:
        return insert_version(self._conn, policy, deleted_at=deleted_at)

    def get_current(self, tenant_id: str | None, policy_id: str) -> Policy | None:
        return get_current(self._conn, tenant_id, policy_id)

    def list_versions(self, tenant_id: str | None, policy_id: str) -> list[PolicyVersion]:
        return list_versions(self._conn, tenant_id, policy_id)

    def list_effective(self, tenant_id: str) -> list[Policy]:
        return list_effective(self._conn, tenant_id)
