"""The launcher of ``fulfill serve`` processes: a process that exits before it is ready is an
error naming it with the end of its log, at once rather than at the timeout; a port chosen for a
service stays the chooser's until the service binds it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fulfill_tools.launch import ServiceGroup, free_port, start_serve, stop_all, wait_ready


def test_a_process_that_exits_first_is_named_with_its_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "early.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "print('cannot open the database'); raise SystemExit(3)"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    started = time.monotonic()
    with pytest.raises(RuntimeError) as raised:
        wait_ready(f"http://127.0.0.1:{free_port()}", {"api": (process, log)}, timeout=60)
    assert time.monotonic() - started < 30
    assert "api exited with 3" in str(raised.value)
    assert "cannot open the database" in str(raised.value)


def test_nothing_listening_is_a_timeout_that_says_so() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RuntimeError, match=r"was not ready within 1 s"):
        wait_ready(url, timeout=1)


def test_fulfill_serve_that_cannot_start_stops_the_wait_with_its_message(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FULFILL_DATABASE_URL": "nosuchdriver://nowhere/fulfill",
        "FULFILL_PORT": str(free_port()),
        "FULFILL_HOST": "127.0.0.1",
    }
    log = tmp_path / "serve.log"
    started = time.monotonic()
    with pytest.raises(RuntimeError) as raised:
        start_serve(env, log, timeout=60)
    assert time.monotonic() - started < 55
    assert "fulfill serve exited with" in str(raised.value)
    assert "nosuchdriver" in log.read_text()


def test_a_service_group_reports_a_process_that_died(tmp_path: Path) -> None:
    group = ServiceGroup(database_url="sqlite://", workers=0, secret="s" * 40, directory=tmp_path)
    log = tmp_path / "all.log"
    log.write_text("the end of the log\n")
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    process.wait(timeout=30)
    group.processes["all"] = (process, log)
    with pytest.raises(
        RuntimeError, match=r"service process all exited with 2; log tail:\nthe end of the log"
    ):
        group.check_alive()
    assert group.pids() == {"all": process.pid}
    stop_all([process])  # already exited: nothing to signal


def test_a_free_port_stays_this_process_s_until_a_server_binds_it() -> None:
    """Another process choosing a port cannot be handed this one, nor bind it plainly; a server
    that binds with SO_REUSEADDR (as fulfill serve does) listens on it."""
    from fulfill.http_server import bind_socket

    port = free_port()
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import socket
                chosen = set()
                for _ in range(30000):
                    with socket.socket() as sock:
                        sock.bind(("127.0.0.1", 0))
                        chosen.add(sock.getsockname()[1])
                print(len(chosen), {port} in chosen)
                with socket.socket() as sock:
                    try:
                        sock.bind(("127.0.0.1", {port}))
                        print("bound")
                    except OSError:
                        print("refused")
                """
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    picks, picked_ours, plain_bind = other.stdout.split()
    assert int(picks) > 5000  # the other process went through most of the ports it could choose
    assert (picked_ours, plain_bind) == ("False", "refused")
    server = bind_socket("127.0.0.1", port)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        server.close()
