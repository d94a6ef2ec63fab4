"""The alert rules in deploy/prometheus/ are valid, behave as their unit tests say (promtool), and
name only metrics the service exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.harness import Harness

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
    exported = httpx.get(f"{harness.url}/metrics").text
    families = set(re.findall(r"^# TYPE (fulfill_[a-z_]+) ", exported, flags=re.MULTILINE))
    families |= {name.removesuffix("_total") for name in families}
    missing = sorted(name for name in used if name not in families and f"{name}_total" not in families)
    assert missing == [], f"alerts read metrics the service does not export: {missing}"
