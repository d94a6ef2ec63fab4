"""The idempotency key of a compensation call: derived from the write's, never equal to it."""

from __future__ import annotations

import hashlib
import json

import pytest

from fulfill.domain.idempotency import compensation_idempotency_key, idempotency_key

WRITE_KEY = idempotency_key(
    tenant_id="t1",
    action_intent_id="ai-1",
    tool_name="tickets.create_ticket",
    arguments={"title": "Printer"},
    registry_version=1,
)


def _key(**override: str) -> str:
    fields = {"write_key": WRITE_KEY, "compensation_tool": "tickets.delete_ticket", "object_id": "T-1"}
    return compensation_idempotency_key(**{**fields, **override})


def test_known_answer() -> None:
    material = json.dumps(
        ["fulfill.compensation.v1", WRITE_KEY, "tickets.delete_ticket", "T-1"], separators=(",", ":")
    )
    assert _key() == hashlib.sha256(material.encode()).hexdigest()


def test_never_the_write_key_and_shaped_like_one() -> None:
    key = _key()
    assert key != WRITE_KEY
    assert len(key) == 64
    assert key == key.lower()
    int(key, 16)


def test_stable_across_calls() -> None:
    assert _key() == _key()


@pytest.mark.parametrize(
    "override",
    [
        {"write_key": "0" * 64},
        {"compensation_tool": "tickets.close_ticket"},
        {"object_id": "T-2"},
    ],
)
def test_changes_with_any_input(override: dict[str, str]) -> None:
    assert _key(**override) != _key()


def test_no_two_inputs_share_a_key_whatever_their_separators() -> None:
    # A joined string would make these two equal ("a:b" + ":" + "c" == "a" + ":" + "b:c").
    assert _key(compensation_tool="a:b", object_id="c") != _key(compensation_tool="a", object_id="b:c")
