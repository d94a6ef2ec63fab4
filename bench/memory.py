"""Memory and start-up of one idle ``fulfill serve``, and what its imports cost.

``fulfill serve`` (every role) runs in its own process on a temporary SQLite database with the
default configuration (plus any ``--env``). For each of ``--runs`` starts the benchmark reports the
seconds from spawning the process to ``/readyz`` answering 200, then, after ``--idle`` seconds of
idleness, its resident memory (``VmRSS``), the memory only it holds (USS: private clean + private
dirty pages), its peak (``VmHWM``) and its thread count, all read from ``/proc`` (Linux).

The floor, measured in the same run: a bare interpreter that imports only the libraries a
service cannot do without (DBOS, SQLAlchemy, the MCP SDK, FastAPI, uvicorn) and nothing else.

One more start runs under ``python -X importtime``; its output is parsed into the packages that
cost most to import (summed over their modules, so cumulative per package) with the first module
of the service that imported each, and a fresh interpreter then imports the same modules in the
same order and attributes each module's growth of the resident set to its package.

    python -m bench.memory
    python -m bench.memory --runs 3 --top 30 --json bench/results/memory.json
    python -m bench.memory --migrated      # a restart: the database is already at head
    python -m bench.memory --own 20        # and the service's own modules that cost most
    python -m bench.memory --env MALLOC_ARENA_MAX=2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fulfill_tools.launch import free_port, local_url, stop_all, wait_ready

SECRET = "bench-secret-0123456789abcdef0123456789"
FLOOR_IMPORTS = ("dbos", "sqlalchemy", "mcp", "fastapi", "uvicorn")
_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")

# Run in a fresh interpreter: imports the module names read on stdin one by one, timing each
# module's execution by the growth of the resident set (KiB) while it ran, less what the modules it
# imported in turn grew it by, and adds that to its package (so a package's pydantic models count
# for that package, not for pydantic).
_ATTRIBUTE = r"""
import importlib, json, sys
import _frozen_importlib as bootstrap
def rss():
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
grown, own, stack, load = {}, {}, [], bootstrap._load_unlocked
def measured(spec):
    stack.append([rss(), 0])
    try:
        return load(spec)
    finally:
        began, children = stack.pop()
        spent = rss() - began
        top = spec.name.split('.')[0]
        grown[top] = grown.get(top, 0) + spent - children
        if top == 'fulfill':
            own[spec.name] = spent - children
        if stack:
            stack[-1][1] += spent
bootstrap._load_unlocked = measured
names = json.load(sys.stdin)
base = rss()
for name in names:
    if name not in sys.modules:
        try:
            importlib.import_module(name)
        except BaseException:
            pass
print(json.dumps({'base': base, 'total': rss(), 'grown': grown, 'own': own}))
"""


@dataclass
class Start:
    ready_seconds: float
    rss_mib: float
    uss_mib: float
    peak_mib: float
    threads: int


def _status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            fields[key] = int(value.split()[0])
    return fields


def _uss_kib(pid: int) -> int:
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def _env(directory: Path, port: int, extra: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "DBOS__DISABLE_TELEMETRY": "true",
        "FULFILL_DATABASE_URL": f"sqlite:///{directory}/fulfill.db",
        "FULFILL_PORT": str(port),
        "FULFILL_HOST": "127.0.0.1",
        "FULFILL_JWT_SECRET": SECRET,
        "FULFILL_LOG_LEVEL": "WARNING",
        **extra,
    }


def start_once(
    idle: float, extra: dict[str, str], importtime: Path | None = None, *, migrated: bool
) -> Start:
    """One ``fulfill serve`` on a fresh database (``migrated``: by ``fulfill migrate`` beforehand,
    as every start but a deployment's first finds it), measured once idle for ``idle`` s."""
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        port = free_port()
        if migrated:
            subprocess.run(
                [sys.executable, "-m", "fulfill", "migrate"],
                env=_env(directory, port, extra),
                check=True,
                capture_output=True,
            )
        command = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "fulfill", "serve"]
        log = directory / "serve.log"
        with log.open("wb") as out, (importtime or Path(os.devnull)).open("wb") as err:
            began = time.monotonic()
            process = subprocess.Popen(command, env=_env(directory, port, extra), stdout=out, stderr=err)
        try:
            wait_ready(local_url(port), {"fulfill serve": (process, log)}, timeout=600)
            ready = time.monotonic() - began
            time.sleep(idle)
            status = _status(process.pid)
            uss = _uss_kib(process.pid)
        finally:
            stop_all([process])
    return Start(
        ready_seconds=round(ready, 2),
        rss_mib=round(status["VmRSS"] / 1024, 1),
        uss_mib=round(uss / 1024, 1),
        peak_mib=round(status["VmHWM"] / 1024, 1),
        threads=status["Threads"],
    )


def floor_mib() -> float:
    """Resident memory of an interpreter that imports only what a service cannot do without."""
    code = (
        f"import {', '.join(FLOOR_IMPORTS)}\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1])"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return round(int(out.stdout.strip()) / 1024, 1)


def parse_importtime(text: str) -> list[tuple[str, int, int, int]]:
    """(module, self µs, cumulative µs, depth) per imported module, in the order imports ended."""
    rows = []
    for line in text.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            rows.append((match[4], int(match[1]), int(match[2]), len(match[3]) // 2))
    return rows


def first_importer(rows: list[tuple[str, int, int, int]], index: int) -> str:
    """The innermost module of the service, or else the outermost module, that imported rows[index]."""
    depth, chain = rows[index][3], []
    for name, _, _, row_depth in rows[index + 1 :]:
        if row_depth < depth:
            chain.append(name)
            depth = row_depth
    own = [name for name in chain if name.startswith("fulfill.")]
    return own[0] if own else (chain[-1] if chain else "")


def package_costs(rows: list[tuple[str, int, int, int]]) -> list[dict[str, Any]]:
    packages: dict[str, dict[str, Any]] = {}
    for index, (name, self_us, _, _) in enumerate(rows):
        top = name.split(".")[0]
        entry = packages.get(top)
        if entry is None:
            entry = packages[top] = {"package": top, "import_ms": 0.0, "modules": 0, "first_by": ""}
        entry["import_ms"] += self_us / 1000
        entry["modules"] += 1
        if top != "fulfill" and not entry["first_by"]:
            entry["first_by"] = first_importer(rows, index)
    for entry in packages.values():
        entry["import_ms"] = round(entry["import_ms"], 1)
    return sorted(packages.values(), key=lambda entry: -entry["import_ms"])


def memory_by_package(rows: list[tuple[str, int, int, int]]) -> dict[str, Any]:
    names = [name for name, *_ in rows if name not in ("__main__", "site")]
    out = subprocess.run(
        [sys.executable, "-c", _ATTRIBUTE],
        input=json.dumps(names),
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="starts measured (default 3)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before reading (default 5)")
    parser.add_argument("--top", type=int, default=25, help="packages listed (default 25)")
    parser.add_argument(
        "--own", type=int, default=0, metavar="N", help="also list the service's N costliest modules"
    )
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="more environment")
    parser.add_argument(
        "--migrated", action="store_true", help="start on a database migrated beforehand (a restart)"
    )
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)

    floor = floor_mib()
    starts = [start_once(args.idle, extra, migrated=args.migrated) for _ in range(args.runs)]
    with tempfile.TemporaryDirectory() as name:
        trace = Path(name) / "importtime.txt"
        start_once(0.5, extra, importtime=trace, migrated=args.migrated)
        rows = parse_importtime(trace.read_text(errors="replace"))
    costs = package_costs(rows)
    attributed = memory_by_package(rows)
    for entry in costs:
        entry["rss_mib"] = round(attributed["grown"].get(entry["package"], 0) / 1024, 1)

    print(
        f"fulfill serve, idle {args.idle:g} s, SQLite ({'migrated' if args.migrated else 'new'}), "
        f"{len(rows)} modules imported" + (f", with {' '.join(args.env)}" if args.env else "")
    )
    print(f"{'ready s':>8} {'RSS MiB':>8} {'USS MiB':>8} {'peak MiB':>9} {'threads':>8}")
    for start in starts:
        print(
            f"{start.ready_seconds:8.2f} {start.rss_mib:8.1f} {start.uss_mib:8.1f} {start.peak_mib:9.1f} {start.threads:8d}"
        )
    rss = sorted(start.rss_mib for start in starts)[len(starts) // 2]
    print(
        f"floor (python importing {', '.join(FLOOR_IMPORTS)} only): {floor:.1f} MiB; median RSS {rss:.1f} MiB "
        f"= floor + {rss - floor:.1f} MiB"
    )
    print(f"\nimports replayed in a fresh interpreter: {attributed['total'] / 1024:.1f} MiB resident")
    print(f"{'package':<28} {'import ms':>9} {'modules':>7} {'RSS MiB':>8}  first imported by")
    for entry in costs[: args.top]:
        print(
            f"{entry['package']:<28} {entry['import_ms']:9.1f} {entry['modules']:7d} {entry['rss_mib']:8.1f}  {entry['first_by']}"
        )
    own = sorted(attributed["own"].items(), key=lambda item: -item[1])
    if args.own:
        print(f"\n{'module of the service':<44} {'RSS MiB':>8}")
        for module, kib in own[: args.own]:
            print(f"{module:<44} {kib / 1024:8.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        results = {
            "idle_seconds": args.idle,
            "migrated": args.migrated,
            "env": args.env,
            "floor_mib": floor,
            "starts": [asdict(start) for start in starts],
            "modules": len(rows),
            "replayed_imports_mib": round(attributed["total"] / 1024, 1),
            "packages": costs,
            "own_modules_mib": {module: round(kib / 1024, 2) for module, kib in own},
        }
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
