"""The CPU accounting of ``bench/pg_cpu.py``: a process's own CPU time, its live children, and the
CPU of children it already reaped (a PostgreSQL backend that exits mid-burst still counts)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from bench.pg_cpu import children, process_cpu

BURN = "x = 0\nfor i in range(3_000_000):\n    x += i\n"

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")


@contextmanager
def script(code: str) -> Iterator[subprocess.Popen[str]]:
    """``python -c code`` with its stdin and stdout piped; stdin is closed (its cue to exit) and
    the process waited for at the end."""
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        yield process
    finally:
        process.stdin.close()
        process.wait(timeout=30)


def test_a_process_that_is_gone_counts_nothing() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert process_cpu(process.pid) == 0.0


def test_a_live_child_is_found_and_a_reaped_one_is_counted_with_its_parent() -> None:
    # A parent that burns CPU in a child, waits for it (reaps it), then waits for us.
    code = (
        "import subprocess, sys\n"
        f"subprocess.run([sys.executable, '-c', {BURN!r}], check=True)\n"
        "print('reaped', flush=True)\n"
        "sys.stdin.read()\n"
    )
    with script(code) as parent:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "reaped"
        assert children(parent.pid) == []  # the child is gone
        own = process_cpu(parent.pid)
        with_reaped = process_cpu(parent.pid, reaped_children=True)
        assert with_reaped > own  # the child's CPU is counted once it was reaped


def test_the_report_gives_planning_and_connections_opened_per_execution() -> None:
    from bench.pg_cpu import _report

    before = {"statements": 10, "plans": 4, "exec_ms": 1.0, "plan_ms": 0.5, "commits": 3, "rollbacks": 0}
    after = {
        "statements": 610,
        "plans": 204,
        "exec_ms": 301.0,
        "plan_ms": 60.5,
        "commits": 403,
        "rollbacks": 0,
    }
    report = _report(
        100,
        2.0,
        {"api": 1.0, "postgres": 2.0},
        {"api": 1.5, "postgres": 3.0},
        {**before, "sessions": 7},
        {**after, "sessions": 19},
        {},
    )
    assert report["cpu_ms_per_execution"] == {"api": 5.0, "postgres": 10.0, "total": 15.0}
    assert (report["statements_per_execution"], report["plans_per_execution"]) == (6.0, 2.0)
    assert report["statement_ms_per_execution"] == {"execute": 3.0, "plan": 0.6}
    assert (report["commits_per_execution"], report["connections_opened"]) == (4.0, 12)


def test_user_and_system_time_are_split_and_a_gone_process_counts_nothing() -> None:
    from bench.pg_cpu import process_cpu_split

    with script(BURN + "import sys\nprint('burnt', flush=True)\nsys.stdin.read()\n") as process:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "burnt"
        user, system = process_cpu_split(process.pid)
        assert user > 0  # the loop ran in user space
        assert user + system == pytest.approx(process_cpu(process.pid))
    assert process_cpu_split(process.pid) == (0.0, 0.0)


def test_context_switches_are_summed_over_every_live_thread_of_the_process() -> None:
    from bench.pg_cpu import context_switches, thread_switches

    # Four threads each sleep 50 times (every sleep is a voluntary switch of that thread), then
    # wait, alive, until told to end.
    code = (
        "import sys, threading, time\n"
        "done = threading.Event()\n"
        "napped = threading.Barrier(5)\n"
        "def nap():\n"
        "    for _ in range(50):\n"
        "        time.sleep(0.001)\n"
        "    napped.wait()\n"
        "    done.wait()\n"
        "threads = [threading.Thread(target=nap) for _ in range(4)]\n"
        "[t.start() for t in threads]\n"
        "napped.wait()\n"
        "print('napped', flush=True)\n"
        "sys.stdin.readline()\n"
        "done.set()\n"
        "[t.join() for t in threads]\n"
        "print('ended', flush=True)\n"
        "sys.stdin.read()\n"
    )
    with script(code) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "napped"
        assert len(thread_switches(process.pid)) == 5
        with_nappers, _ = context_switches(process.pid)
        process.stdin.write("end\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "ended"
        # Only the main thread is left, and only it is read. (How much its count grew while the
        # others ended depends on the machine's load: not asserted.) A joined thread's /proc entry
        # can outlive the join by a moment, until the kernel releases the task: wait for that,
        # boundedly, rather than read a thread that is on its way out.
        main_only = thread_switches(process.pid)
        deadline = time.monotonic() + 10
        while set(main_only) != {process.pid} and time.monotonic() < deadline:
            time.sleep(0.01)
            main_only = thread_switches(process.pid)
        without_nappers, _ = context_switches(process.pid)
        main_after = thread_switches(process.pid)
        assert with_nappers >= 4 * 50  # every thread's switches, not only the main thread's
        assert set(main_only) == set(main_after) == {process.pid}  # an ended thread is not read
        # The main thread may still switch once more on its way into the read of its input, so
        # the sum lies between its count read just before and just after (counts only grow).
        assert main_only[process.pid][0] <= without_nappers <= main_after[process.pid][0]
        assert without_nappers < with_nappers  # counts only grow: what fell is the ended threads'
    assert context_switches(process.pid) == (0, 0)


def test_switches_between_two_readings_count_the_threads_alive_at_the_second() -> None:
    from bench.pg_cpu import switches_between

    before = {1: (100, 10), 2: (50, 5), 3: (999, 99)}  # thread 3 ends in between
    after = {1: (130, 12), 2: (50, 6), 4: (20, 2)}  # thread 4 starts in between
    assert switches_between(before, after) == (30 + 0 + 20, 2 + 1 + 2)


def test_thread_figures_are_given_per_execution_and_process_kind() -> None:
    from bench.pg_cpu import _threads_per_execution

    before = {
        "worker-0": (1.0, 0.5, {7: (100, 10)}),
        "worker-1": (2.0, 0.5, {8: (0, 0)}),
    }
    after = {
        "worker-0": (2.0, 0.7, {7: (2600, 210)}),
        "worker-1": (3.0, 0.7, {8: (2500, 200)}),
        "api": (9.0, 9.0, {9: (9, 9)}),  # not read before
    }
    assert _threads_per_execution(before, after, 100) == {
        "worker": {"user_ms": 20.0, "system_ms": 4.0, "voluntary_switches": 50.0, "involuntary_switches": 4.0}
    }


def test_rows_written_count_the_index_entries_of_inserts_and_of_updates_that_are_not_hot() -> None:
    from bench.pg_cpu import table_writes_between

    # Per table: inserted, updated, updated in place (HOT), deleted, whole indexes, partial ones.
    before = {
        "public.intents": (10, 4, 1, 0, 6, 5),
        "dbos.status": (5, 5, 0, 0, 16, 0),
        "public.quiet": (3, 3, 3, 0, 2, 0),
    }
    after = {
        "public.intents": (110, 304, 101, 0, 6, 5),  # 100 inserts, 300 updates of which 100 HOT
        "dbos.status": (105, 205, 0, 0, 16, 0),
        "public.quiet": (3, 3, 3, 0, 2, 0),  # written before and not since: left out
        "public.new": (50, 0, 0, 50, 1, 1),  # first seen after: counted from nothing
    }
    writes = table_writes_between(before, after, 100)
    assert list(writes) == ["dbos.status", "public.intents", "public.new"]  # most entries first
    assert writes["public.intents"] == {
        "inserted": 1.0,
        "updated": 3.0,
        "updated_in_place": 1.0,
        "deleted": 0.0,
        "indexes": 6,
        "partial_indexes": 5,
        "index_entries": 18.0,  # (1 insert + 2 updates not in place) times 6 whole indexes
    }
    assert writes["dbos.status"]["index_entries"] == 48.0  # (1 + 2) times 16
    assert writes["public.new"]["index_entries"] == 0.5
    assert writes["public.new"]["deleted"] == 0.5


@pytest.mark.parametrize("option", [["--warmup", "0"], ["--workers", "0"]])
def test_a_warm_up_or_workers_below_one_is_refused_before_anything_starts(option: list[str]) -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "bench.pg_cpu", *option],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert answer.returncode == 2
    assert f"{option[0]} must be at least 1" in answer.stderr
