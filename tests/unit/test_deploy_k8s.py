"""deploy/k8s/: the api and worker Deployments run the roles with the probes the service answers
(readiness /readyz, liveness /healthz on FULFILL_PORT), sized, unprivileged and read-only; every
setting named exists, secrets come from the Secret only, and the example Secret's placeholders
are refused at start. Read as YAML; the schemas are checked by test_deploy_checks.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from fulfill.config import Settings
from tests.support.topology import seconds_a_stop_needs

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SETTINGS = {f"FULFILL_{name.upper()}" for name in Settings.model_fields}
# Settings that hold a secret, or a URL that may carry a password: never in the ConfigMap.
SECRET_SETTINGS = {
    f"FULFILL_{name.upper()}"
    for name, field in Settings.model_fields.items()
    if field.annotation is SecretStr or "secret" in name
} | {"FULFILL_DATABASE_URL"}


def _documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        documents += [
            document for document in yaml.safe_load_all(path.read_text(encoding="utf-8")) if document
        ]
    return documents


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"one {kind} {name}"
    return found[0]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _settings_data() -> dict[str, str]:
    return dict(_one("ConfigMap", "fulfill-settings")["data"])


def _secret_data() -> dict[str, str]:
    return dict(_one("Secret", "fulfill-secrets")["stringData"])


@pytest.mark.parametrize(("name", "role"), [("fulfill-api", "api"), ("fulfill-worker", "worker")])
def test_each_role_has_its_deployment_with_the_probes_the_service_answers(name: str, role: str) -> None:
    container = _container(_one("Deployment", name))
    assert container["args"] == ["serve", "--role", role]
    port = int(_settings_data()["FULFILL_PORT"])
    ports = {entry["name"]: entry["containerPort"] for entry in container["ports"]}
    assert ports["http"] == port
    assert ports["metrics"] == int(_settings_data()["FULFILL_METRICS_PORT"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    annotations = _one("Deployment", name)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["metrics"])
    # Each pod its own executor id.
    executor = [entry for entry in container["env"] if entry["name"] == "FULFILL_EXECUTOR_ID"]
    assert executor == [
        {"name": "FULFILL_EXECUTOR_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]


@pytest.mark.parametrize(
    "kind_name", [("Deployment", "fulfill-api"), ("Deployment", "fulfill-worker"), ("Job", "fulfill-migrate")]
)
def test_every_pod_is_sized_unprivileged_and_read_only(kind_name: tuple[str, str]) -> None:
    workload = _one(*kind_name)
    pod = workload["spec"]["template"]["spec"]
    container = _container(workload)
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {mount["mountPath"] for mount in container["volumeMounts"]} == {"/tmp"}
    assert container["envFrom"] == [
        {"configMapRef": {"name": "fulfill-settings"}},
        {"secretRef": {"name": "fulfill-secrets"}},
    ]


def test_the_migration_job_runs_migrate_once() -> None:
    job = _one("Job", "fulfill-migrate")
    assert _container(job)["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_service_selects_the_api_pods_only_and_the_budgets_and_autoscaler_their_deployments() -> None:
    api = _one("Deployment", "fulfill-api")
    worker = _one("Deployment", "fulfill-worker")
    service = _one("Service", "fulfill-api")
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] != worker["spec"]["selector"]["matchLabels"]
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]
    for deployment in (api, worker):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        budget = _one("PodDisruptionBudget", deployment["metadata"]["name"])
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    autoscaler = _one("HorizontalPodAutoscaler", "fulfill-worker")
    # The api's replicas are its own; the workers' are the autoscaler's alone (none in the
    # Deployment, which would reset them at every apply). A budget always leaves one pod to evict.
    assert "replicas" not in worker["spec"]
    assert _one("PodDisruptionBudget", "fulfill-api")["spec"]["minAvailable"] < api["spec"]["replicas"]
    assert (
        _one("PodDisruptionBudget", "fulfill-worker")["spec"]["minAvailable"]
        < autoscaler["spec"]["minReplicas"]
    )
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "fulfill-worker",
    }
    assert autoscaler["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert autoscaler["spec"]["minReplicas"] >= 2


def test_every_setting_named_exists_and_secrets_are_in_the_secret_only() -> None:
    settings, secrets = _settings_data(), _secret_data()
    named = set(settings) | set(secrets)
    for document in _documents():
        if document["kind"] in ("Deployment", "Job"):
            named |= {entry["name"] for entry in _container(document).get("env", [])}
    assert sorted(named - SETTINGS) == []
    assert sorted(set(settings) & SECRET_SETTINGS) == []
    assert "FULFILL_DATABASE_URL" in secrets


def test_the_settings_are_valid_once_the_secret_is_filled_in() -> None:
    filled = {
        "FULFILL_DATABASE_URL": "postgresql+psycopg://fulfill:pw@db:5432/fulfill",
        "FULFILL_SERVICE_TOKEN_SECRET": "s" * 32,
        "FULFILL_SECRETS_KEY": "",
        "FULFILL_METRICS_TOKEN": "m" * 16,
    }
    assert set(filled) == set(_secret_data())
    settings = Settings(
        **{
            key.removeprefix("FULFILL_").lower(): value
            for key, value in {**_settings_data(), **filled}.items()
        }
    )
    assert settings.auth_mode == "production"


@pytest.mark.parametrize(
    "placeholder", ["FULFILL_SERVICE_TOKEN_SECRET", "FULFILL_SECRETS_KEY", "FULFILL_METRICS_TOKEN"]
)
def test_each_placeholder_of_the_example_secret_is_refused_at_start(placeholder: str) -> None:
    """A Secret applied as the example stands does not start a service with a guessable secret."""
    values = {
        **_settings_data(),
        "FULFILL_SERVICE_TOKEN_SECRET": "s" * 32,
        "FULFILL_METRICS_TOKEN": "m" * 16,
        placeholder: _secret_data()[placeholder],
    }
    assert "REPLACE-ME" in values[placeholder]
    with pytest.raises(ValidationError):
        Settings(**{key.removeprefix("FULFILL_").lower(): value for key, value in values.items()})


@pytest.mark.parametrize("name", ["fulfill-api", "fulfill-worker"])
def test_a_pod_is_given_the_time_its_stop_takes(name: str) -> None:
    """SIGTERM, then the requests in flight (FULFILL_SHUTDOWN_GRACE_SECONDS), then the executions
    running, then DBOS's shutdown (a few seconds to spare): killed sooner, a pod's stop is cut."""
    given = _one("Deployment", name)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert given >= seconds_a_stop_needs(_settings_data())
