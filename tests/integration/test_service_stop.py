"""Stopping the service: a workflow still running in this process ends before DBOS is shut down."""

from __future__ import annotations

from tests.support.harness import Harness
from tests.support.http_doubles import Fault, FaultyProxy


def test_a_stop_lets_the_workflow_that_is_running_record_its_outcome(
    proxied: tuple[Harness, FaultyProxy],
) -> None:
    harness, proxy = proxied
    # The tool runs at once; its answer reaches the engine a second later, after the stop began.
    proxy.add_faults(Fault("delay", seconds=1.0))
    with harness.client() as client:
        intent = harness.create_intent(client)
        harness.approve(client, intent["action_intent_id"])
    assert proxy.state.forwarded.wait(timeout=30)
    harness.server.stop()  # the service only; the fixture drops its database afterwards
    intent_id = intent["action_intent_id"]
    assert harness.task_rows(intent_id) == 1
    assert harness.outcome_rows(intent_id) == 1
    assert harness.signal_rows(intent_id) == 1
