"""The alert rules in deploy/prometheus/ are valid, behave as their unit tests say (promtool), and
name only metrics the service exports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fulfill_tools.launch import free_port, start_serve, stop_all
from tests.support import plain_http, postgres
from tests.support.harness import TEST_SECRET, Harness, fresh_database_url
from tests.support.metrics import scrape

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (scripts/test.sh installs Debian's prometheus)"
)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
def test_the_rules_are_valid() -> None:
    checked = _promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


@needs_promtool
def test_the_rules_unit_tests_pass() -> None:
    tested = _promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_metric_an_alert_reads_is_exported(harness: Harness) -> None:
    rules = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())
    used = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\bfulfill_[a-z_]+", rule["expr"])
    }
    assert used
    exported = plain_http.get(f"{harness.url}/metrics").text
    families = set(re.findall(r"^# TYPE (fulfill_[a-z_]+) ", exported, flags=re.MULTILINE))
    families |= {name.removesuffix("_total") for name in families}
    missing = sorted(name for name in used if name not in families and f"{name}_total" not in families)
    assert missing == [], f"alerts read metrics the service does not export: {missing}"


# The counters whose first increment an alert must see: each with the label values it watches.
WATCHED_COUNTERS = [
    *(("fulfill_kill_switch_stops_total", {"scope": scope}) for scope in ("GLOBAL_STOP", "TENANT")),
    *(
        ("fulfill_kill_switch_stops_total", {"scope": scope})
        for scope in ("GLOBAL_ACTION_TYPE", "TENANT_ACTION_TYPE")
    ),
    ("fulfill_reconciled_total", {"kind": "execution", "action": "resumed-stuck"}),
    ("fulfill_compensations_total", {"result": "abandoned"}),
    ("fulfill_approved_events_total", {"result": "started"}),
    ("fulfill_outbox_dead_lettered_total", {"kind": "engine"}),
    ("fulfill_outbox_deliveries_total", {"topic": "COMPENSATION", "result": "dead_letter"}),
]


# A worker's background passes and their default intervals (seconds).
BACKGROUND_PASSES = {
    "reconciler": 30.0,
    "escalation": 15.0,
    "probes": 60.0,
    "heartbeat": 5.0,
    "workflow-retention": 3600.0,
    "outbox-retention": 3600.0,
}


def test_the_counters_the_alerts_watch_exist_at_zero_from_start_up(tmp_path: Path) -> None:
    """A freshly started worker process, before anything happened: each watched counter is there
    at 0, so that increase() sees its first event (a counter born at 1 has no increase)."""
    port = free_port()
    database_url = fresh_database_url(tmp_path)
    env = {
        **os.environ,
        "FULFILL_DATABASE_URL": database_url,
        "FULFILL_JWT_SECRET": TEST_SECRET,
        "FULFILL_ROLE": "worker",
        "FULFILL_PORT": str(port),
        "FULFILL_LOG_LEVEL": "WARNING",
    }
    process = start_serve(env, tmp_path / "serve.log")
    try:
        samples = scrape(f"http://127.0.0.1:{port}")
    finally:
        stop_all([process])
        if postgres.is_postgres_url(database_url):
            postgres.drop_database(database_url)
    missing = [
        (name, labels)
        for name, labels in WATCHED_COUNTERS
        if samples.get((name, frozenset(labels.items()))) != 0.0
    ]
    assert missing == []
    # What FulfillBackgroundPassStalled reads: every pass of a worker, with its default interval,
    # no failure, and its start as its last success until it first completes.
    for name, interval in BACKGROUND_PASSES.items():
        labels = frozenset({("pass", name)})
        assert samples.get(("fulfill_background_pass_interval_seconds", labels)) == interval, name
        assert samples.get(("fulfill_background_pass_failures_total", labels)) == 0.0, name
        assert samples.get(("fulfill_background_pass_last_success_timestamp_seconds", labels), 0.0) > 0, name
