"""Flow control of connectors, seen from the target: rate and concurrency limits, limits changed
at run time, the circuit breaker, and the admin routes and metrics that show them.

The engine reaches its gateway through a real HTTP proxy on 127.0.0.1 that holds every
``tools/call`` (a slow target), injects failures, and records when each call arrived and answered.
The limits across several processes are in ``test_flow_control_processes.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select

from fulfill.domain.time import epoch_from_iso
from fulfill.store.tables import connector_calls, internal_tasks
from tests.support import plain_http
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import Fault, FaultyProxy, most_in_any_window, wait_for

pytestmark = pytest.mark.slow


def put_limits(
    client: httpx.Client, name: str, rate: float | None, concurrency: int | None
) -> dict[str, Any]:
    response = client.put(
        f"/admin/connectors/{name}/limits", json={"rate_per_second": rate, "concurrency": concurrency}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def connector(client: httpx.Client, name: str) -> dict[str, Any]:
    response = client.get("/admin/connectors")
    assert response.status_code == 200, response.text
    [found] = [item for item in response.json() if item["name"] == name]
    return dict(found)


def approve_many(harness: Harness, client: httpx.Client, count: int, **body: Any) -> list[str]:
    ids = [harness.create_intent(client, **body)["action_intent_id"] for _ in range(count)]
    for intent_id in ids:
        harness.approve(client, intent_id)
    return ids


def wait_all(
    harness: Harness, client: httpx.Client, ids: list[str], timeout: float = 60
) -> list[dict[str, Any]]:
    return [harness.wait_terminal(client, intent_id, timeout=timeout) for intent_id in ids]


def sent_since(harness: Harness, since: float) -> list[float]:
    """When the engine sent the calls to the internal connector admitted since ``since``."""
    with harness.db.read() as conn:
        rows = conn.execute(
            select(connector_calls.c.dispatched_epoch).where(
                connector_calls.c.name == "internal", connector_calls.c.admitted_epoch >= since
            )
        ).all()
    return sorted(float(row.dispatched_epoch) for row in rows)


def held_approvals(harness: Harness, client: httpx.Client, proxy: FaultyProxy, count: int) -> list[str]:
    """Approves ``count`` intents whose calls the proxy holds until ``proxy.state.release`` is set."""
    proxy.state.release.clear()
    ids = [harness.create_intent(client)["action_intent_id"] for _ in range(count)]
    proxy.add_faults(*(Fault("hold", match=intent_id) for intent_id in ids))
    for intent_id in ids:
        harness.approve(client, intent_id)
    return ids


def fired(proxy: FaultyProxy, intent_ids: list[str]) -> int:
    """How many of these intents' held calls have reached the proxy (their fault fired)."""
    with proxy.state.lock:
        return len(intent_ids) - sum(1 for fault in proxy.state.faults if fault.match in intent_ids)


def reset(proxy: FaultyProxy) -> None:
    with proxy.state.lock:
        proxy.state.calls.clear()
        proxy.state.max_in_flight = proxy.state.in_flight


@pytest.fixture
def slow_target(tmp_path: Path) -> Iterator[tuple[Harness, FaultyProxy]]:
    """A service whose tool calls take 0.3 s at the target (through the proxy). The rate window's
    margin is 0.15 s, not 0.05 s: it covers the time from a call leaving to the proxy seeing it,
    which on a busy two-core machine running the test suite can exceed 50 ms."""
    proxy = FaultyProxy()
    proxy.state.latency = 0.3
    running = Harness(make_settings(tmp_path, gateway_url=proxy.url, connector_rate_margin_seconds=0.15))
    proxy.upstream = f"{running.url}/mcp"
    running.start()
    yield running, proxy
    proxy.close()
    running.stop()


def breaker(tmp_path: Path, **settings: Any) -> tuple[Harness, FaultyProxy]:
    proxy = FaultyProxy()
    values: dict[str, Any] = {"circuit_failure_threshold": 3, "circuit_cooldown_seconds": 1.5}
    values.update(settings)
    running = Harness(make_settings(tmp_path, gateway_url=proxy.url, **values))
    proxy.upstream = f"{running.url}/mcp"
    running.start()
    return running, proxy


@pytest.fixture
def tripping(tmp_path: Path) -> Iterator[tuple[Harness, FaultyProxy]]:
    """Three failures in a row open the circuit; it probes again after 1.5 s."""
    running, proxy = breaker(tmp_path)
    yield running, proxy
    proxy.close()
    running.stop()


# --- limits -----------------------------------------------------------------------------------


def test_rate_and_concurrency_limits_hold_at_the_target(slow_target: tuple[Harness, FaultyProxy]) -> None:
    harness, proxy = slow_target
    with harness.client() as client:
        put_limits(client, "internal", 5, 2)
        limited = time.time()
        ids = approve_many(harness, client, 16)
        outcomes = wait_all(harness, client, ids)
    assert {outcome["status"] for outcome in outcomes} == {"SUCCEEDED"}
    assert all(harness.task_rows(intent_id) == 1 for intent_id in ids)
    assert len(proxy.state.calls) == 16
    assert proxy.state.max_in_flight <= 2
    # The rate is held where the gate sends (with its margin for the way to the target): the
    # sends it recorded, not the arrivals at the proxy, whose delay on a busy machine can put a
    # sixth arrival inside a second. The limits were what held the calls back: 16 calls at 5 per
    # second span at least 3 seconds.
    sends = sent_since(harness, limited)
    assert len(sends) == 16
    assert most_in_any_window(sends, window=1.0 + 0.15) <= 5
    assert max(sends) - min(sends) >= 3.0


def test_limits_changed_at_run_time_apply_without_a_restart(slow_target: tuple[Harness, FaultyProxy]) -> None:
    harness, proxy = slow_target
    with harness.client() as client:
        put_limits(client, "internal", None, 1)
        wait_all(harness, client, approve_many(harness, client, 4))
        assert proxy.state.max_in_flight == 1

        reset(proxy)
        put_limits(client, "internal", None, 3)
        # Every call is held at the proxy until three are there, so that three are in flight at
        # once however slowly the approvals come on a busy machine; a fourth would arrive within
        # the grace below if the limit let it through.
        ids = held_approvals(harness, client, proxy, 9)
        wait_for(lambda: fired(proxy, ids) >= 3, timeout=30, describe=proxy.describe)
        time.sleep(1.0)
        assert fired(proxy, ids) == 3
        proxy.state.release.set()
        wait_all(harness, client, ids)
        assert proxy.state.max_in_flight == 3

        reset(proxy)
        put_limits(client, "internal", 2, None)
        changed = time.time()
        wait_all(harness, client, approve_many(harness, client, 6))
        # What the gate holds is when calls are sent (it counts the margin for the way to the
        # target on top): the sends it recorded, not the arrivals at the proxy, whose delay on a
        # busy machine can exceed any margin. 6 calls at 2 per second: never 3 in a window.
        sends = sent_since(harness, changed)
        assert len(sends) == 6
        assert most_in_any_window(sends, window=1.0 + 0.15) <= 2
        assert max(sends) - min(sends) >= 2 * 1.15

        reset(proxy)
        put_limits(client, "internal", None, None)  # back to the defaults: no limit of its own
        ids = held_approvals(harness, client, proxy, 8)
        wait_for(lambda: fired(proxy, ids) >= 4, timeout=30, describe=proxy.describe)
        proxy.state.release.set()
        wait_all(harness, client, ids)
        assert proxy.state.max_in_flight >= 4


def test_a_waiting_execution_is_stopped_by_a_kill_switch(slow_target: tuple[Harness, FaultyProxy]) -> None:
    harness, proxy = slow_target
    with harness.client() as client:
        put_limits(client, "internal", 0.01, None)  # one call every 100 s: the test ends well before a second
        ids = approve_many(harness, client, 2)
        wait_for(lambda: len(proxy.state.calls) == 1 and _waiting(harness) == 1)  # one went, one waits
        switched = client.put(
            "/admin/tenants/t1/execution", json={"execution_enabled": False, "disabled_action_types": []}
        )
        assert switched.status_code == 200
        outcomes = {outcome["status"]: outcome for outcome in wait_all(harness, client, ids, timeout=15)}
    stopped = outcomes["CANCELLED"]
    assert stopped["error_code"] == "KILL_SWITCH_ENABLED"
    assert outcomes["SUCCEEDED"]["action_intent_id"] != stopped["action_intent_id"]
    assert len(proxy.state.calls) == 1
    assert harness.task_rows(stopped["action_intent_id"]) == 0


def test_calls_waiting_at_a_gate_share_their_reads_and_a_stop_still_ends_every_wait(
    slow_target: tuple[Harness, FaultyProxy],
) -> None:
    """Eight executions wait at a connector that admits one call every 100 s. While they wait, the
    switches are read for all of them together (engine/waiting_reads.py): a few reads a second,
    where each waiting call reading its own made eight. A tenant's stop still ends every wait
    within seconds, and none of them calls."""
    harness, proxy = slow_target
    switch_reads: list[float] = []

    def counted(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "tenant_execution_config" in statement and statement.lstrip().upper().startswith("SELECT"):
            switch_reads.append(time.monotonic())

    engine = harness.db.engine
    event.listen(engine, "before_cursor_execute", counted)
    try:
        with harness.client() as client:
            put_limits(
                client, "internal", 0.01, None
            )  # one call every 100 s: the test ends well before a second
            ids = approve_many(harness, client, 9)
            wait_for(lambda: len(proxy.state.calls) == 1 and _waiting(harness) == 8, timeout=20)
            time.sleep(1.5)  # every waiting call has re-read at least once
            start = time.monotonic()
            time.sleep(4.0)
            during = [at for at in switch_reads if start <= at < start + 4.0]
            assert _waiting(harness) == 8
            switched = client.put(
                "/admin/tenants/t1/execution", json={"execution_enabled": False, "disabled_action_types": []}
            )
            assert switched.status_code == 200
            stopped_at = time.monotonic()
            outcomes = wait_all(harness, client, ids, timeout=15)
            ended = time.monotonic() - stopped_at
    finally:
        event.remove(engine, "before_cursor_execute", counted)
    # Eight calls re-reading once a second each would make 32 in 4 s; shared, at most about two a second.
    assert len(during) <= 12, len(during)
    statuses = sorted(outcome["status"] for outcome in outcomes)
    assert statuses == ["CANCELLED"] * 8 + ["SUCCEEDED"]
    assert {outcome["error_code"] for outcome in outcomes if outcome["status"] == "CANCELLED"} == {
        "KILL_SWITCH_ENABLED"
    }
    assert ended < 10
    assert len(proxy.state.calls) == 1


def test_a_call_waiting_at_shutdown_is_resumed_after_a_restart(tmp_path: Path) -> None:
    """Shutting down does not wait out a waiting call's budget, nor fail it: it is left unfinished,
    as a crash would leave it, and the restarted process resumes it."""
    settings = make_settings(tmp_path, executor_id="flow-restart")
    first = Harness(settings).start()
    with first.client() as client:
        put_limits(client, "internal", 0.2, None)  # one call every 5 s
        ids = approve_many(first, client, 2)
        wait_for(lambda: first.count(internal_tasks) == 1 and _waiting(first) == 1)
    began = time.monotonic()
    first.server.stop()  # not Harness.stop(): the database stays, for the restart
    assert time.monotonic() - began < 10
    second = Harness(settings).start()  # the same database and executor id: it recovers the workflow
    try:
        with second.client() as client:
            outcomes = wait_all(second, client, ids)
        assert [outcome["status"] for outcome in outcomes] == ["SUCCEEDED", "SUCCEEDED"]
        assert [second.task_rows(intent_id) for intent_id in ids] == [1, 1]
    finally:
        second.stop()


def metric(harness: Harness, sample: str) -> float:
    """One sample of ``/metrics`` (0 when absent). Counters add up over every service this test
    process ran, so tests compare before and after."""
    for line in plain_http.get(f"{harness.url}/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def _waiting(harness: Harness) -> int:
    return int(metric(harness, 'fulfill_connector_waiting{connector="internal"}'))


# --- circuit breaker ----------------------------------------------------------------------------


def test_failures_open_the_circuit_executions_wait_and_a_probe_closes_it(
    tripping: tuple[Harness, FaultyProxy],
) -> None:
    harness, proxy = tripping
    proxy.state.latency = 0.2
    proxy.add_faults(*[Fault("status_before", 503)] * 3)
    policy = {"retry_count": 5, "timeout_seconds": 60, "max_attempts": 1}
    with harness.client() as client:
        [first] = approve_many(harness, client, 1, execution_policy=policy)
        opened = wait_for(lambda: (c := connector(client, "internal"))["circuit"]["state"] == "OPEN" and c)
        assert opened["circuit"]["failures"] == 3
        assert (
            'fulfill_connector_circuit_state{connector="internal"} 2.0'
            in plain_http.get(f"{harness.url}/metrics").text
        )
        # While it is open, executions wait instead of failing. A status read once the cool-down
        # is over may find the probe done and the circuit closed (a busy machine can take that
        # long to approve three intents): only the reads made before it are held to this. The
        # calls' arrival times below show the wait in any case.
        later = approve_many(harness, client, 3, execution_policy=policy)
        time.sleep(0.5)
        probe_due = epoch_from_iso(opened["circuit"]["opened_at"]) + 1.5
        for intent_id in [first, *later]:
            asked = time.time()
            status = client.get(f"/executions/{intent_id}/status").json()["status"]
            if asked < probe_due:
                assert status in ("PENDING", "RUNNING")
        outcomes = wait_all(harness, client, [first, *later])
        closed = connector(client, "internal")
    assert {outcome["status"] for outcome in outcomes} == {"SUCCEEDED"}
    assert all(harness.task_rows(intent_id) == 1 for intent_id in [first, *later])
    assert closed["circuit"]["state"] == "CLOSED"
    assert closed["circuit"]["failures"] == 0
    calls = sorted(proxy.state.calls)
    assert len(calls) == 3 + 4
    # No call while it was open; then the probe alone, answered before any other call started.
    opened_at = epoch_from_iso(opened["circuit"]["opened_at"])
    probe_arrived, probe_answered = calls[3]
    assert probe_arrived >= opened_at + 1.5 - 0.05
    assert all(arrived >= probe_answered for arrived, _ in calls[4:])


def test_a_failed_probe_opens_the_circuit_again(tripping: tuple[Harness, FaultyProxy]) -> None:
    harness, proxy = tripping
    transitions = 'fulfill_connector_circuit_transitions_total{connector="internal",state="%s"}'
    opened_before = metric(harness, transitions % "OPEN")
    closed_before = metric(harness, transitions % "CLOSED")
    proxy.add_faults(*[Fault("status_before", 503)] * 4)
    with harness.client() as client:
        [intent_id] = approve_many(
            harness, client, 1, execution_policy={"retry_count": 5, "timeout_seconds": 60, "max_attempts": 1}
        )
        outcome = harness.wait_terminal(client, intent_id)
    assert outcome["status"] == "SUCCEEDED"
    arrivals = sorted(arrived for arrived, _ in proxy.state.calls)
    assert len(arrivals) == 5
    # Two cool-downs: after the third failure, and after the failed probe.
    assert arrivals[3] - arrivals[2] >= 1.5 - 0.05
    assert arrivals[4] - arrivals[3] >= 1.5 - 0.05
    transitions = 'fulfill_connector_circuit_transitions_total{connector="internal",state="%s"}'
    assert metric(harness, transitions % "OPEN") - opened_before == 2
    assert metric(harness, transitions % "CLOSED") - closed_before == 1


def test_an_execution_whose_budget_runs_out_while_the_circuit_is_open_times_out(tmp_path: Path) -> None:
    harness, proxy = breaker(tmp_path, circuit_failure_threshold=2, circuit_cooldown_seconds=60)
    try:
        proxy.add_faults(*[Fault("status_before", 503)] * 2)
        with harness.client() as client:
            tripped = harness.run_task(
                client, execution_policy={"retry_count": 1, "timeout_seconds": 60, "max_attempts": 1}
            )
            assert (tripped["status"], tripped["error_class"]) == ("FAILED", "DOWNSTREAM")
            assert connector(client, "internal")["circuit"]["state"] == "OPEN"
            began = time.monotonic()
            # The budget counts from the approval: 4 s leaves a loaded machine time to reach the
            # gate before it runs out, so that it runs out there.
            waited = harness.run_task(
                client, execution_policy={"retry_count": 3, "timeout_seconds": 4, "max_attempts": 1}
            )
            took = time.monotonic() - began
            signals = harness.signal_rows(waited["action_intent_id"])
    finally:
        proxy.close()
        harness.stop()
    assert (waited["status"], waited["error_class"], waited["error_code"]) == (
        "FAILED",
        "TIMEOUT",
        "EXECUTION_TIMEOUT",
    )
    assert "waiting for connector 'internal' (circuit open)" in waited["error_message"]
    assert took >= 3.5  # it waited at the gate until its budget ran out
    assert proxy.state.tool_calls_seen == 2  # the waiting execution never called
    assert signals == 1


# --- admin routes, metrics, input -------------------------------------------------------------


def test_connectors_are_listed_with_their_defaults_and_limits_and_in_metrics(harness: Harness) -> None:
    with harness.client() as client:
        listed = client.get("/admin/connectors").json()
        assert listed == [
            {
                "name": name,
                "rate_per_second": None,
                "concurrency": None,
                "updated_at": None,
                "revision": 0,
                "circuit": {"state": "CLOSED", "failures": 0, "opened_at": None},
            }
            for name in ("crm", "internal")
        ]
        stored = put_limits(client, "internal", 5, 2)
        assert (stored["rate_per_second"], stored["concurrency"], stored["revision"]) == (5.0, 2, 1)
        assert stored["updated_at"]
        put_limits(client, "tickets", 0.5, None)  # a target not registered yet may get limits
        names = [item["name"] for item in client.get("/admin/connectors").json()]
        assert names == ["crm", "internal", "tickets"]
        assert harness.run_task(client)["status"] == "SUCCEEDED"
    text = plain_http.get(f"{harness.url}/metrics").text
    assert 'fulfill_connector_limit_rate{connector="internal"} 5.0' in text
    assert 'fulfill_connector_limit_concurrency{connector="internal"} 2.0' in text
    assert 'fulfill_connector_limit_rate{connector="tickets"} 0.5' in text
    assert 'fulfill_connector_limit_concurrency{connector="tickets"} +Inf' in text
    assert 'fulfill_connector_circuit_state{connector="internal"} 0.0' in text
    assert 'fulfill_connector_calls_in_flight{connector="internal"} 0.0' in text


@pytest.mark.parametrize(
    ("caller", "scopes", "expected"),
    [
        ("ops", ["platform:admin"], 200),
        ("t1", ["admin"], 403),
        ("t-other", ["admin"], 403),
        ("t1", ["intents:write", "intents:read", "intents:approve", "executions:read", "admin"], 403),
    ],
    ids=["platform admin", "tenant admin", "other tenant's admin", "every tenant scope"],
)
def test_connector_routes_need_platform_admin(
    harness: Harness, caller: str, scopes: list[str], expected: int
) -> None:
    with harness.client(tenant=caller, scopes=scopes) as client:
        listed = client.get("/admin/connectors")
        changed = client.put(
            "/admin/connectors/internal/limits", json={"rate_per_second": 3, "concurrency": 1}
        )
    assert (listed.status_code, changed.status_code) == (expected, expected)
    if expected == 403:
        assert listed.json()["code"] == changed.json()["code"] == "MISSING_SCOPE"
        with harness.client() as admin:
            assert connector(admin, "internal")["revision"] == 0  # nothing was stored


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"rate_per_second": 2.5, "concurrency": 2}, 422, "INVALID_RATE_PER_SECOND"),
        ({"rate_per_second": 0, "concurrency": 2}, 422, "INVALID_REQUEST"),
        ({"rate_per_second": -1, "concurrency": 2}, 422, "INVALID_REQUEST"),
        ({"rate_per_second": 1e9, "concurrency": 2}, 422, "INVALID_REQUEST"),
        ({"rate_per_second": "5", "concurrency": 2}, 422, "INVALID_REQUEST"),
        ({"rate_per_second": 5, "concurrency": 0}, 422, "INVALID_REQUEST"),
        ({"rate_per_second": 5, "concurrency": 1.5}, 422, "INVALID_REQUEST"),
        ({"rate_per_second": 5, "concurrency": True}, 422, "INVALID_REQUEST"),
        ({"rate_per_second": 5}, 422, "INVALID_REQUEST"),
        ({"rate_per_second": 5, "concurrency": 2, "burst": 9}, 422, "INVALID_REQUEST"),
        ([5, 2], 422, "INVALID_REQUEST"),
    ],
)
def test_bad_limits_are_refused_with_a_problem(harness: Harness, body: Any, status: int, code: str) -> None:
    with harness.client() as client:
        response = client.put("/admin/connectors/internal/limits", json=body)
        assert connector(client, "internal")["revision"] == 0
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


def test_malformed_json_and_bad_names_are_refused_with_a_problem(harness: Harness) -> None:
    with harness.client() as client:
        malformed = client.put(
            "/admin/connectors/internal/limits",
            content=b"{oops",
            headers={"Content-Type": "application/json"},
        )
        dotted = client.put(
            "/admin/connectors/internal.create_task/limits", json={"rate_per_second": 1, "concurrency": 1}
        )
        long = client.put(
            f"/admin/connectors/{'x' * 65}/limits", json={"rate_per_second": 1, "concurrency": 1}
        )
    assert (malformed.status_code, malformed.json()["code"]) == (400, "MALFORMED_JSON")
    for response in (dotted, long):
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "INVALID_REQUEST"
        assert response.headers["content-type"].startswith("application/problem+json")
