"""The deployment files pass their own tools' checks (the same as scripts/check-deploy.sh): hadolint on the Dockerfile, the Compose CLI's config check on deploy/compose.yaml,
kubernetes-validate (strict) on deploy/k8s/, promtool on the Prometheus configuration. No image is
pulled and no daemon runs. Each tool is also shown to refuse a broken file, so that a check that
passes is one that could have failed.

The checkers are pyproject.toml's `deploy` extra; without them these tests skip, except in CI
(CI=true), where scripts/test.sh has installed them and a missing one fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_ENV = {"POSTGRES_PASSWORD": "placeholder", "FULFILL_JWT_SECRET": "placeholder"}


def _tool(name: str, install: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed, and CI installs it ({install})")
        pytest.skip(f"{name} not installed ({install})")
    return found


def _run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


DEPLOY_EXTRA = '.venv/bin/pip install -e ".[deploy]"'


def test_hadolint_passes_the_dockerfile_and_refuses_an_unpinned_one(tmp_path: Path) -> None:
    hadolint = _tool("hadolint", DEPLOY_EXTRA)
    checked = _run(hadolint, "Dockerfile")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        (ROOT / "Dockerfile")
        .read_text()
        .replace("python:3.11.14-slim-bookworm AS runtime", "python AS runtime")
    )
    refused = _run(hadolint, str(broken))
    assert refused.returncode != 0
    assert "DL3006" in refused.stdout  # "Always tag the version of an image explicitly"


def test_the_compose_file_passes_its_config_check_and_needs_its_secrets(tmp_path: Path) -> None:
    compose = _tool("docker-compose", DEPLOY_EXTRA)
    checked = _run(compose, "-f", "deploy/compose.yaml", "config", "--quiet", env=COMPOSE_ENV)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    missing = _run(
        compose,
        "-f",
        "deploy/compose.yaml",
        "config",
        "--quiet",
        env={"POSTGRES_PASSWORD": "", "FULFILL_JWT_SECRET": ""},
    )
    assert missing.returncode != 0
    assert "FULFILL_JWT_SECRET" in missing.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text(
        (ROOT / "deploy" / "compose.yaml")
        .read_text()
        .replace("condition: service_completed_successfully", "condition: when_it_feels_like_it", 1)
    )
    refused = _run(compose, "-f", str(broken), "config", "--quiet", env=COMPOSE_ENV)
    assert refused.returncode != 0
    assert "depends_on.migrate.condition" in refused.stderr


def test_the_kubernetes_manifests_pass_the_schemas_and_an_unknown_field_does_not(tmp_path: Path) -> None:
    validate = _tool("kubernetes-validate", DEPLOY_EXTRA)
    manifests = sorted(str(path) for path in (ROOT / "deploy" / "k8s").glob("*.yaml"))
    assert len(manifests) >= 4
    checked = _run(validate, "--strict", *manifests)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = tmp_path / "worker.yaml"
    broken.write_text(
        (ROOT / "deploy" / "k8s" / "30-worker.yaml")
        .read_text()
        .replace("readinessProbe:", "readinesProbe:", 1)
    )
    refused = _run(validate, "--strict", str(broken))
    assert refused.returncode != 0
    assert "'readinesProbe' was unexpected" in refused.stdout + refused.stderr


def test_the_prometheus_configuration_loads_the_alert_rules() -> None:
    promtool = _tool("promtool", "scripts/test.sh installs Debian's prometheus")
    checked = _run(promtool, "check", "config", "prometheus.yml", cwd=ROOT / "deploy" / "prometheus")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout


def test_the_check_script_runs_every_check() -> None:
    for name in ("hadolint", "docker-compose", "kubernetes-validate"):
        _tool(name, DEPLOY_EXTRA)
    if not (ROOT / ".venv" / "bin" / "hadolint").exists():
        pytest.skip("scripts/check-deploy.sh runs the checkers of the repository's .venv")
    checked = _run("bash", "scripts/check-deploy.sh")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip().endswith("deployment files: checked")
