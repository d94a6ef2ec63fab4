"""What the benchmarks share: a service of their own on a temporary SQLite file, and their report."""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fulfill import collector
from fulfill.config import Settings
from fulfill.server import BackgroundServer


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process so far, every thread's."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu_seconds(native_id: int) -> float:
    """User + system CPU seconds so far of one thread of this process (``/proc/self/task``, in
    clock ticks of 10 ms), to subtract a server thread's share from :func:`own_cpu_seconds`."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median_round(rounds: list[dict[str, Any]], key: str) -> tuple[dict[str, Any], list[float]]:
    """The round whose ``key`` is the median (the upper one of an even count), and the spread of
    ``key`` over all rounds, ``[min, max]``."""
    values = [r[key] for r in rounds]
    return sorted(rounds, key=lambda r: r[key])[len(rounds) // 2], [min(values), max(values)]


def bench_settings(directory: str, **overrides: Any) -> Settings:
    """Settings of a benchmark's own service: SQLite in ``directory`` (unless ``database_url`` is
    given), any free port, quiet logs."""
    overrides.setdefault("database_url", f"sqlite:///{directory}/bench.db")
    return Settings(
        port=0,
        log_level="WARNING",
        jwt_secret="bench-" * 8,
        **overrides,
    )


@contextmanager
def running_service(
    directory: str, *, serving_collector: bool = True, **overrides: Any
) -> Iterator[BackgroundServer]:
    """A started ``fulfill serve`` in this process on :func:`bench_settings`, stopped afterwards.

    With ``serving_collector`` (the default) the process's garbage collector runs as in a
    ``fulfill serve`` process (``fulfill.collector``: tuned to ``FULFILL_GC_YOUNG_THRESHOLD``
    before start, start-up frozen once ready), and is put back as it was afterwards; without it,
    Python's defaults.
    """
    threshold = gc.get_threshold()
    settings = bench_settings(directory, **overrides)
    if serving_collector:
        collector.tune(settings.gc_young_threshold)
    try:
        server = BackgroundServer(settings).start()
        try:
            if serving_collector:
                collector.freeze_start_up()
            yield server
        finally:
            server.stop()
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def emit(result: dict[str, Any], path: Path | None) -> None:
    """Print the result as JSON, and write it to ``path`` too when one is given."""
    text = json.dumps(result, indent=2)
    print(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


# A webhook receiver in a process of its own, answering 204 at once (it prints its port).
RECEIVER = """
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@contextmanager
def webhook_receiver() -> Iterator[str]:
    """The URL of a :data:`RECEIVER` on 127.0.0.1, stopped afterwards."""
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        yield f"http://127.0.0.1:{receiver.stdout.readline().strip()}/hook"
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
