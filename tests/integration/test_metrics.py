"""``/metrics`` as a scraper reads it: real executions, then the samples parsed with
prometheus_client's own parser, compared before and after (counters add up over every service
this test process ran)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import Fault, FaultyProxy, WebhookSink, wait_for
from tests.support.metrics import Samples, delta, has, label_values, value
from tests.support.metrics import scrape as scrape_url
from tests.support.outages import database_down

EXECUTION_STEPS = ["StartExecution", "ValidatePreflight", "MapActionToTool", "InvokeTool", "RecordOutcome"]
COMPENSATION_STEPS = ["BeginCompensation", "InvokeCompensation", "FinishCompensation"]
# A tenant id that appears nowhere else in the output (no metric, help text or label value).
TENANT = "tenant-zq7metrics"


def scrape(harness: Harness) -> Samples:
    return scrape_url(harness.url)


def recorded(harness: Harness, before: Samples) -> Samples:
    """A scrape once the execution run since ``before`` is counted. What ``run_task`` waits for is
    RecordOutcome's commit; the step counts the execution and itself just after it, so a scrape
    taken at once can miss both on a loaded machine."""

    def counted() -> Samples | None:
        samples = scrape(harness)
        ended = sum(
            delta(before, samples, "fulfill_step_seconds_count", step="RecordOutcome", result=result)
            for result in ("success", "failure", "retry", "stopped")
        )
        return samples if ended >= 1 else None

    return wait_for(counted)


def _service(tmp_path: Path, **overrides: Any) -> Harness:
    return Harness(make_settings(tmp_path, metrics_cache_seconds=0, **overrides)).start()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Harness]:
    running = _service(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def proxied_service(tmp_path: Path) -> Iterator[tuple[Harness, FaultyProxy]]:
    proxy = FaultyProxy()
    running = Harness(make_settings(tmp_path, gateway_url=proxy.url, metrics_cache_seconds=0))
    proxy.upstream = f"{running.url}/mcp"
    running.start()
    yield running, proxy
    proxy.close()
    running.stop()


# --- executions, steps, connectors ----------------------------------------------------------------


def test_a_successful_execution_counts_each_step_and_its_connector_call(service: Harness) -> None:
    before = scrape(service)
    with service.client(TENANT) as client:
        assert service.run_task(client)["status"] == "SUCCEEDED"
    after = recorded(service, before)
    for step in EXECUTION_STEPS:
        assert delta(before, after, "fulfill_step_seconds_count", step=step, result="success") == 1, step
        assert delta(before, after, "fulfill_step_seconds_count", step=step, result="retry") == 0, step
    assert delta(before, after, "fulfill_executions_total", status="SUCCEEDED", error_class="") == 1
    assert delta(before, after, "fulfill_connector_calls_total", connector="internal", result="success") == 1
    assert delta(before, after, "fulfill_connector_call_seconds_count", connector="internal") == 1
    assert delta(before, after, "fulfill_retries_total", connector="internal", step="InvokeTool") == 0
    # Nothing is stuck, nothing waits in the outbox, no switch is on.
    assert value(after, "fulfill_attempts_past_budget", state="QUEUED") == 0
    assert value(after, "fulfill_attempts_past_budget", state="RUNNING") == 0
    assert value(after, "fulfill_outbox_oldest_pending_age_seconds") == 0
    assert value(after, "fulfill_kill_switch_global_stop") == 0
    # By default no tenant id is a label value, and no per-tenant series exists.
    assert TENANT not in label_values(after)
    assert not has(after, "fulfill_tenant_executions_total")
    assert not has(after, "fulfill_tenant_attempts_past_budget")


def test_retried_tool_calls_are_counted_by_connector_with_their_error_class(
    proxied_service: tuple[Harness, FaultyProxy],
) -> None:
    harness, proxy = proxied_service
    proxy.add_faults(Fault("status_before", 503), Fault("status_before", 503))
    before = scrape(harness)
    with harness.client() as client:
        assert harness.run_task(client)["status"] == "SUCCEEDED"
    after = scrape(harness)
    assert proxy.state.tool_calls_seen == 3
    assert delta(before, after, "fulfill_retries_total", connector="internal", step="InvokeTool") == 2
    calls = "fulfill_connector_calls_total"
    assert delta(before, after, calls, connector="internal", result="retryable_failure") == 2
    assert delta(before, after, calls, connector="internal", result="success") == 1
    assert (
        delta(before, after, "fulfill_connector_errors_total", connector="internal", error_class="DOWNSTREAM")
        == 2
    )
    assert delta(before, after, "fulfill_connector_call_seconds_count", connector="internal") == 3
    steps = "fulfill_step_seconds_count"
    assert delta(before, after, steps, step="InvokeTool", result="retry") == 2
    assert delta(before, after, steps, step="InvokeTool", result="success") == 1


def test_a_business_failure_is_a_failed_step_and_a_connector_error(
    proxied_service: tuple[Harness, FaultyProxy],
) -> None:
    harness, proxy = proxied_service
    proxy.add_faults(Fault("status_before", 401))
    before = scrape(harness)
    with harness.client() as client:
        status = harness.run_task(client)
    after = recorded(harness, before)
    assert (status["status"], status["error_class"]) == ("FAILED", "AUTH")
    assert delta(before, after, "fulfill_step_seconds_count", step="InvokeTool", result="failure") == 1
    assert delta(before, after, "fulfill_connector_calls_total", connector="internal", result="failure") == 1
    assert (
        delta(before, after, "fulfill_connector_errors_total", connector="internal", error_class="AUTH") == 1
    )
    assert delta(before, after, "fulfill_retries_total", connector="internal", step="InvokeTool") == 0
    assert delta(before, after, "fulfill_executions_total", status="FAILED", error_class="AUTH") == 1


# --- compensation ---------------------------------------------------------------------------------


def _compensation_status(client: httpx.Client, intent_id: str) -> str | None:
    body = client.get(f"/executions/{intent_id}/status").json()
    return body.get("compensation_status")


def test_a_compensation_is_counted_when_begun_and_when_it_succeeds(service: Harness) -> None:
    with service.client() as client:
        intent_id = service.run_task(client)["action_intent_id"]
        before = scrape(service)
        assert client.post(f"/intents/{intent_id}/cancel").status_code == 202
        wait_for(lambda: _compensation_status(client, intent_id) == "COMPLETED")
    after = wait_for(
        lambda: (
            (s := scrape(service))
            and delta(before, s, "fulfill_compensations_total", result="completed") == 1
            and s
        )
    )
    assert delta(before, after, "fulfill_compensations_attempted_total", strategy="automatic") == 1
    assert delta(before, after, "fulfill_compensations_total", result="failed") == 0
    for step in COMPENSATION_STEPS:
        assert delta(before, after, "fulfill_step_seconds_count", step=step, result="success") == 1, step
    # The compensation tool's call is a call to the connector too.
    assert delta(before, after, "fulfill_connector_calls_total", connector="internal", result="success") == 1


def test_a_failed_compensation_is_counted_as_failed(proxied_service: tuple[Harness, FaultyProxy]) -> None:
    harness, proxy = proxied_service
    with harness.client() as client:
        intent_id = harness.run_task(client)["action_intent_id"]
        before = scrape(harness)
        proxy.add_faults(Fault("status_before", 400))  # the compensation tool's call is refused
        assert client.post(f"/intents/{intent_id}/cancel").status_code == 202
        wait_for(lambda: _compensation_status(client, intent_id) == "FAILED")
    after = wait_for(
        lambda: (
            (s := scrape(harness))
            and delta(before, s, "fulfill_compensations_total", result="failed") == 1
            and s
        )
    )
    assert delta(before, after, "fulfill_compensations_attempted_total", strategy="automatic") == 1
    assert delta(before, after, "fulfill_compensations_total", result="completed") == 0
    assert (
        delta(before, after, "fulfill_step_seconds_count", step="InvokeCompensation", result="failure") == 1
    )
    assert delta(before, after, "fulfill_connector_calls_total", connector="internal", result="failure") == 1


def test_a_manual_compensation_is_counted_as_asking_a_person(service: Harness) -> None:
    with service.client() as client:
        registered = client.post(
            "/admin/registry",
            json={
                "action_type": "CREATE_INTERNAL_TASK",
                "tool_name": "internal.create_task",
                "compensation_strategy": "MANUAL",
                "parameter_mapping": {"title": {"toolParam": "title", "required": True}},
            },
        )
        assert registered.status_code == 201, registered.text
        intent_id = service.run_task(client)["action_intent_id"]
        before = scrape(service)
        assert client.post(f"/intents/{intent_id}/cancel").status_code == 202
        wait_for(lambda: _compensation_status(client, intent_id) == "PENDING")
    after = wait_for(
        lambda: (
            (s := scrape(service))
            and delta(before, s, "fulfill_compensations_attempted_total", strategy="manual") == 1
            and s
        )
    )
    assert delta(before, after, "fulfill_compensations_attempted_total", strategy="automatic") == 0
    assert (
        delta(before, after, "fulfill_step_seconds_count", step="InvokeCompensation", result="success") == 0
    )


# --- kill switches --------------------------------------------------------------------------------


def test_kill_switch_gauges_follow_the_switches_and_a_stop_is_counted(service: Harness) -> None:
    with service.client(TENANT) as client:
        assert value(scrape(service), "fulfill_kill_switch_tenants_stopped") == 0
        stopped = client.put(
            f"/admin/tenants/{TENANT}/execution",
            json={
                "execution_enabled": False,
                "disabled_action_types": ["CREATE_INTERNAL_NOTE", "CREATE_CRM_TASK"],
            },
        )
        assert stopped.status_code == 200, stopped.text
        before = scrape(service)
        assert value(before, "fulfill_kill_switch_tenants_stopped") == 1
        assert value(before, "fulfill_kill_switch_disabled_action_types", scope="tenant") == 2
        assert value(before, "fulfill_kill_switch_disabled_action_types", scope="global") == 0
        status = service.run_task(client)
        assert (status["status"], status["error_code"]) == ("CANCELLED", "KILL_SWITCH_ENABLED")
        after = recorded(service, before)
        assert delta(before, after, "fulfill_kill_switch_stops_total", scope="TENANT") == 1
        assert (
            delta(before, after, "fulfill_step_seconds_count", step="ValidatePreflight", result="stopped")
            == 1
        )
        assert (
            delta(before, after, "fulfill_executions_total", status="CANCELLED", error_class="VALIDATION")
            == 1
        )
        assert (
            delta(before, after, "fulfill_connector_calls_total", connector="internal", result="success") == 0
        )
        assert TENANT not in label_values(after)  # counted, not named

        switched = client.put(
            "/admin/kill-switches",
            json={"global_stop": True, "disabled_action_types": ["CREATE_INTERNAL_NOTE"]},
        )
        assert switched.status_code == 200, switched.text
        on = scrape(service)
        assert value(on, "fulfill_kill_switch_global_stop") == 1
        assert value(on, "fulfill_kill_switch_disabled_action_types", scope="global") == 1

        client.put("/admin/kill-switches", json={"global_stop": False, "disabled_action_types": []})
        client.put(
            f"/admin/tenants/{TENANT}/execution",
            json={"execution_enabled": True, "disabled_action_types": []},
        )
        off = scrape(service)
    assert value(off, "fulfill_kill_switch_global_stop") == 0
    assert value(off, "fulfill_kill_switch_tenants_stopped") == 0
    assert value(off, "fulfill_kill_switch_disabled_action_types", scope="global") == 0
    assert value(off, "fulfill_kill_switch_disabled_action_types", scope="tenant") == 0


def test_the_environment_stop_shows_as_the_global_stop(tmp_path: Path) -> None:
    harness = _service(tmp_path, global_execution_stop=True)
    try:
        assert value(scrape(harness), "fulfill_kill_switch_global_stop") == 1
    finally:
        harness.stop()


# --- attempts past their budget -------------------------------------------------------------------


def test_a_running_attempt_past_its_budget_shows_until_it_ends(
    proxied_service: tuple[Harness, FaultyProxy],
) -> None:
    harness, proxy = proxied_service
    proxy.add_faults(Fault("hold_before"))  # the tool call hangs before it reaches the gateway
    with harness.client() as client:
        intent_id = harness.create_intent(
            client, execution_policy={"retry_count": 3, "timeout_seconds": 120, "max_attempts": 1}
        )["action_intent_id"]
        harness.approve(client, intent_id)
        assert proxy.state.held_before.wait(timeout=20)
        assert value(scrape(harness), "fulfill_attempts_past_budget", state="RUNNING") == 0
        harness.service.clock.advance(120 + 1)
        past = scrape(harness)
        assert value(past, "fulfill_attempts_past_budget", state="RUNNING") == 1
        assert value(past, "fulfill_attempts_past_budget", state="QUEUED") == 0
        proxy.state.release.set()  # the call fails; its retry finds the budget spent
        status = harness.wait_terminal(client, intent_id)
    assert (status["status"], status["error_code"]) == ("FAILED", "EXECUTION_TIMEOUT")
    assert value(scrape(harness), "fulfill_attempts_past_budget", state="RUNNING") == 0


def test_a_queued_attempt_past_its_budget_shows_on_an_api_process(tmp_path: Path) -> None:
    """An api process runs no workers: an approved execution stays QUEUED, as when every worker is
    down, and the gauge shows it once its budget has gone by."""
    api = _service(tmp_path, role="api")
    try:
        with api.client(TENANT) as client:
            intent_id = api.create_intent(
                client, execution_policy={"retry_count": 0, "timeout_seconds": 60, "max_attempts": 1}
            )["action_intent_id"]
            api.approve(client, intent_id)
            assert client.get(f"/executions/{intent_id}/status").json()["status"] == "PENDING"
        assert value(scrape(api), "fulfill_attempts_past_budget", state="QUEUED") == 0
        api.service.clock.advance(60 + 1)
        samples = scrape(api)
        assert value(samples, "fulfill_attempts_past_budget", state="QUEUED") == 1
        assert value(samples, "fulfill_attempts_past_budget", state="RUNNING") == 0
        assert TENANT not in label_values(samples)
    finally:
        api.stop()


# --- outbox ---------------------------------------------------------------------------------------


def test_the_outbox_age_grows_while_a_destination_is_down(tmp_path: Path) -> None:
    sink = WebhookSink(refuse=1_000_000)
    harness = _service(tmp_path, webhook_urls=[sink.url])
    try:
        with harness.client() as client:
            assert harness.run_task(client)["status"] == "SUCCEEDED"
        wait_for(lambda: sink.refused >= 1)
        first = scrape(harness)
        assert value(first, "fulfill_outbox_backlog") == 1
        harness.service.clock.advance(600)
        later = scrape(harness)
        assert value(later, "fulfill_outbox_backlog") == 1
        assert value(later, "fulfill_outbox_oldest_pending_age_seconds") >= (
            value(first, "fulfill_outbox_oldest_pending_age_seconds") + 600
        )
        sink._refuse = 0  # the destination is back: the backlog drains and the age drops to 0
        drained = wait_for(
            lambda: (s := scrape(harness)) and value(s, "fulfill_outbox_backlog") == 0 and s, timeout=30
        )
        assert value(drained, "fulfill_outbox_oldest_pending_age_seconds") == 0
        assert len(sink.deliveries) == 1
    finally:
        harness.stop()
        sink.close()


# --- tenant labels, when enabled ------------------------------------------------------------------


def test_tenant_labels_appear_only_when_enabled(tmp_path: Path) -> None:
    harness = _service(tmp_path, metrics_tenant_labels=True)
    try:
        before = scrape(harness)
        with harness.client(TENANT) as client:
            assert harness.run_task(client)["status"] == "SUCCEEDED"
            stopped = client.put(
                f"/admin/tenants/{TENANT}/execution",
                json={"execution_enabled": False, "disabled_action_types": []},
            )
            assert stopped.status_code == 200
        samples = recorded(harness, before)
        assert value(samples, "fulfill_tenant_executions_total", tenant=TENANT, status="SUCCEEDED") == 1
        assert value(samples, "fulfill_tenant_execution_stopped", tenant=TENANT) == 1
        assert has(samples, "fulfill_tenant_attempts_past_budget") is False  # no series: none is late
        assert TENANT in label_values(samples)
    finally:
        harness.stop()


# --- a store that does not answer -----------------------------------------------------------------


def test_a_broken_store_leaves_out_the_store_gauges_not_the_scrape(
    service: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    healthy = scrape(service)
    assert has(healthy, "fulfill_attempts_past_budget")

    monkeypatch.setattr(service.service.db, "read", database_down)
    broken = scrape(service)  # 200 (asserted by scrape), with this process's own metrics
    monkeypatch.undo()
    assert has(broken, "python_info")
    assert has(broken, "fulfill_execution_seconds_count")
    assert has(broken, "fulfill_outbox_pending")
    assert not has(broken, "fulfill_attempts_past_budget")
    assert not has(broken, "fulfill_connector_circuit_state")
    assert delta(healthy, broken, "fulfill_metrics_store_errors_total") == 1
    repaired = scrape(service)
    assert has(repaired, "fulfill_attempts_past_budget")
    assert value(repaired, "fulfill_metrics_store_errors_total") == value(
        broken, "fulfill_metrics_store_errors_total"
    )


def test_the_store_gauges_are_read_once_per_cache_period(tmp_path: Path) -> None:
    """With a cache, scrapes within its period share one read: a switch turned on shows only
    after the cached answer has expired (never before, whatever the timing)."""
    harness = Harness(make_settings(tmp_path, metrics_cache_seconds=60)).start()
    try:
        assert value(scrape(harness), "fulfill_kill_switch_global_stop") == 0
        with harness.client() as client:
            assert (
                client.put(
                    "/admin/kill-switches", json={"global_stop": True, "disabled_action_types": []}
                ).status_code
                == 200
            )
        assert value(scrape(harness), "fulfill_kill_switch_global_stop") == 0  # the cached read
    finally:
        harness.stop()
