"""``fulfill.collector``: a serving process collects its youngest generation less often and keeps
what start-up built out of later collections; ``fulfill serve`` does both."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from fulfill import collector
from fulfill.config import Settings


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


@pytest.mark.usefixtures("restored_collector")
def test_tune_raises_only_the_young_threshold() -> None:
    gc.set_threshold(700, 10, 10)
    collector.tune()
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, 10, 10)


@pytest.mark.usefixtures("restored_collector")
def test_tune_takes_the_configured_threshold() -> None:
    gc.set_threshold(700, 10, 10)
    collector.tune(Settings(gc_young_threshold=2_000).gc_young_threshold)
    assert gc.get_threshold() == (2_000, 10, 10)


@pytest.mark.parametrize("threshold", [0, 699, 1_000_001])
def test_a_threshold_below_pythons_default_or_absurdly_high_is_refused(threshold: int) -> None:
    with pytest.raises(ValidationError, match="gc_young_threshold"):
        Settings(gc_young_threshold=threshold)


@pytest.mark.usefixtures("restored_collector")
def test_freezing_collects_start_up_garbage_first_then_keeps_the_rest_out_of_collections() -> None:
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    # A cycle left as garbage by start-up is collected, not frozen.
    first, second = Node(), Node()
    first.other, second.other = second, first
    cycle_ids = {id(first), id(second)}
    del first, second
    kept = Node()  # alive: frozen
    frozen = collector.freeze_start_up()
    assert frozen == gc.get_freeze_count() > 0
    assert not cycle_ids & {id(obj) for obj in gc.get_objects()}  # gone, not frozen
    assert gc.is_tracked(kept)
    assert not any(obj is kept for obj in gc.get_objects())  # frozen objects are out of view


@pytest.mark.parametrize(
    ("counts", "cpu_share", "expected"),
    [
        ((5_000, 3, 0), 0.01, 0),  # idle, half a young generation: collect it in the gap
        ((999, 3, 0), 0.01, None),  # idle, too little to be worth a collection
        ((1_000, 3, 0), 0.01, 0),  # a tenth of the threshold is enough
        ((5_000, 10, 0), 0.01, 1),  # the middle generation is due: collect it (and the young)
        ((5_000, 10, 9), 0.01, 1),  # the oldest is left to Python's own rule
        ((9_999, 10, 0), 0.15, None),  # busy: the allocations' threshold governs
        ((9_999, 10, 0), 1.7, None),
    ],
)
def test_idle_generation_collects_only_when_idle_and_worth_it(
    counts: tuple[int, int, int], cpu_share: float, expected: int | None
) -> None:
    assert collector.idle_generation(counts, (10_000, 10, 10), cpu_share) == expected


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def _garbage_cycles(count: int) -> list[weakref.ref[_Cycle]]:
    refs = []
    for _ in range(count):
        cycle = _Cycle()
        refs.append(weakref.ref(cycle))
    return refs


@pytest.mark.usefixtures("restored_collector")
def test_the_idle_collector_collects_garbage_the_threshold_has_not_reached_yet() -> None:
    gc.collect()
    gc.set_threshold(100_000, 10, 10)
    refs = _garbage_cycles(20_000)  # two tenths of the threshold: no automatic collection
    assert all(ref() is not None for ref in refs)
    idle = collector.IdleCollector(look_seconds=0.02).start()
    try:
        deadline = time.monotonic() + 30
        while any(ref() is not None for ref in refs) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        idle.stop()
    assert all(ref() is None for ref in refs)
    assert idle.collections[0] + idle.collections[1] >= 1


@pytest.mark.usefixtures("restored_collector")
def test_the_idle_collector_stays_out_of_a_busy_process() -> None:
    gc.collect()
    gc.set_threshold(100_000, 10, 10)
    refs = _garbage_cycles(20_000)
    # A process whose CPU clock runs as fast as the wall clock: one core busy all the time.
    idle = collector.IdleCollector(look_seconds=0.02, cpu_seconds=time.monotonic).start()
    try:
        time.sleep(0.5)
    finally:
        idle.stop()
    assert sum(idle.collections.values()) == 0
    assert all(ref() is not None for ref in refs)  # still there: nothing collected them


SERVE_AND_REPORT = textwrap.dedent(
    """
    import gc, json, os, signal, sys, threading, time, urllib.request

    port = sys.argv[1]

    def report() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        while gc.get_freeze_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        threads = [thread.name for thread in threading.enumerate()]
        print(json.dumps({"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count(), "threads": threads}), flush=True)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=report, daemon=True).start()
    from fulfill.cli import main
    sys.argv = ["fulfill", "serve", "--host", "127.0.0.1", "--port", port]
    main()
    """
)


@pytest.mark.parametrize("setting", [None, "2500"], ids=["default", "FULFILL_GC_YOUNG_THRESHOLD"])
def test_fulfill_serve_tunes_the_collector_and_freezes_once_ready(
    tmp_path: Path, setting: str | None
) -> None:
    from fulfill_tools.launch import free_port

    port = str(free_port())
    env = {
        **{name: value for name, value in os.environ.items() if name != "FULFILL_GC_YOUNG_THRESHOLD"},
        "FULFILL_DATABASE_URL": f"sqlite:///{tmp_path / 'fulfill.db'}",
        "FULFILL_JWT_SECRET": "collector-test-secret-0123456789abcdef",
        "DBOS__DISABLE_TELEMETRY": "true",
        **({"FULFILL_GC_YOUNG_THRESHOLD": setting} if setting else {}),
    }
    process = subprocess.run(
        [sys.executable, "-c", SERVE_AND_REPORT, port],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    assert lines, process.stdout + process.stderr
    report = json.loads(lines[-1])
    assert report["threshold"][0] == (int(setting) if setting else collector.YOUNG_THRESHOLD)
    assert report["frozen"] > 10_000  # the modules, models and routes built at start-up
    assert "fulfill-gc-idle" in report["threads"]
