"""Real ``fulfill serve`` processes for the tests that kill and restart them."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import httpx

from tests.support.http_doubles import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def start_serve(env: dict[str, str], log: Path, *, wait: bool = True) -> subprocess.Popen[bytes]:
    """``fulfill serve`` with ``env`` (``FULFILL_PORT`` set), its output appended to ``log``; by
    default returns once its ``/readyz`` answers 200."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "fulfill", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    if wait:
        wait_for(lambda: ready(int(env["FULFILL_PORT"])), timeout=90)
    return process


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL: the process gets no chance to finish anything."""
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def stop_all(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process still running, then wait for each (SIGKILL after 30 s)."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
