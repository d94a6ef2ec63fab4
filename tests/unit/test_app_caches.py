"""A built app is not kept alive by FastAPI's caches once the tests have cleared them."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from fulfill.api.app import create_app
from fulfill.config import Settings
from fulfill.service import Service
from tests.support.app_caches import forget_built_apps


def _built_app(tmp_path: Path) -> weakref.ref[Service]:
    service = Service(Settings(database_url=f"sqlite:///{tmp_path / 'fulfill.db'}"))
    create_app(service)
    return weakref.ref(service)


def test_fastapi_keeps_a_dropped_app_and_its_service_until_its_caches_are_cleared(tmp_path: Path) -> None:
    service = _built_app(tmp_path)
    gc.collect()
    assert service() is not None, "FastAPI no longer keeps built apps: tests/support/app_caches.py can go"

    assert forget_built_apps() == 3
    gc.collect()
    assert service() is None
