"""The statements of an intent request's path are built once and take each call's values at
execution (store/intents.py, registry.py, policies.py, killswitches.py, notifications.py): each
call must still read and change only its own tenant's rows, with its own values, whatever call
ran the statement before it. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fulfill.domain.models import (
    ApprovalStatus,
    ExecutionStatus,
    GlobalExecutionConfig,
    TenantExecutionConfig,
)
from fulfill.domain.policies import Policy
from fulfill.store import intents, killswitches, policies, registry
from fulfill.store.db import Database, insert_ignore
from fulfill.store.tables import action_type_registry
from tests.support.harness import fresh_database
from tests.unit.factories import make_intent

NOW = "2026-12-05T00:00:00.000Z"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    with fresh_database(tmp_path) as db:
        yield db


def _pending(tenant_id: str, title: str) -> Any:
    return make_intent(
        tenant_id=tenant_id,
        approval_status=ApprovalStatus.PENDING_APPROVAL,
        parameters={"title": title},
    )


def test_approval_statuses_read_together_are_each_read_under_its_own_tenant(database: Database) -> None:
    """``get_approval_statuses`` (what the calls waiting at a gate re-read together): each key
    finds only its own tenant's intent, a key with none is absent, and more keys than one
    statement takes are read in several."""
    a, b = _pending("t1", "of t1"), _pending("t2", "of t2")  # the same action_intent_id
    many = [make_intent(tenant_id="t3", action_intent_id=f"ai_many_{index}") for index in range(1_203)]
    with database.write() as conn:
        assert intents.insert_intent(conn, a, "hash-a")
        assert intents.insert_intent(conn, b, "hash-b")
        for intent in many:
            assert intents.insert_intent(conn, intent, "hash")
        moved = intents.transition_approval(conn, b, to_status=ApprovalStatus.APPROVED, now=NOW)
        assert moved is not None
    key_a, key_b = ("t1", a.action_intent_id), ("t2", b.action_intent_id)
    pending, approved = ApprovalStatus.PENDING_APPROVAL, ApprovalStatus.APPROVED
    with database.read() as conn:
        assert intents.get_approval_statuses(conn, [key_a, key_b]) == {key_a: pending, key_b: approved}
        assert intents.get_approval_statuses(conn, [("t3", a.action_intent_id), ("t1", "ai_none")]) == {}
        assert intents.get_approval_statuses(conn, []) == {}
        found = intents.get_approval_statuses(
            conn, [("t3", intent.action_intent_id) for intent in many] + [key_b]
        )
    assert len(found) == 1_204
    assert found[key_b] is approved
    assert {found[("t3", intent.action_intent_id)] for intent in many} == {approved}


def test_an_intent_is_read_and_changed_only_under_its_own_tenant(database: Database) -> None:
    a, b = _pending("t1", "of t1"), _pending("t2", "of t2")  # the same action_intent_id
    with database.write() as conn:
        assert intents.insert_intent(conn, a, "hash-a")
        assert intents.insert_intent(conn, b, "hash-b")
    with database.read() as conn:
        assert intents.get_intent(conn, "t1", a.action_intent_id) == a
        assert intents.get_intent(conn, "t2", b.action_intent_id) == b
        assert intents.get_intent(conn, "t3", a.action_intent_id) is None
        assert intents.get_intent_with_request_hash(conn, "t2", b.action_intent_id) == (b, "hash-b")
        assert intents.get_intent_with_request_hash(conn, "t1", a.action_intent_id) == (a, "hash-a")
        assert intents.get_intent_with_request_hash(conn, "t3", a.action_intent_id) is None

    with database.write() as conn:
        locked = intents.get_intent(conn, "t2", b.action_intent_id, for_update=True)
        assert locked == b
        moved = intents.transition_approval(
            conn, b, to_status=ApprovalStatus.APPROVED, now=NOW, approved_by="ada", action_hash="h"
        )
        assert moved is not None
        assert moved.approval_status is ApprovalStatus.APPROVED
        # Compare-and-set: the same move again finds the row no longer PENDING_APPROVAL.
        assert intents.transition_approval(conn, b, to_status=ApprovalStatus.APPROVED, now=NOW) is None
        rejected = intents.transition_approval(
            conn, a, to_status=ApprovalStatus.REJECTED, now=NOW, execution_status=ExecutionStatus.CANCELLED
        )
        assert rejected is not None
    with database.read() as conn:
        stored_a = intents.get_intent(conn, "t1", a.action_intent_id)
        stored_b = intents.get_intent(conn, "t2", b.action_intent_id)
    assert stored_a is not None
    assert stored_a.approval_status is ApprovalStatus.REJECTED
    assert stored_a.parameters == {"title": "of t1"}
    assert stored_b is not None
    assert stored_b.approval_status is ApprovalStatus.APPROVED
    assert (stored_b.approved_by, stored_b.action_hash, stored_b.parameters) == (
        "ada",
        "h",
        {"title": "of t2"},
    )

    edited = stored_b.model_copy(update={"parameters": {"title": "edited"}, "updated_at": NOW})
    with database.write() as conn:
        intents.save_intent(conn, edited, execution_status=ExecutionStatus.RUNNING)
        intents.save_intent(conn, stored_a.model_copy(update={"updated_at": NOW}))
    with database.read() as conn:
        assert intents.get_intent(conn, "t2", b.action_intent_id) == edited
        again_a = intents.get_intent(conn, "t1", a.action_intent_id)
    assert again_a is not None
    assert again_a.parameters == {"title": "of t1"}


def _listing_row(database: Database, tenant_id: str, action_intent_id: str) -> tuple[str, str]:
    from sqlalchemy import select

    from fulfill.store.tables import action_intents

    with database.read() as conn:
        row = conn.execute(
            select(action_intents.c.execution_status, action_intents.c.last_update_at).where(
                action_intents.c.tenant_id == tenant_id, action_intents.c.action_intent_id == action_intent_id
            )
        ).one()
    return row.execution_status, row.last_update_at


def test_an_executions_moves_are_marked_only_on_its_own_tenants_intent(database: Database) -> None:
    """The marks StartExecution and RecordOutcome make for the account listing (built once too)."""
    a, b = _pending("t1", "of t1"), _pending("t2", "of t2")  # the same action_intent_id
    with database.write() as conn:
        assert intents.insert_intent(conn, a, "hash-a")
        assert intents.insert_intent(conn, b, "hash-b")
    before_a = _listing_row(database, "t1", a.action_intent_id)
    with database.write() as conn:
        intents.mark_execution(
            conn, "t2", b.action_intent_id, status=ExecutionStatus.RUNNING, at="2026-12-05T00:00:01.000Z"
        )
    assert _listing_row(database, "t2", b.action_intent_id) == ("RUNNING", "2026-12-05T00:00:01.000Z")
    assert _listing_row(database, "t1", a.action_intent_id) == before_a
    with database.write() as conn:  # only its latest change: the status stays
        intents.mark_execution(conn, "t2", b.action_intent_id, status=None, at="2026-12-05T00:00:02.000Z")
        intents.mark_execution(
            conn, "t1", a.action_intent_id, status=ExecutionStatus.PENDING, at="2026-12-05T00:00:03.000Z"
        )
    assert _listing_row(database, "t2", b.action_intent_id) == ("RUNNING", "2026-12-05T00:00:02.000Z")
    assert _listing_row(database, "t1", a.action_intent_id) == ("PENDING", "2026-12-05T00:00:03.000Z")
    with database.write() as conn:
        locked = intents.lock_and_mark_execution(
            conn, "t1", a.action_intent_id, status=ExecutionStatus.SUCCEEDED, at="2026-12-05T00:00:04.000Z"
        )
        assert (
            intents.lock_and_mark_execution(
                conn, "t3", a.action_intent_id, status=ExecutionStatus.FAILED, at="2026-12-05T00:00:05.000Z"
            )
            is None
        )
    assert locked is not None
    assert (locked.tenant_id, locked.parameters) == ("t1", {"title": "of t1"})
    assert _listing_row(database, "t1", a.action_intent_id) == ("SUCCEEDED", "2026-12-05T00:00:04.000Z")
    assert _listing_row(database, "t2", b.action_intent_id) == ("RUNNING", "2026-12-05T00:00:02.000Z")


def _registry_row(
    action_type: str, version: int, tool: str, deprecated_at: str | None = None
) -> dict[str, Any]:
    entry = {
        "action_type": action_type,
        "registry_version": version,
        "tool_name": tool,
        "parameter_mapping": {},
        "created_at": NOW,
        "deprecated_at": deprecated_at,
    }
    return {
        **{k: entry[k] for k in ("action_type", "registry_version", "tool_name", "created_at")},
        "deprecated_at": deprecated_at,
        "document": entry,
    }


def test_registry_reads_take_their_own_action_type_and_version(database: Database) -> None:
    with database.write() as conn:
        insert_ignore(conn, action_type_registry, _registry_row("ONE", 1, "internal.one_v1"))
        insert_ignore(
            conn, action_type_registry, _registry_row("ONE", 2, "internal.one_v2", deprecated_at=NOW)
        )
        insert_ignore(conn, action_type_registry, _registry_row("TWO", 1, "internal.two_v1"))
        insert_ignore(conn, action_type_registry, _registry_row("TWO", 3, "internal.two_v3"))
    with database.read() as conn:
        assert [
            getattr(registry.get_entry(conn, action_type, version), "tool_name", None)
            for action_type, version in (("ONE", 2), ("TWO", 3), ("ONE", 1), ("TWO", 2))
        ] == ["internal.one_v2", "internal.two_v3", "internal.one_v1", None]
        # The newest version not deprecated: ONE's 2 is, so its 1.
        latest = [registry.latest_active_entry(conn, name) for name in ("ONE", "TWO", "THREE")]
    assert [getattr(entry, "tool_name", None) for entry in latest] == [
        "internal.one_v1",
        "internal.two_v3",
        None,
    ]


def test_an_intent_is_read_with_the_registry_entry_it_is_pinned_to(database: Database) -> None:
    """One statement for the intent and its pinned entry (an approval's and StartExecution's
    read): the intent's own action type at its own version, whichever versions exist, and no
    entry when its version is missing; only the tenant's own intent."""
    one_v1 = _pending("t1", "of t1").model_copy(update={"action_type": "ONE", "registry_version": 1})
    one_v2 = one_v1.model_copy(update={"tenant_id": "t2", "registry_version": 2})
    two_v5 = one_v1.model_copy(update={"tenant_id": "t3", "action_type": "TWO", "registry_version": 5})
    with database.write() as conn:
        for intent in (one_v1, one_v2, two_v5):
            assert intents.insert_intent(conn, intent, "hash")
        insert_ignore(conn, action_type_registry, _registry_row("ONE", 1, "internal.one_v1"))
        insert_ignore(conn, action_type_registry, _registry_row("ONE", 2, "internal.one_v2"))
        insert_ignore(conn, action_type_registry, _registry_row("TWO", 1, "internal.two_v1"))
    with database.read() as conn:
        read = {
            tenant: intents.get_intent_with_entry(conn, tenant, one_v1.action_intent_id)
            for tenant in ("t1", "t2", "t3", "t4")
        }
        entries = {
            tenant: registry.get_entry(conn, found[0].action_type, found[0].registry_version)
            for tenant, found in read.items()
            if found is not None
        }
    assert read["t4"] is None
    assert {tenant: found[0] for tenant, found in read.items() if found} == {
        "t1": one_v1,
        "t2": one_v2,
        "t3": two_v5,
    }
    assert {tenant: found[1] for tenant, found in read.items() if found} == entries
    assert [getattr(entries[t], "tool_name", None) for t in ("t1", "t2", "t3")] == [
        "internal.one_v1",
        "internal.one_v2",
        None,
    ]


def _policy(policy_id: str, tenant_id: str | None) -> Policy:
    return Policy.model_validate(
        {
            "policy_id": policy_id,
            "version": 1,
            "scope": "tenant" if tenant_id else "platform",
            "tenant_id": tenant_id,
            "name": f"policy {policy_id}",
            "decision": "AUTO_APPROVE",
            "created_at": NOW,
            "updated_at": NOW,
            "created_by": "ada",
            "updated_by": "ada",
        }
    )


def test_effective_policies_are_the_tenants_own_and_the_platforms(database: Database) -> None:
    with database.write() as conn:
        assert policies.insert_version(conn, _policy("pol_tenantone1", "t1"))
        assert policies.insert_version(conn, _policy("pol_tenanttwo1", "t2"))
        assert policies.insert_version(conn, _policy("pol_platform01", None))
    with database.read() as conn:
        ids = {t: [p.policy_id for p in policies.list_effective(conn, t)] for t in ("t1", "t2", "t3")}
    assert ids == {
        "t1": ["pol_tenantone1", "pol_platform01"],
        "t2": ["pol_tenanttwo1", "pol_platform01"],
        "t3": ["pol_platform01"],
    }


def test_kill_switches_are_read_for_the_tenant_asked(database: Database) -> None:
    with database.write() as conn:
        killswitches.put_tenant(conn, TenantExecutionConfig(tenant_id="t1", execution_enabled=False), now=NOW)
        killswitches.put_tenant(
            conn, TenantExecutionConfig(tenant_id="t2", disabled_action_types=["WIRE"]), now=NOW
        )
        killswitches.put_global(conn, GlobalExecutionConfig(disabled_action_types=["NUKE"]), now=NOW)
    with database.read() as conn:
        read = {t: killswitches.get_global_and_tenant(conn, t) for t in ("t1", "t2", "t3", "t1")}
    assert {
        t: (g.disabled_action_types, c.execution_enabled, c.disabled_action_types)
        for t, (g, c) in read.items()
    } == {
        "t1": (["NUKE"], False, []),
        "t2": (["NUKE"], True, ["WIRE"]),
        "t3": (["NUKE"], True, []),
    }
