"""deploy/compose.yaml is the topology the multi-process tests run (tests/support/topology.py):
the same roles, settings that exist, one database and one secret for every process, a distinct
executor id per worker, health checks on the service's own port, and Prometheus scraping every
process with the alert rules loaded. Read as YAML: nothing is pulled or started."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from fulfill.config import Settings
from tests.support.topology import SHARED_SETTINGS, SPLIT_ROLES, seconds_a_stop_needs

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SETTINGS = {f"FULFILL_{name.upper()}" for name in Settings.model_fields}


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _fulfill_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the image built from the repository's Dockerfile."""
    return {
        name: service
        for name, service in compose["services"].items()
        if isinstance(service.get("build"), dict)
        and (
            DEPLOY / service["build"]["context"] / service["build"].get("dockerfile", "Dockerfile")
        ).resolve()
        == ROOT / "Dockerfile"
    }


def _serving(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fulfill services running `fulfill serve`, each with its role."""
    return {
        name: service
        for name, service in _fulfill_services(compose).items()
        if service["command"][:1] == ["serve"]
    }


def _role(service: dict[str, Any]) -> str:
    command = service["command"]
    assert command[:2] == ["serve", "--role"], f"a role is named on the command line: {command}"
    return str(command[2])


def test_the_roles_are_the_ones_the_multi_process_tests_run() -> None:
    roles = sorted(_role(service) for service in _serving(_compose()).values())
    assert roles == sorted(SPLIT_ROLES)


def test_every_fulfill_setting_named_is_one_the_service_reads() -> None:
    compose = _compose()
    named = {
        variable
        for service in _fulfill_services(compose).values()
        for variable in service.get("environment", {})
        if variable.startswith("FULFILL_")
    }
    assert named, "the fulfill services are configured through FULFILL_* settings"
    assert sorted(named - SETTINGS) == []


def test_every_process_shares_the_database_and_the_secret_and_each_has_its_own_executor_id() -> None:
    services = _fulfill_services(_compose())
    for setting in SHARED_SETTINGS:
        values = {str(service["environment"].get(setting)) for service in services.values()}
        assert len(values) == 1, f"{setting} differs between processes: {values}"
        assert "None" not in values, f"{setting} is missing from a process"
    ids = [service["environment"].get("FULFILL_EXECUTOR_ID") for service in _serving(_compose()).values()]
    assert None not in ids
    assert len(set(ids)) == len(ids), f"two processes share an executor id: {ids}"


def test_no_secret_is_written_in_the_file() -> None:
    compose = _compose()
    secrets = {"FULFILL_JWT_SECRET", "POSTGRES_PASSWORD"}
    for service in compose["services"].values():
        for variable, value in service.get("environment", {}).items():
            if variable in secrets:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (
                    f"{variable} comes from the environment"
                )
            if variable == "FULFILL_DATABASE_URL":
                assert "${POSTGRES_PASSWORD:?" in str(value)


def _probe_port(test: list[str]) -> tuple[int, str]:
    found = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", " ".join(test))
    assert found, f"the health check probes the service over HTTP: {test}"
    return int(found.group(1)), found.group(2)


def test_each_process_has_a_health_check_on_its_own_port_and_only_the_api_is_published() -> None:
    compose = _compose()
    for name, service in _serving(compose).items():
        port = int(service["environment"]["FULFILL_PORT"])
        probed, path = _probe_port(service["healthcheck"]["test"])
        assert (probed, path) in ((port, "/readyz"), (port, "/healthz")), name
        published = [str(mapping).rsplit(":", 1)[-1] for mapping in service.get("ports", [])]
        metrics_port = service["environment"].get("FULFILL_METRICS_PORT")
        assert str(metrics_port) not in published, f"{name}: /metrics stays on the compose network"
        if _role(service) == "api":
            assert published == [str(port)], f"{name} publishes its API port"
            assert all(str(mapping).startswith("127.0.0.1:") for mapping in service["ports"])
        else:
            assert published == [], f"{name}: only the api process takes requests"


def test_migrations_run_once_before_every_process() -> None:
    compose = _compose()
    migrate = [
        name for name, service in _fulfill_services(compose).items() if service["command"] == ["migrate"]
    ]
    assert len(migrate) == 1
    assert compose["services"][migrate[0]]["healthcheck"] == {"disable": True}
    for name, service in _serving(compose).items():
        assert service["depends_on"][migrate[0]]["condition"] == "service_completed_successfully", name
    database = compose["services"][migrate[0]]["depends_on"]
    assert [condition["condition"] for condition in database.values()] == ["service_healthy"]


def test_prometheus_scrapes_every_process_on_its_metrics_port_with_the_alert_rules() -> None:
    compose = _compose()
    prometheus = compose["services"]["prometheus"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in prometheus["volumes"]}
    assert (DEPLOY / "prometheus" / "alerts.yml").exists()
    assert mounts["./prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yml"]
    targets = sorted(
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    )
    expected = sorted(
        f"{name}:{service['environment']['FULFILL_METRICS_PORT']}"
        for name, service in _serving(compose).items()
    )
    assert targets == expected


@pytest.mark.parametrize("service", ["api", "worker-1", "worker-2", "migrate"])
def test_the_fulfill_containers_are_read_only_and_unprivileged(service: str) -> None:
    settings = _compose()["services"][service]
    assert settings["read_only"] is True
    assert settings["tmpfs"] == ["/tmp"]
    assert settings["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in settings["security_opt"]


def test_a_container_is_given_the_time_its_stop_takes() -> None:
    """As a pod is (test_deploy_k8s.py): Docker's default of 10 s would kill a stop midway."""
    for name, service in _serving(_compose()).items():
        given = service["stop_grace_period"]
        assert re.fullmatch(r"\d+s", given), (name, given)
        assert int(given[:-1]) >= seconds_a_stop_needs(service["environment"]), name
