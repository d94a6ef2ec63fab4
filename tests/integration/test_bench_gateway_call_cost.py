"""``python -m bench.gateway_call_cost``, in small, against a real ``fulfill serve --role api``:
every call is one HTTP request to the gateway, to the internal connector's tool or, with
``--target``, to a remote target's tool registered with the api for the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.backend_free]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("flags", "tool"), [([], "internal.create_task"), (["--target"], "bench.echo")])
def test_each_call_is_one_request_and_its_cost_is_counted(
    tmp_path: Path, flags: list[str], tool: str
) -> None:
    results = tmp_path / "cost.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.gateway_call_cost",
            "--calls",
            "20",
            "--rounds",
            "1",
            *flags,
            "--json",
            str(results),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(results.read_text())
    assert answer["tool"] == tool
    assert answer["http_requests_per_call"] == 1.0
    assert answer["gateway_cpu_ms_per_call"] > 0
    assert answer["calls_per_s"] > 0
    assert answer["command"].endswith(" --target") is bool(flags)
