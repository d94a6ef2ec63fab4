"""CPU per execution on PostgreSQL, summed over every process: the api, the workers, the database.

The benchmark starts a throw-away PostgreSQL server (``initdb`` in a temporary directory, on
127.0.0.1, with ``pg_stat_statements`` loaded), one ``fulfill serve --role api`` process and N
``--role worker`` processes on it, creates the intents (not measured), then approves them all at
once through the public API and waits until every execution has an outcome. Around that window it
reads the CPU time (user + system, from ``/proc``) of every fulfill process and of every PostgreSQL
process (the postmaster's reaped children included, so a backend that exits is still counted),
and the statements PostgreSQL ran for that database (``pg_stat_statements``) and the transactions
it committed (``pg_stat_database``). The result is CPU-milliseconds and statements per execution,
split by process kind; also the statements' planning (``pg_stat_statements.track_planning``: how
many statements were planned and the time spent planning and executing them) and the connections
the server accepted meanwhile (``pg_stat_database.sessions``: a pool that closes connections and
opens them again shows here); and the rows written by table (``pg_stat_user_tables``: inserted,
updated, updated in place, deleted, with the entries they wrote in the table's whole indexes).
Each reading of PostgreSQL's counts waits until every backend has flushed its own
(:data:`STATS_FLUSH_SECONDS`). For each fulfill process kind (and the floor's process), the CPU
is also split into user and system time, with the context switches of its threads
(``threads_per_execution``): CPU spent handing work between many threads shows there.

In the same run and on the same server (its own database), the floor: a bare DBOS workflow of 3
no-op steps (``fulfill_tools.floor``), enqueued as the same burst on a DBOS queue with the
service's concurrency and poll interval, in a process of its own, measured the same way.

    python -m bench.pg_cpu --executions 500 --workers 1
    python -m bench.pg_cpu --executions 500 --workers 2 --json result.json
    python -m bench.pg_cpu --executions 300 --workers 1 --gateway http
    python -m bench.pg_cpu --executions 1000 --workers 1 --warmup 1000

``--warmup N``: N executions, by the service and by the floor alike, before the measured window
(default :data:`WARMUP`); a longer one leaves out of the window what every pooled connection does
the first few times it runs a statement.

``--gateway http``: the workers call the api process's gateway over HTTP (``FULFILL_GATEWAY_URL``
to its ``/mcp``) instead of their own gateway in memory, so the api's figure carries the gateway's
side of every call and the worker's the engine's MCP client.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import emit

SECRET = "bench-secret-" + "0123456789abcdef" * 2
FLOOR_DATABASE = "bench_floor"
SERVICE_DATABASE = "fulfill"
WARMUP = 30
"""Executions run before the measured window, by the service and by the floor alike. Each pooled
connection plans a statement until psycopg has prepared it there (its fifth run) and PostgreSQL has
settled on a plan (five runs more), so a short warm-up leaves part of that start-up in the window:
``--warmup`` sets more, to read a deployment that has been serving for a while."""
TOP_STATEMENTS = 15


def warmup_timeout(warmup: int) -> float:
    """Seconds the service and the floor each have for their warm-up: two minutes, and more for a
    longer one."""
    return 120.0 + warmup / 10


# ---------------------------------------------------------------------------------------------
# CPU time from /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (every thread); with ``reaped_children`` also those of
    its children that exited and were waited for. 0 when the process is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the ")" field 3 (state) is index 0: utime is field 14, stime 15, cutime 16, cstime 17.
    total = int(fields[11]) + int(fields[12])
    if reaped_children:
        total += int(fields[13]) + int(fields[14])
    return total / _ticks()


def process_cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` (every thread); (0, 0) when the process is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0, 0.0
    return int(fields[11]) / _ticks(), int(fields[12]) / _ticks()


def thread_switches(pid: int) -> dict[int, tuple[int, int]]:
    """(voluntary, involuntary) context switches of each live thread of ``pid``, by thread id,
    from ``/proc/<pid>/task/<tid>/status``; {} when the process is gone."""
    found: dict[int, tuple[int, int]] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            status = (task / "status").read_text()
        except OSError:
            continue  # the thread ended while we read
        voluntary = involuntary = 0
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                voluntary = int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                involuntary = int(line.split()[1])
        found[int(task.name)] = (voluntary, involuntary)
    return found


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of ``pid``'s live threads, summed."""
    threads = thread_switches(pid).values()
    return sum(v for v, _ in threads), sum(i for _, i in threads)


def switches_between(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
) -> tuple[int, int]:
    """The switches made between two :func:`thread_switches` readings by the threads alive at the
    second: a thread started in between counts whole, and one that ended in between is not
    counted at all (an api process's request threads come and go; a worker's executor threads
    stay for the process's life)."""
    voluntary = involuntary = 0
    for tid, (v, i) in after.items():
        v0, i0 = before.get(tid, (0, 0))
        voluntary += v - v0
        involuntary += i - i0
    return voluntary, involuntary


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def postgres_cpu(postmaster: int) -> float:
    """Every PostgreSQL process: the postmaster, its live children, and those already reaped."""
    return process_cpu(postmaster, reaped_children=True) + sum(
        process_cpu(child) for child in children(postmaster)
    )


# ---------------------------------------------------------------------------------------------
# A throw-away PostgreSQL server


@dataclass
class PostgresServer:
    directory: Path
    bin_dir: Path
    user: str | None  # run as this user (root may not run PostgreSQL)
    port: int = 0
    postmaster: int = 0

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        command = [*argv] if self.user is None else ["runuser", "-u", self.user, "--", *argv]
        subprocess.run(command, check=True, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def start(self) -> PostgresServer:
        from fulfill_tools.launch import free_port

        self.port = free_port()
        data = self.directory / "data"
        self._run(str(self.bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E",
                  "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} -c max_connections=300 "
            "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
            " -c pg_stat_statements.track_planning=on"
        )
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-l", str(self.directory / "server.log"),
                  "-w", "-t", "60", "start", "-o", options)  # fmt: skip
        self.postmaster = int((data / "postmaster.pid").read_text().split()[0])
        with _connect(self) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        return self

    def stop(self) -> None:
        data = self.directory / "data"
        if (data / "postmaster.pid").exists():
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")


def find_postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise SystemExit("PostgreSQL's initdb was not found (install PostgreSQL)")


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    directory = Path(tempfile.mkdtemp(prefix="fulfill-pg-cpu-"))
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        if subprocess.run(["id", user], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--home-dir", "/nonexistent", "--shell",
                            "/usr/sbin/nologin", user], check=True)  # fmt: skip
        shutil.chown(directory, user)
    server = PostgresServer(directory, find_postgres_bin(), user)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def throwaway_database(name: str) -> Iterator[str]:
    """The URL of a new database ``name`` on a throw-away server, for the time of the block."""
    with postgres_server() as server:
        with _connect(server) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        yield server.url(name)


def _connect(server: PostgresServer, database: str = "postgres") -> Any:
    import psycopg

    return psycopg.connect(
        host="127.0.0.1", port=server.port, user="postgres", dbname=database, autocommit=True
    )


# ---------------------------------------------------------------------------------------------
# Statements


def statement_counts(server: PostgresServer, database: str) -> dict[str, int]:
    """Statements (``pg_stat_statements`` calls) and committed transactions of ``database``, so far."""
    with _connect(server) as conn:
        calls, plans, exec_ms, plan_ms = conn.execute(
            "SELECT coalesce(sum(s.calls), 0), coalesce(sum(s.plans), 0),"
            " coalesce(sum(s.total_exec_time), 0), coalesce(sum(s.total_plan_time), 0)"
            " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s",
            (database,),
        ).fetchone()
        commits, rollbacks, sessions = conn.execute(
            "SELECT xact_commit, xact_rollback, sessions FROM pg_stat_database WHERE datname = %s",
            (database,),
        ).fetchone()
    return {
        "statements": int(calls),
        "plans": int(plans),
        "exec_ms": float(exec_ms),
        "plan_ms": float(plan_ms),
        "commits": int(commits),
        "rollbacks": int(rollbacks),
        "sessions": int(sessions),
    }


def top_statements(server: PostgresServer, database: str, per: int) -> list[dict[str, Any]]:
    with _connect(server) as conn:
        rows = conn.execute(
            "SELECT s.calls, s.total_exec_time, s.plans, s.total_plan_time, s.query FROM pg_stat_statements s"
            " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s"
            " ORDER BY s.calls DESC LIMIT %s",
            (database, TOP_STATEMENTS),
        ).fetchall()
    return [
        {
            "per_execution": round(calls / per, 2),
            "ms_per_execution": round(total / per, 3),
            "plans_per_execution": round(plans / per, 2),
            "plan_ms_per_execution": round(plan_time / per, 3),
            "query": " ".join(query.split())[:160],
        }
        for calls, total, plans, plan_time, query in rows
    ]


TableWrites = dict[str, tuple[int, int, int, int, int, int]]


def table_writes(conn: Any) -> TableWrites:
    """Per table of ``conn``'s database (every schema, DBOS's included), so far: rows inserted,
    updated, updated in place (HOT: no index written) and deleted, then the table's indexes, whole
    and partial (``WHERE …``). ``conn``: a psycopg connection. A backend's writes are counted here
    once it has flushed its statistics (:func:`wait_for_stats`)."""
    rows = conn.execute(
        "SELECT t.schemaname || '.' || t.relname, t.n_tup_ins, t.n_tup_upd, t.n_tup_hot_upd,"
        " t.n_tup_del, count(i.indexrelid) FILTER (WHERE i.indpred IS NULL),"
        " count(i.indexrelid) FILTER (WHERE i.indpred IS NOT NULL)"
        " FROM pg_stat_user_tables t LEFT JOIN pg_index i ON i.indrelid = t.relid"
        " GROUP BY t.relid, t.schemaname, t.relname, t.n_tup_ins, t.n_tup_upd, t.n_tup_hot_upd, t.n_tup_del"
    ).fetchall()
    return {
        name: (int(ins), int(upd), int(hot), int(dele), int(whole), int(partial))
        for name, ins, upd, hot, dele, whole, partial in rows
    }


def _table_writes(server: PostgresServer, database: str) -> TableWrites:
    with _connect(server, database) as conn:
        return table_writes(conn)


def table_writes_between(before: TableWrites, after: TableWrites, per: int) -> dict[str, dict[str, float]]:
    """Rows written per execution by table between two :func:`table_writes` readings, the most
    index entries first. An insert, and an update that is not HOT, write one entry in each whole
    index of the table (``index_entries``), and one in each partial index whose condition the row
    meets (not counted: the statistics do not say which rows met it)."""
    result: dict[str, dict[str, float]] = {}
    for name, (ins, upd, hot, dele, indexes, partial) in after.items():
        ins0, upd0, hot0, del0, *_ = before.get(name, (0, 0, 0, 0, 0, 0))
        inserted, updated, in_place, deleted = ins - ins0, upd - upd0, hot - hot0, dele - del0
        if not (inserted or updated or deleted):
            continue
        result[name] = {
            "inserted": round(inserted / per, 2),
            "updated": round(updated / per, 2),
            "updated_in_place": round(in_place / per, 2),
            "deleted": round(deleted / per, 2),
            "indexes": indexes,
            "partial_indexes": partial,
            "index_entries": round((inserted + updated - in_place) * indexes / per, 2),
        }
    return dict(sorted(result.items(), key=lambda item: -item[1]["index_entries"]))


def reset_statements(server: PostgresServer) -> None:
    with _connect(server) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


# How long an idle backend may keep its counts before it flushes them (PostgreSQL 15's
# PGSTAT_IDLE_INTERVAL, 10 s: a backend that flushed less than a second before it went idle waits
# that long), and a margin.
STATS_FLUSH_SECONDS = 10.5


def wait_for_stats() -> None:
    """Until every backend has flushed its counts (``pg_stat_database``, ``pg_stat_user_tables``):
    a reading taken a second after a burst missed 4-5 % of its commits and up to a tenth of the
    rows it wrote in a table."""
    time.sleep(STATS_FLUSH_SECONDS)


# ---------------------------------------------------------------------------------------------
# The service


def _finished_count(conn: Any) -> int:
    return int(
        conn.execute(
            "SELECT count(*) FROM execution_attempts WHERE status NOT IN ('QUEUED', 'RUNNING')"
        ).fetchone()[0]
    )


def _connections(conn: Any) -> dict[str, int]:
    """The client connections to the server now, by database, and in all (this one left out)."""
    rows = conn.execute(
        "SELECT datname, count(*) FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY datname"
    ).fetchall()
    counts = {str(name): int(n) for name, n in rows}
    return {**counts, "all": sum(counts.values())}


def _wait_finished(
    server: PostgresServer, target: int, timeout: float, alive: Any, peaks: dict[str, int] | None = None
) -> None:
    """Wait until ``target`` executions have finished; with ``peaks``, also keep there the most
    connections seen at one moment, by database and in all (sampled every 0.25 s)."""
    deadline = time.monotonic() + timeout
    with _connect(server, SERVICE_DATABASE) as conn:
        while time.monotonic() < deadline:
            alive()
            if peaks is not None:
                for name, count in _connections(conn).items():
                    peaks[name] = max(peaks.get(name, 0), count)
            if _finished_count(conn) >= target:
                return
            time.sleep(0.25)
    raise RuntimeError(f"fewer than {target} executions finished within {timeout:.0f} s")


def _approve(base: str, ids: list[str], approver: str) -> None:
    import asyncio

    import httpx

    from fulfill.client import AsyncFulfillClient, default_limits

    async def approve_all() -> None:
        limits = default_limits(max_connections=64, max_keepalive_connections=None)
        async with AsyncFulfillClient(base, approver, timeout=120, limits=limits) as client:

            async def one(intent_id: str) -> None:
                for _ in range(5):
                    try:
                        await client.approve(intent_id)
                        return
                    except httpx.TransportError:
                        await asyncio.sleep(0.5)
                raise RuntimeError(f"could not approve {intent_id}")

            await asyncio.gather(*(one(i) for i in ids))

    asyncio.run(approve_all())


def _create(client: Any, count: int, account: str) -> list[str]:
    from concurrent.futures import ThreadPoolExecutor

    def one(index: int) -> str:
        created = client.create_intent(
            {
                "action_type": "CREATE_INTERNAL_TASK",
                "account_id": account,
                "parameters": {"title": f"cpu {index}"},
            }
        )
        return str(created.value.action_intent_id)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def run_service(
    server: PostgresServer,
    executions: int,
    workers: int,
    work: Path,
    gateway: str = "memory",
    warmup: int = WARMUP,
) -> dict[str, Any]:
    from fulfill.client import FulfillClient
    from fulfill.config import Settings
    from fulfill.domain.scopes import INTENT_CLIENT_SCOPES
    from fulfill.tokens import mint_token
    from fulfill_tools.launch import ServiceGroup

    with _connect(server) as conn:
        conn.execute(f'CREATE DATABASE "{SERVICE_DATABASE}"')
    group = ServiceGroup(
        database_url=server.url(SERVICE_DATABASE),
        workers=workers,
        secret=SECRET,
        directory=work,
        workers_call_api_gateway=gateway == "http",
    ).start()
    settings = Settings(jwt_secret=SECRET)
    token = mint_token(settings, tenant_id="bench", scopes=list(INTENT_CLIENT_SCOPES), subject="bench-agent")
    approver = mint_token(
        settings, tenant_id="bench", scopes=list(INTENT_CLIENT_SCOPES), subject="bench-approver"
    )
    client = FulfillClient(group.api_url, token, timeout=120)
    try:
        # Warm up: every process has imported, connected and compiled what an execution needs.
        warm = _create(client, warmup, "acc-warm")
        _approve(group.api_url, warm, approver)
        _wait_finished(server, warmup, warmup_timeout(warmup), group.check_alive)
        ids = _create(client, executions, "acc-cpu")
        time.sleep(1)
        idle = _measure_idle(server, group.pids(), SERVICE_DATABASE)
        wait_for_stats()
        reset_statements(server)
        before_counts = statement_counts(server, SERVICE_DATABASE)
        before_writes = _table_writes(server, SERVICE_DATABASE)
        before = _cpu(server, group.pids())
        threads_before = _threads(group.pids())
        started = time.monotonic()
        peaks: dict[str, int] = {}
        _approve(group.api_url, ids, approver)
        _wait_finished(server, warmup + executions, 600, group.check_alive, peaks)
        elapsed = time.monotonic() - started
        after = _cpu(server, group.pids())
        threads_after = _threads(group.pids())
        wait_for_stats()
        after_counts = statement_counts(server, SERVICE_DATABASE)
        writes = table_writes_between(before_writes, _table_writes(server, SERVICE_DATABASE), executions)
        top = top_statements(server, SERVICE_DATABASE, executions)
        with _connect(server, SERVICE_DATABASE) as conn:
            statuses = dict(
                conn.execute("SELECT status, count(*) FROM execution_attempts GROUP BY status").fetchall()
            )
    finally:
        client.close()
        group.stop()
    return _report(executions, elapsed, before, after, before_counts, after_counts, idle) | {
        "threads_per_execution": _threads_per_execution(threads_before, threads_after, executions),
        "statuses": statuses,
        "peak_connections": peaks,
        "rows_written_per_execution": writes,
        "top_statements_by_calls": top,
    }


def _cpu(server: PostgresServer, pids: dict[str, int]) -> dict[str, float]:
    result = {"postgres": postgres_cpu(server.postmaster)}
    for name, pid in pids.items():
        kind = "worker" if name.startswith("worker") else name
        result[kind] = result.get(kind, 0.0) + process_cpu(pid)
    return result


ThreadReading = tuple[float, float, dict[int, tuple[int, int]]]


def _threads(pids: dict[str, int]) -> dict[str, ThreadReading]:
    """Per process: user and system CPU seconds, and each thread's context switches."""
    return {name: (*process_cpu_split(pid), thread_switches(pid)) for name, pid in pids.items()}


def _threads_per_execution(
    before: dict[str, ThreadReading], after: dict[str, ThreadReading], executions: int
) -> dict[str, dict[str, float]]:
    """What each process kind spent per execution between two :func:`_threads` readings: user
    and system CPU-ms, and context switches (where CPU is spent on waking and waiting threads
    rather than on the work, it shows here)."""
    totals: dict[str, list[float]] = {}
    for name, (user, system, switches) in after.items():
        if name not in before:
            continue
        user0, system0, switches0 = before[name]
        voluntary, involuntary = switches_between(switches0, switches)
        kind = "worker" if name.startswith("worker") else name
        sums = totals.setdefault(kind, [0.0, 0.0, 0.0, 0.0])
        for index, value in enumerate((user - user0, system - system0, voluntary, involuntary)):
            sums[index] += value
    return {
        kind: {
            "user_ms": round(user * 1000 / executions, 2),
            "system_ms": round(system * 1000 / executions, 2),
            "voluntary_switches": round(voluntary / executions, 1),
            "involuntary_switches": round(involuntary / executions, 1),
        }
        for kind, (user, system, voluntary, involuntary) in totals.items()
    }


def _measure_idle(
    server: PostgresServer, pids: dict[str, int], database: str, seconds: float = 5
) -> dict[str, float]:
    """CPU-ms per second of every process while nothing is offered (the polls and heartbeats)."""
    before = _cpu(server, pids)
    time.sleep(seconds)
    after = _cpu(server, pids)
    return {kind: round((after[kind] - before[kind]) * 1000 / seconds, 1) for kind in before}


def _report(
    executions: int,
    elapsed: float,
    before: dict[str, float],
    after: dict[str, float],
    before_counts: dict[str, int],
    after_counts: dict[str, int],
    idle: dict[str, float],
) -> dict[str, Any]:
    per_kind = {kind: round((after[kind] - before[kind]) * 1000 / executions, 2) for kind in before}
    return {
        "executions": executions,
        "seconds": round(elapsed, 2),
        "executions_per_s": round(executions / elapsed, 1),
        "cpu_ms_per_execution": {**per_kind, "total": round(sum(per_kind.values()), 2)},
        "statements_per_execution": round(
            (after_counts["statements"] - before_counts["statements"]) / executions, 1
        ),
        "commits_per_execution": round((after_counts["commits"] - before_counts["commits"]) / executions, 1),
        "connections_opened": after_counts["sessions"] - before_counts["sessions"],
        "plans_per_execution": round((after_counts["plans"] - before_counts["plans"]) / executions, 1),
        "statement_ms_per_execution": {
            "execute": round((after_counts["exec_ms"] - before_counts["exec_ms"]) / executions, 3),
            "plan": round((after_counts["plan_ms"] - before_counts["plan_ms"]) / executions, 3),
        },
        "idle_cpu_ms_per_s": idle,
    }


# ---------------------------------------------------------------------------------------------
# The floor: a bare DBOS workflow of 3 no-op steps, in a process of its own


def floor_child(url: str, executions: int, warmup: int = WARMUP) -> None:
    """Run in the child process: launch DBOS on ``url``, say ``ready``, and on a line from stdin
    enqueue the burst, wait for it, say ``done``; exit when stdin closes."""
    from dbos import DBOS

    from fulfill.config import Settings
    from fulfill_tools import floor

    settings = Settings()
    DBOS(
        config={
            "name": "fulfill-bench-floor",
            "system_database_url": url,
            "log_level": "WARNING",
            "max_executor_threads": settings.worker_concurrency + 16,
            "notification_listener_polling_interval_sec": 0.1,
        }
    )
    DBOS.listen_queues([floor.FLOOR_QUEUE])
    DBOS.launch()
    DBOS.register_queue(
        floor.FLOOR_QUEUE,
        worker_concurrency=settings.worker_concurrency,
        polling_interval_sec=settings.queue_poll_seconds,
        on_conflict="always_update",
    )
    floor.measure_bare_burst(warmup, floor.FLOOR_QUEUE, timeout=warmup_timeout(warmup))
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "go":
            floor.measure_bare_burst(executions, floor.FLOOR_QUEUE, timeout=600)
            print("done", flush=True)
    DBOS.destroy(workflow_completion_timeout_sec=5)


def run_floor(server: PostgresServer, executions: int, warmup: int = WARMUP) -> dict[str, Any]:
    with _connect(server) as conn:
        conn.execute(f'CREATE DATABASE "{FLOOR_DATABASE}"')
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.pg_cpu", "--floor-child", server.url(FLOOR_DATABASE),
         "--executions", str(executions), "--warmup", str(warmup)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "DBOS__DISABLE_TELEMETRY": "true"},
    )  # fmt: skip
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the floor process did not start")
        time.sleep(1)
        idle = _measure_idle(server, {"floor": child.pid}, FLOOR_DATABASE)
        wait_for_stats()
        reset_statements(server)
        before_counts = statement_counts(server, FLOOR_DATABASE)
        before_writes = _table_writes(server, FLOOR_DATABASE)
        before = _cpu(server, {"floor": child.pid})
        threads_before = _threads({"floor": child.pid})
        started = time.monotonic()
        child.stdin.write("go\n")
        child.stdin.flush()
        if child.stdout.readline().strip() != "done":
            raise RuntimeError("the floor burst did not finish")
        elapsed = time.monotonic() - started
        after = _cpu(server, {"floor": child.pid})
        threads_after = _threads({"floor": child.pid})
        wait_for_stats()
        after_counts = statement_counts(server, FLOOR_DATABASE)
        writes = table_writes_between(before_writes, _table_writes(server, FLOOR_DATABASE), executions)
        top = top_statements(server, FLOOR_DATABASE, executions)
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
    return _report(executions, elapsed, before, after, before_counts, after_counts, idle) | {
        "threads_per_execution": _threads_per_execution(threads_before, threads_after, executions),
        "rows_written_per_execution": writes,
        "top_statements_by_calls": top,
    }


# ---------------------------------------------------------------------------------------------


def run(
    executions: int, workers: int, floor: bool, gateway: str = "memory", warmup: int = WARMUP
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fulfill-pg-cpu-logs-"))
    with postgres_server() as server:
        result: dict[str, Any] = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "processes": f"api + {workers} workers",
            "gateway": gateway,
            "warmup_executions": warmup,
        }
        if floor:
            result["floor"] = run_floor(server, executions, warmup)
        result["fulfill"] = run_service(server, executions, workers, work, gateway, warmup)
        if floor:
            result["ratio_cpu_to_floor"] = round(
                result["fulfill"]["cpu_ms_per_execution"]["total"]
                / result["floor"]["cpu_ms_per_execution"]["total"],
                2,
            )
    shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--executions", type=int, default=500)
    parser.add_argument("--workers", type=int, default=1, help="worker processes beside the api process")
    parser.add_argument("--no-floor", action="store_true", help="skip the bare-DBOS floor")
    parser.add_argument(
        "--gateway",
        choices=("memory", "http"),
        default="memory",
        help="how the workers reach the gateway: their own, in memory, or the api's over HTTP",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=WARMUP,
        help="executions run before the measured window, by the service and the floor alike",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--top", type=int, default=TOP_STATEMENTS, help="statements listed, the most frequent first"
    )
    parser.add_argument("--floor-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_child:
        floor_child(args.floor_child, args.executions, args.warmup)
        return
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1")
    globals()["TOP_STATEMENTS"] = args.top
    result = run(args.executions, args.workers, not args.no_floor, args.gateway, args.warmup)
    emit(result, args.json)


if __name__ == "__main__":
    main()
