"""``/readyz`` per role: an api process has no workers to wait for; a worker (or all) process is
ready only once its engine has launched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fulfill.service import Service
from tests.support.harness import Harness, make_settings


def _start(tmp_path: Path, role: str) -> Harness:
    return Harness(make_settings(tmp_path, role=role)).start()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Harness]:
    running = _start(tmp_path, "api")
    yield running
    running.stop()


@pytest.fixture(params=["worker", "all"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    running = _start(tmp_path, str(request.param))
    yield running
    running.stop()


def _readyz(harness: Harness) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{harness.url}/readyz", timeout=10.0)
    return response.status_code, dict(response.json())


def test_an_api_process_is_ready_when_its_database_is(api: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _readyz(api) == (
        200,
        {"status": "ready", "checks": {"database": "ok", "workers": "not in this role"}},
    )
    _engine_not_launched(monkeypatch)  # it has no engine to wait for
    assert _readyz(api)[0] == 200

    def unavailable() -> Any:
        raise RuntimeError("database down")

    monkeypatch.setattr(api.db, "read", unavailable)
    assert _readyz(api) == (
        503,
        {"status": "not ready", "checks": {"database": "unavailable", "workers": "not in this role"}},
    )


def test_a_worker_process_is_ready_once_its_engine_has_launched(
    engine: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _readyz(engine) == (200, {"status": "ready", "checks": {"database": "ok", "workers": "ok"}})
    _engine_not_launched(monkeypatch)
    assert _readyz(engine) == (
        503,
        {"status": "not ready", "checks": {"database": "ok", "workers": "starting"}},
    )


def _engine_not_launched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Service, "engine_ready", property(lambda _service: False))
