"""Idempotency keys computed here equal the TypeScript reference's, checked against Node.js.

``js/idempotency_key.mjs`` computes the key the way the reference does (spec §6.1): sort
``Object.keys``, copy into a fresh object, ``JSON.stringify``, SHA-256. Node then applies
JavaScript's own rules (array-index keys first, the ``__proto__`` setter, number printing), which
is exactly what the Python implementation must reproduce. Both sides parse the same JSON text.
Needs ``node`` (20+); without it the test fails, as the other interoperability tests do.

Integers beyond 2**53 are left out: JavaScript rounds them and fulfill deliberately does not
(docs/COMPATIBILITY.md). So are ids that contain ``:``: the reference's key is ambiguous for them
(two tenants can share one), and fulfill deliberately hashes another material; the last test shows
the reference's collision and that fulfill's keys differ.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fulfill.domain.idempotency import canonical_json, idempotency_key

ORACLE = Path(__file__).parent / "js" / "idempotency_key.mjs"
SAFE_INTEGER = 2**53 - 1

# Keys chosen to hit every ordering rule: array indexes (and near misses), UTF-16 order, case.
KEYS = [
    "0", "1", "2", "9", "10", "11", "100", "01", "00", "-1", "1.5", "1e3", " 1", "1 ",
    "4294967294", "4294967295", "4294967296", "9007199254740993", "99999999999",
    "a", "B", "b", "ab", "", "!", "~", "é", "ü", "日本", "\U0001f600", "\uffff", "Z9", "__proto__",
    "title", "description", "priority",
]  # fmt: skip
STRINGS = ["", "x", "Call Ada", "é😀", "line\nbreak", 'q"\\', "\x00\x1f", "\ud800", "123", "true", "null"]


def _number(rng: random.Random) -> int | float:
    choice = rng.randrange(8)
    if choice == 0:
        return rng.randint(-SAFE_INTEGER, SAFE_INTEGER)
    if choice == 1:
        return rng.randint(-1000, 1000)
    if choice == 2:
        return float(rng.randint(-(10**6), 10**6))  # integral floats print without ".0"
    if choice == 3:
        return rng.uniform(-1e6, 1e6)
    if choice == 4:
        return rng.choice(
            [0.1, 0.30000000000000004, 1e21, 1e-7, 1.5e-7, 5e-324, 1.7976931348623157e308, -0.0]
        )
    if choice == 5:
        return 10.0 ** rng.randint(-30, 30) * rng.random()
    if choice == 6:
        return float(2 ** rng.randint(53, 70))  # large integral floats: shortest digits, then zeros
    return rng.random()


def _value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind in (2, 3):
        return _number(rng)
    if kind in (4, 5):
        return rng.choice(STRINGS)
    if kind == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return _object(rng, depth + 1)


def _object(rng: random.Random, depth: int) -> dict[str, Any]:
    names = rng.sample(KEYS, rng.randrange(1, 8))
    return {name: _value(rng, depth) for name in names}


def _cases() -> list[dict[str, Any]]:
    rng = random.Random(20240611)
    cases: list[dict[str, Any]] = [
        {"tenant": "tenant-1", "intent": "ai_123", "tool": "internal.create_task", "version": 1, "args": args}
        for args in (
            {"1": "a", "10": "b", "2": "c"},
            {"10": 1, "9": 2},
            {"!": 1, "5": 2},
            {"4294967295": 1, "!": 2, "4294967294": 3},
            {"__proto__": {"x": 1}, "a": {"__proto__": None, "b": [{"__proto__": 1}]}},
            {"title": "x", "n": [1.0, -0.0, 1e21, 2.5e-7]},
        )
    ]
    for n in range(600):
        cases.append(
            {
                "tenant": rng.choice(["tenant-1", "acme", "t-é", "a@b.example"]),
                "intent": f"ai_{n}",
                "tool": rng.choice(["internal.create_task", "crm.create_task"]),
                "version": rng.randint(1, 20),
                "args": _object(rng, 0),
            }
        )
    return cases


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("'node' was not found: the idempotency-key oracle test needs Node.js 20+", pytrace=False)
    return path


def test_keys_equal_the_reference_s_for_generated_values(node: str) -> None:
    lines = [json.dumps(case) for case in _cases()]
    answer = subprocess.run(
        [node, str(ORACLE)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    expected = [json.loads(line) for line in answer.stdout.splitlines()]
    assert len(expected) == len(lines)
    for line, oracle in zip(lines, expected, strict=True):
        case = json.loads(line)  # the same text node parsed
        key = idempotency_key(
            tenant_id=case["tenant"],
            action_intent_id=case["intent"],
            tool_name=case["tool"],
            arguments=case["args"],
            registry_version=case["version"],
        )
        assert key == oracle["key"], (line, oracle["canonical"])
        if "__proto__" not in line:  # canonical_json keeps __proto__ members; the key drops them
            assert canonical_json(case["args"]) == oracle["canonical"], line


def test_ids_with_a_colon_collide_in_the_reference_but_not_here(node: str) -> None:
    args = {"title": "x"}
    pair = [
        {"tenant": "t:x", "intent": "y", "tool": "internal.create_task", "version": 1, "args": args},
        {"tenant": "t", "intent": "x:y", "tool": "internal.create_task", "version": 1, "args": args},
    ]
    answer = subprocess.run(
        [node, str(ORACLE)],
        input="".join(json.dumps(case) + "\n" for case in pair),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    reference = [json.loads(line)["key"] for line in answer.stdout.splitlines()]
    assert reference[0] == reference[1]  # the reference gives both tenants one key
    ours = [
        idempotency_key(
            tenant_id=case["tenant"],
            action_intent_id=case["intent"],
            tool_name=case["tool"],
            arguments=case["args"],
            registry_version=case["version"],
        )
        for case in pair
    ]
    assert ours[0] != ours[1]
    assert reference[0] not in ours
