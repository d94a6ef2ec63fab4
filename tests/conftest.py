from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import FaultyProxy

os.environ.setdefault("DBOS__DISABLE_TELEMETRY", "true")
for _name in [name for name in os.environ if name.startswith("FULFILL_")]:
    del os.environ[_name]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    running = Harness(make_settings(tmp_path)).start()
    yield running
    running.stop()


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Harness, FaultyProxy]]:
    """A service whose engine reaches its own gateway through a fault-injecting proxy."""
    proxy = FaultyProxy()
    running = Harness(make_settings(tmp_path, gateway_url=proxy.url))
    proxy.upstream = f"{running.url}/mcp"
    running.start()
    yield running, proxy
    proxy.close()
    running.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One service for a whole module, for tests that do not change global state."""
    running = Harness(make_settings(tmp_path_factory.mktemp("shared"))).start()
    yield running
    running.stop()
