"""Which reruns ``execution_policy.max_attempts`` bounds.

``max_attempts`` bounds the tries of the intent's tool: the first attempt and every rerun asked
for because a try failed. An attempt that a kill switch stopped, or that a database outage or a
budget spent waiting ended, before its tool was called, tried nothing: an admin's rerun of it is
always allowed (and recorded as such in the ledger), otherwise an operator who turned a switch
on for an hour, or lived through an outage, would be left with intents that can never run.
"""

from __future__ import annotations

from fulfill.domain.models import ActionOutcomeV1

# Stops that come from outside the intent and never reach the tool.
STOPS_OUTSIDE_THE_INTENT = frozenset({"KILL_SWITCH_ENABLED", "STORE_UNAVAILABLE", "EXECUTION_TIMEOUT"})
# The tool_run_ref of an outcome reached before the tool was called (domain/execution.pre_tool_ref).
_PRE_TOOL_PREFIX = "pre-tool-"


def stop_without_a_call(outcome: ActionOutcomeV1 | None, *, tries_failed: int) -> str | None:
    """The error code of ``outcome`` when it is a stop from outside the intent before the tool was
    ever called in that attempt (its rerun is not counted against ``max_attempts``), else None.

    ``tries_failed``: the attempt's failed tries of the tool (``TOOL_CALL_TRY_FAILED``). A stop
    between two tries (a switch turned on, a budget spent before the retry) is also recorded as a
    stop before the tool call, but the attempt did try it: that rerun counts."""
    if outcome is None or tries_failed or outcome.error_code not in STOPS_OUTSIDE_THE_INTENT:
        return None
    if not outcome.tool_run_ref.startswith(_PRE_TOOL_PREFIX):
        return None
    return outcome.error_code
