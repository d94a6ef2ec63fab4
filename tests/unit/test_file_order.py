"""The order a pass's test files start in (tests/support/file_order.py): longest first, each
file's tests kept together and in order, unknown files counted by their tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import file_order


@dataclass
class Item:
    nodeid: str


def ordered(nodeids: list[str], durations: dict[str, float]) -> list[str]:
    items: list[Any] = [Item(nodeid) for nodeid in nodeids]
    return [item.nodeid for item in file_order.longest_first(items, durations)]


def test_the_longest_files_come_first_with_their_tests_together_and_in_order() -> None:
    collected = [
        "tests/unit/test_a.py::one",
        "tests/unit/test_a.py::two",
        "tests/unit/test_a.py::three",
        "tests/integration/test_fuzz.py::only",
        "tests/integration/test_b.py::one",
        "tests/integration/test_b.py::two",
    ]
    durations = {
        "tests/unit/test_a.py": 0.5,
        "tests/integration/test_fuzz.py": 100.0,
        "tests/integration/test_b.py": 20.0,
    }
    assert ordered(collected, durations) == [
        "tests/integration/test_fuzz.py::only",
        "tests/integration/test_b.py::one",
        "tests/integration/test_b.py::two",
        "tests/unit/test_a.py::one",
        "tests/unit/test_a.py::two",
        "tests/unit/test_a.py::three",
    ]


def test_a_file_not_on_record_counts_a_second_per_test_and_ties_keep_their_order() -> None:
    collected = [
        "tests/unit/test_known.py::one",
        "tests/unit/test_new.py::one",
        "tests/unit/test_new.py::two",
        "tests/unit/test_new.py::three",
        "tests/unit/test_tie.py::one",
    ]
    durations = {"tests/unit/test_known.py": 2.0, "tests/unit/test_tie.py": 2.0}
    assert ordered(collected, durations) == [
        "tests/unit/test_new.py::one",  # 3 tests: 3 s
        "tests/unit/test_new.py::two",
        "tests/unit/test_new.py::three",
        "tests/unit/test_known.py::one",  # 2 s, collected before the other file of 2 s
        "tests/unit/test_tie.py::one",
    ]


def test_a_junit_report_adds_up_to_seconds_per_file(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    report.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
        '<testcase classname="tests.unit.test_file_order" name="a" time="1.25"/>'
        '<testcase classname="tests.unit.test_file_order" name="b" time="0.75"/>'
        '<testcase classname="tests.property.test_execution_machine.TestExecutionMachine" name="runTest" time="60.0"/>'
        '<testcase classname="tests.nowhere.test_gone" name="c" time="9"/>'
        "</testsuite></testsuites>"
    )
    assert file_order.durations_from_junit([report]) == {
        "tests/property/test_execution_machine.py": 60.0,
        "tests/unit/test_file_order.py": 2.0,
    }


def test_the_record_is_written_per_backend_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "file_durations.json"
    record.write_text(json.dumps({"postgresql": {"tests/unit/test_x.py": 4.0}}))
    monkeypatch.setattr(file_order, "DURATIONS", record)
    monkeypatch.setattr(file_order, "ROOT", Path(__file__).resolve().parents[2])
    report = tmp_path / "report.xml"
    report.write_text(
        '<testsuites><testcase classname="tests.unit.test_file_order" name="a" time="3"/></testsuites>'
    )
    assert file_order.main(["sqlite", str(report)]) == 0
    assert file_order.known_durations("sqlite") == {"tests/unit/test_file_order.py": 3.0}
    assert file_order.known_durations("postgresql") == {"tests/unit/test_x.py": 4.0}  # the other table kept
    assert file_order.main(["mysql", str(report)]) == 2


def test_both_backends_are_on_record() -> None:
    """Without its table a pass falls back to one second per test (a slower CI, nothing worse)."""
    for backend in ("sqlite", "postgresql"):
        durations = file_order.known_durations(backend)
        assert len(durations) > 50, f"no durations on record for {backend}"
