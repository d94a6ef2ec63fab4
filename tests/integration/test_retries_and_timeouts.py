"""The one retry layer, at the network edge: transient failures, lost answers, timeouts, budgets.

The engine reaches its gateway through a real HTTP proxy on 127.0.0.1 that injects the faults.
"""

from __future__ import annotations

from tests.support.harness import Harness
from tests.support.http_doubles import Fault, FaultyProxy


def test_transient_gateway_failures_are_retried_to_success_with_one_write(
    proxied: tuple[Harness, FaultyProxy],
) -> None:
    harness, proxy = proxied
    proxy.add_faults(Fault("status_before", 503), Fault("status_before", 429))
    with harness.client() as client:
        status = harness.run_task(client)
    assert status["status"] == "SUCCEEDED"
    assert proxy.state.tool_calls_seen == 3
    assert harness.task_rows(status["action_intent_id"]) == 1


def test_an_answer_lost_after_the_write_is_retried_without_a_second_write(
    proxied: tuple[Harness, FaultyProxy],
) -> None:
    harness, proxy = proxied
    proxy.add_faults(Fault("status_after", 502), Fault("status_after", 504))
    with harness.client() as client:
        status = harness.run_task(client)
    assert status["status"] == "SUCCEEDED"
    assert proxy.state.tool_calls_forwarded == 3  # the tool ran three times...
    assert harness.task_rows(status["action_intent_id"]) == 1  # ...and wrote once
    [ref] = status["external_object_refs"]
    assert ref["object_id"].startswith("task_")


def test_retries_are_bounded_by_the_intents_policy(proxied: tuple[Harness, FaultyProxy]) -> None:
    harness, proxy = proxied
    proxy.add_faults(*[Fault("status_before", 503)] * 5)
    with harness.client() as client:
        status = harness.run_task(
            client, execution_policy={"retry_count": 2, "timeout_seconds": 60, "max_attempts": 1}
        )
    assert status["status"] == "FAILED"
    assert (status["error_class"], status["error_code"]) == ("DOWNSTREAM", "GATEWAY_HTTP_503")
    assert proxy.state.tool_calls_seen == 3  # one try and two retries
    assert harness.task_rows(status["action_intent_id"]) == 0


def test_an_auth_failure_is_not_retried(proxied: tuple[Harness, FaultyProxy]) -> None:
    harness, proxy = proxied
    proxy.add_faults(Fault("status_before", 401))
    with harness.client() as client:
        status = harness.run_task(client)
    assert (status["status"], status["error_class"]) == ("FAILED", "AUTH")
    assert proxy.state.tool_calls_seen == 1


def test_a_slow_call_times_out_and_its_retry_reuses_the_first_write(
    proxied: tuple[Harness, FaultyProxy],
) -> None:
    harness, proxy = proxied
    harness.service.settings.__dict__["gateway_call_timeout_seconds"] = 1.0
    proxy.add_faults(Fault("delay", seconds=3.0))
    with harness.client() as client:
        status = harness.run_task(client)
    assert status["status"] == "SUCCEEDED"
    # The first call timed out, so it was retried; a retry can time out too on a busy machine (its
    # own call given 1 s), so more than one may follow. However many, one write.
    assert proxy.state.tool_calls_forwarded >= 2
    assert harness.task_rows(status["action_intent_id"]) == 1


def test_the_workflow_budget_ends_in_a_timeout_outcome(proxied: tuple[Harness, FaultyProxy]) -> None:
    harness, proxy = proxied
    proxy.add_faults(*[Fault("delay", seconds=2.0)] * 3)
    with harness.client() as client:
        status = harness.run_task(
            client, execution_policy={"retry_count": 5, "timeout_seconds": 1, "max_attempts": 1}
        )
    assert status["status"] == "FAILED"
    assert status["error_class"] == "TIMEOUT"
    assert status["error_code"] == "EXECUTION_TIMEOUT"
    assert harness.signal_rows(status["action_intent_id"]) == 1
