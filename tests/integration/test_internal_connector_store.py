"""The internal connector over the store port: the same answers on the in-memory store, SQLite
and PostgreSQL (the SQL adapter is what the service runs; the in-memory one is what fast tests of
the steps run)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp.types import CallToolResult

from fulfill.clock import SystemClock
from fulfill.connectors.internal import InternalConnector
from fulfill.ports.store import Store
from tests.support.memory_store import MemoryStore
from tests.support.stores import KINDS, store_of_kind

KEY = "k" * 64
OTHER_KEY = "o" * 64


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with store_of_kind(request.param, tmp_path) as each:
        yield each


def _answer(result: CallToolResult) -> dict[str, object]:
    assert result.structured_content is not None
    return dict(result.structured_content)


def test_a_repeated_create_answers_the_same_object(store: Store) -> None:
    connector = InternalConnector(store, SystemClock())
    first = connector.create_task("Call back", "t1", "acc-1", "ai_1", KEY)
    again = connector.create_task("Call back", "t1", "acc-1", "ai_1", KEY)
    assert not first.is_error
    assert not again.is_error
    assert _answer(first) == _answer(again)
    [ref] = _answer(first)["external_object_refs"]  # type: ignore[misc]
    assert ref == {"system": "INTERNAL", "object_type": "Task", "object_id": f"task_{KEY[:24]}"}


def test_a_key_of_another_owner_is_a_collision(store: Store) -> None:
    connector = InternalConnector(store, SystemClock())
    assert not connector.create_note("hello", "t1", "acc-1", "ai_1", OTHER_KEY).is_error
    collided = connector.create_note("hello", "t2", "acc-1", "ai_2", OTHER_KEY)
    assert collided.is_error
    assert "IDEMPOTENCY_COLLISION" in json.dumps(collided.model_dump(mode="json"))


def test_delete_is_safe_to_repeat_and_a_create_after_it_restores(store: Store) -> None:
    connector = InternalConnector(store, SystemClock())
    connector.create_task("Call back", "t1", "acc-1", "ai_1", KEY)
    object_id = f"task_{KEY[:24]}"
    # Another owner's delete touches nothing.
    assert _answer(connector.delete_task(object_id, "t2", "acc-1", "ai_1", KEY))["deleted"] is False
    assert _answer(connector.delete_task(object_id, "t1", "acc-1", "ai_1", KEY))["deleted"] is True
    assert _answer(connector.delete_task(object_id, "t1", "acc-1", "ai_1", KEY))["deleted"] is False
    assert not connector.create_task("Call back", "t1", "acc-1", "ai_1", KEY).is_error
    # Restored: deleting it again deletes something.
    assert _answer(connector.delete_task(object_id, "t1", "acc-1", "ai_1", KEY))["deleted"] is True


def test_an_outage_is_a_retryable_failure(store: Store) -> None:
    if not isinstance(store, MemoryStore):
        pytest.skip("the outage of the SQL store is tested with a real proxy in test_store_outage.py")
    connector = InternalConnector(store, SystemClock())
    store.fail_next(1)
    failed = connector.create_task("Call back", "t1", "acc-1", "ai_1", KEY)
    assert failed.is_error
    assert "STORE_UNAVAILABLE" in json.dumps(failed.model_dump(mode="json"))
    assert not connector.create_task("Call back", "t1", "acc-1", "ai_1", KEY).is_error
