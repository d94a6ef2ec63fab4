"""The in-process service of the benchmarks runs its garbage collector as ``fulfill serve`` does
(so their numbers are a deployed process's), and puts the collector back as it found it."""

from __future__ import annotations

import gc
from pathlib import Path

import httpx
import pytest
from bench.common import running_service

from fulfill import collector

pytestmark = pytest.mark.backend_free


def test_the_benchmarks_service_collects_as_fulfill_serve_and_restores_the_collector(tmp_path: Path) -> None:
    before = gc.get_threshold()
    assert before[0] != collector.YOUNG_THRESHOLD
    with running_service(str(tmp_path)) as server:
        assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 200
        assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 10_000  # start-up's modules, models and routes
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_benchmarks_service_can_keep_pythons_defaults(tmp_path: Path) -> None:
    before = gc.get_threshold()
    with running_service(str(tmp_path), serving_collector=False) as server:
        assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 200
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
