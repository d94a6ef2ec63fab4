"""What the benchmarks share: a service of their own on a temporary SQLite file, and their report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fulfill.config import Settings
from fulfill.server import BackgroundServer


def bench_settings(directory: str, **overrides: Any) -> Settings:
    """Settings of a benchmark's own service: SQLite in ``directory``, any free port, quiet logs."""
    return Settings(
        database_url=f"sqlite:///{directory}/bench.db",
        port=0,
        log_level="WARNING",
        jwt_secret="bench-" * 8,
        **overrides,
    )


@contextmanager
def running_service(directory: str, **overrides: Any) -> Iterator[BackgroundServer]:
    """A started ``fulfill serve`` in this process on :func:`bench_settings`, stopped afterwards."""
    server = BackgroundServer(bench_settings(directory, **overrides)).start()
    try:
        yield server
    finally:
        server.stop()


def emit(result: dict[str, Any], path: Path | None) -> None:
    """Print the result as JSON, and write it to ``path`` too when one is given."""
    text = json.dumps(result, indent=2)
    print(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
