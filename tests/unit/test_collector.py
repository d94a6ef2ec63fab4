"""``fulfill.collector``: a serving process collects its youngest generation less often and keeps
what start-up built out of later collections; ``fulfill serve`` does both."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
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
        print(json.dumps({"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}), flush=True)
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
