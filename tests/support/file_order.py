"""The order a pass's test files start in: the longest first.

Each pass spreads whole test files over pytest-xdist workers (``--dist loadfile``) and hands a
worker the next file of the queue when it has almost nothing left. pytest-xdist's own order puts
the files with the most tests first, so the files with one or two long tests (the OpenAPI fuzz,
the state machine, the README's blocks) came last, and one worker ran them alone while the other
had finished. Longest first (the classic schedule for parallel machines) makes the workers end
close together; ``scripts/test.sh`` passes ``--no-loadscope-reorder`` so that pytest-xdist keeps
this order.

How long a file takes comes from ``tests/file_durations.json``, one table per backend, written by
this module from a whole pass's JUnit report (``scripts/test.sh`` leaves one per pass in
``test-reports/``)::

    .venv/bin/python -m tests.support.file_order sqlite test-reports/sqlite.xml
    .venv/bin/python -m tests.support.file_order postgresql test-reports/postgresql.xml

A file it does not know yet counts one second per test. The order only moves when files start,
never what a test does, so a stale table costs time, not correctness.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DURATIONS = ROOT / "tests" / "file_durations.json"
UNKNOWN_SECONDS_PER_TEST = 1.0


def known_durations(backend: str) -> dict[str, float]:
    """Seconds per test file (its path from the repository's root) on ``backend``."""
    try:
        table = json.loads(DURATIONS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(path): float(seconds) for path, seconds in table.get(backend, {}).items()}


def longest_first(items: list[pytest.Item], durations: dict[str, float]) -> list[pytest.Item]:
    """``items`` with each file's tests together and in their order, the files longest first
    (files of equal length in the order they were collected)."""
    files: dict[str, list[pytest.Item]] = defaultdict(list)
    for item in items:
        files[item.nodeid.split("::", 1)[0]].append(item)

    def estimate(path: str) -> float:
        return durations.get(path, UNKNOWN_SECONDS_PER_TEST * len(files[path]))

    ordered = sorted(files, key=lambda path: -estimate(path))  # stable: ties keep their order
    return [item for path in ordered for item in files[path]]


def durations_from_junit(reports: list[Path]) -> dict[str, float]:
    """Seconds per test file in JUnit reports (every phase of every test, as pytest records it)."""
    seconds: dict[str, float] = defaultdict(float)
    for report in reports:
        for case in ElementTree.parse(report).iter("testcase"):
            path = _file_of(case.get("classname", ""))
            if path is not None:
                seconds[path] += float(case.get("time", "0") or 0)
    return {path: round(value, 1) for path, value in sorted(seconds.items())}


def _file_of(classname: str) -> str | None:
    """The test file of a JUnit class name (``tests.unit.test_x`` or ``tests.unit.test_x.Class``)."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        path = "/".join(parts[:end]) + ".py"
        if (ROOT / path).is_file():
            return path
    return None


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in {"sqlite", "postgresql"}:
        print("usage: python -m tests.support.file_order sqlite|postgresql REPORT.xml ...", file=sys.stderr)
        return 2
    backend, reports = argv[0], [Path(name) for name in argv[1:]]
    try:
        table = json.loads(DURATIONS.read_text(encoding="utf-8"))
    except FileNotFoundError:
        table = {}
    table[backend] = durations_from_junit(reports)
    DURATIONS.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{DURATIONS}: {len(table[backend])} files on {backend}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
