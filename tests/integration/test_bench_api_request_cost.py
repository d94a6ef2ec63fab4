"""``python -m bench.api_request_cost`` in small: the api process's CPU per request, alone and
next to another checkout's code (``--against``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from bench import api_request_cost

pytestmark = [pytest.mark.slow, pytest.mark.backend_free]

SRC = Path(api_request_cost.__file__).resolve().parents[1] / "src"
KINDS = {"create", "approve", "status"}


def _run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *extra: str) -> dict[str, Any]:
    results = tmp_path / "cost.json"
    argv = ["api_request_cost", "--requests", "4", "--rounds", "2", "--json", str(results), *extra]
    monkeypatch.setattr(sys, "argv", argv)
    api_request_cost.main()
    answer: dict[str, Any] = json.loads(results.read_text())
    return answer


def test_against_another_checkout_measures_both_processes_in_the_same_rounds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = _run(monkeypatch, tmp_path, "--against", str(SRC))
    against = result["against"]
    assert isinstance(against, dict)
    for figures in (result, against):
        assert isinstance(figures, dict)
        rounds = figures["cpu_ms_per_request_rounds"]
        assert set(rounds) == {*KINDS, "idle"}
        assert all(len(values) == 2 for values in rounds.values())
        assert set(figures["requests_per_s"]) == KINDS
    assert set(against["ratio_rounds"]) == KINDS
    assert all(len(ratios) == 2 for ratios in against["ratio_rounds"].values())
    assert set(against["ratio"]) <= KINDS
    assert str(result["command"]).endswith(f"--against {SRC}")


def test_against_a_directory_without_the_package_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _run(monkeypatch, tmp_path, "--against", str(tmp_path))
    assert exited.value.code == 2
    assert "holds no fulfill package" in capsys.readouterr().err
