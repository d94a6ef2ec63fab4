"""``fulfill serve`` in processes of its own: started, waited for, stopped or killed.

The load test, the benchmarks and the tests that kill and restart services all start them here.
A service is ready when its ``/readyz`` answers 200; a process that exits before that is an error
that shows the end of its log, not a wait until the timeout.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

READY_TIMEOUT_SECONDS = 90.0
# How often a starting process's /readyz is asked: it answers within milliseconds of being ready,
# and each test or benchmark that starts processes waits for it.
READY_POLL_SECONDS = 0.05
STOP_TIMEOUT_SECONDS = 30.0
LOG_TAIL_CHARACTERS = 2000


# Ports free_port() handed out, each held bound by this process until it ends (see there).
_RESERVED: dict[int, socket.socket] = {}
_RESERVED_LOCK = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, kept for the caller until this process ends.

    Choosing a port and starting a server on it are two steps, seconds apart for ``fulfill serve``:
    in between, another process (a test running beside this one) could choose the same port, and
    its server would then answer what was meant for this one's (its ``/readyz`` too), or the kernel
    could give the port to an outgoing connection. So the port stays bound here, with
    ``SO_REUSEADDR`` and never listening: no bind to port 0, no connection's own port and no bind
    without ``SO_REUSEADDR`` can take it, while a server that binds with it (``fulfill serve``,
    uvicorn, aiosmtpd, Node, Go's listeners) binds and listens as before, and again after a
    restart."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    with _RESERVED_LOCK:
        _RESERVED[port] = sock
    return port


def local_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def is_ready(url: str) -> bool:
    """Whether the service at ``url`` answers ``/readyz`` with 200 (its database migrated, its
    engine launched)."""
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def log_tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-LOG_TAIL_CHARACTERS:]
    except OSError:
        return ""


def wait_ready(
    url: str,
    processes: Mapping[str, tuple[subprocess.Popen[bytes], Path]] | None = None,
    *,
    timeout: float = READY_TIMEOUT_SECONDS,
) -> None:
    """Return once ``url`` is ready. RuntimeError when one of ``processes`` (name → process and
    its log) exits first, naming it with its log's tail, or when ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, (process, log) in (processes or {}).items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{log_tail(log)}")
        if is_ready(url):
            return
        time.sleep(READY_POLL_SECONDS)
    raise RuntimeError(f"{url} was not ready within {timeout:.0f} s")


def start_serve(
    env: Mapping[str, str], log: Path, *, wait: bool = True, timeout: float = READY_TIMEOUT_SECONDS
) -> subprocess.Popen[bytes]:
    """``fulfill serve`` with exactly ``env`` (``FULFILL_PORT`` set), its output appended to ``log``;
    by default returns once its ``/readyz`` answers 200 (see :func:`wait_ready`)."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "fulfill", "serve"], env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )
    if wait:
        try:
            wait_ready(
                local_url(int(env["FULFILL_PORT"])), {"fulfill serve": (process, log)}, timeout=timeout
            )
        except RuntimeError:
            stop_all([process])
            raise
    return process


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL: the process gets no chance to finish anything."""
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def stop_all(processes: Iterable[subprocess.Popen[bytes]], timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM every process still running, then wait for each (SIGKILL after ``timeout`` s)."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class ServiceGroup:
    """``fulfill serve`` processes on one database: one with every role, or an ``api`` process and
    ``workers`` worker processes. Each logs to ``directory/<name>.log``."""

    database_url: str
    workers: int
    secret: str
    directory: Path
    # More FULFILL_* settings for every process (e.g. a gateway URL behind a proxy).
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, tuple[subprocess.Popen[bytes], Path]] = field(default_factory=dict)
    api_url: str = ""
    # Workers reach the api process's gateway over HTTP (FULFILL_GATEWAY_URL to its /mcp)
    # instead of their own, in memory.
    workers_call_api_gateway: bool = False

    def _spawn(self, name: str, role: str, port: int, extra: dict[str, str] | None = None) -> str:
        env = {
            **os.environ,
            "DBOS__DISABLE_TELEMETRY": "true",
            "FULFILL_DATABASE_URL": self.database_url,
            "FULFILL_PORT": str(port),
            "FULFILL_HOST": "127.0.0.1",
            "FULFILL_ROLE": role,
            "FULFILL_EXECUTOR_ID": f"bench-{name}",
            "FULFILL_JWT_SECRET": self.secret,
            "FULFILL_LOG_LEVEL": "WARNING",
            **self.extra_env,
            **(extra or {}),
        }
        log = self.directory / f"{name}.log"
        self.processes[name] = (start_serve(env, log, wait=False), log)
        return local_url(port)

    def start(self) -> ServiceGroup:
        if self.workers <= 0:
            self.api_url = self._spawn("all", "all", free_port())
            wait_ready(self.api_url, self.processes)
            return self
        # The api process migrates the database first; the workers then find it at head.
        self.api_url = self._spawn("api", "api", free_port())
        wait_ready(self.api_url, self.processes)
        extra = {"FULFILL_GATEWAY_URL": f"{self.api_url}/mcp"} if self.workers_call_api_gateway else None
        urls = [self._spawn(f"worker-{index}", "worker", free_port(), extra) for index in range(self.workers)]
        for url in urls:
            wait_ready(url, self.processes)
        return self

    def check_alive(self) -> None:
        for name, (process, log) in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"service process {name} exited with {process.returncode}; log tail:\n{log_tail(log)}"
                )

    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, (process, _) in self.processes.items()}

    def stop(self) -> None:
        stop_all(process for process, _ in self.processes.values())
