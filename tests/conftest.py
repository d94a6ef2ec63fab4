from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import postgres
from tests.support.app_caches import forget_built_apps
from tests.support.file_order import known_durations, longest_first
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import FaultyProxy

os.environ.setdefault("DBOS__DISABLE_TELEMETRY", "true")
for _name in [name for name in os.environ if name.startswith("FULFILL_")]:
    del os.environ[_name]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres_only: about PostgreSQL itself; skipped on the SQLite pass")
    config.addinivalue_line(
        "markers", "sqlite_only(reason): about SQLite itself; skipped on the PostgreSQL pass"
    )
    config.addinivalue_line(
        "markers",
        "backend_free: uses a database of its own making (or none), never the pass's, so the SQLite "
        "pass runs it and the PostgreSQL pass, which would run the very same test, skips it",
    )


def pytest_report_header(config: pytest.Config) -> str:
    if postgres.enabled():
        return f"database backend: postgresql ({postgres.ENV} is set)"
    return f"database backend: sqlite ({postgres.ENV} is not set)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not postgres.enabled() and item.get_closest_marker("postgres_only"):
            item.add_marker(pytest.mark.skip(reason=f"PostgreSQL only (set {postgres.ENV})"))
        marker = item.get_closest_marker("sqlite_only")
        if postgres.enabled() and marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "SQLite only")
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}"))
        if postgres.enabled() and item.get_closest_marker("backend_free"):
            item.add_marker(
                pytest.mark.skip(reason="does not use the pass's database: run on the SQLite pass")
            )
    # The longest files first, so that no worker is left with a long one at the end (file_order.py).
    items[:] = longest_first(items, known_durations(postgres.backend_name()))


@pytest.fixture(scope="session", autouse=True)
def _drop_leftover_databases() -> Iterator[None]:
    """Databases of services that were never stopped (or settings never used) go at the end."""
    yield
    postgres.drop_leftovers()


@pytest.fixture(scope="module", autouse=True)
def _forget_the_module_apps() -> Iterator[None]:
    """Stopped services are not kept alive after their module by FastAPI's caches
    (``tests/support/app_caches.py``)."""
    yield
    forget_built_apps()


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


_EXIT_STATUS = pytest.StashKey[int]()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Never hang after the report on a workflow thread a stopped service left behind.

    DBOS retries a checkpoint write that cannot reach its database without end, in the workflow's
    own (non-daemon) thread, and Python joins such threads at exit. A test whose database went
    away under a running step would hang the whole run there after every test has reported. Name
    such threads, then end the process with pytest's own status.
    """
    import sys
    import threading

    stuck = [
        thread
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and not thread.daemon and thread.name.startswith("dbos")
    ]
    import time

    deadline = time.monotonic() + 10
    for thread in stuck:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [thread for thread in stuck if thread.is_alive()]
    if stuck and _EXIT_STATUS in config.stash:
        names = ", ".join(sorted(thread.name for thread in stuck))
        sys.stderr.write(
            f"\nworkflow threads still running after the session: {names}; not waiting for them\n"
        )
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(config.stash[_EXIT_STATUS])
