"""What the console shows: errors in plain words, timeline steps, parameters, the session secret."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from fulfill.console.present import explain_error, parameter_rows, timeline_steps
from fulfill.console.session import session_secret
from tests.support.harness import make_settings


def test_a_known_code_is_explained_by_itself() -> None:
    assert explain_error("VALIDATION", "KILL_SWITCH_ENABLED").startswith("A kill switch stopped")


def test_an_unknown_code_is_explained_by_its_class() -> None:
    assert explain_error("AUTH", "SF_INVALID_SESSION").startswith("The target system refused")
    assert explain_error("RATE_LIMIT", None).startswith("The target system asked fulfill to slow down")


def test_nothing_known_still_says_something() -> None:
    assert explain_error(None, None) == "The execution failed."
    assert explain_error("NEW_CLASS", "NEW_CODE") == "The execution failed."


def _entry(event_type: str, attempt: int = 1, **data: object) -> dict[str, object]:
    return {
        "event_type": event_type,
        "timestamp": "2026-01-01T00:00:00.000Z",
        "attempt": attempt,
        "data": data,
    }


def test_timeline_reads_approval_start_tool_outcome_signal() -> None:
    steps = timeline_steps(
        [
            _entry("ACTION_APPROVED", 0, approved_by="alice", comment="ok"),
            _entry("EXECUTION_STARTED"),
            _entry(
                "ACTION_EXECUTED",
                tool_name="crm.create_task",
                registry_version=2,
                external_object_refs=[
                    {
                        "system": "CRM",
                        "object_type": "Task",
                        "object_id": "00T1",
                        "object_url": "https://crm/00T1",
                    },
                    {
                        "system": "CRM",
                        "object_type": "Task",
                        "object_id": "00T2",
                        "object_url": "javascript:x",
                    },
                ],
            ),
            _entry("SIGNAL", signalType="ACTION_EXECUTED"),
        ]
    )
    assert [s.kind for s in steps] == ["approval", "start", "tool", "outcome", "signal"]
    assert steps[0].details == ["by alice", "comment: ok"]
    assert steps[2].links[0].url == "https://crm/00T1"
    assert steps[2].links[1].url is None  # only web links are links
    assert steps[3].status == "SUCCEEDED"
    assert steps[3].error is None


def test_an_imported_approval_shows_who_approved_and_who_asserted_it() -> None:
    steps = timeline_steps(
        [_entry("ACTION_APPROVED", 0, approved_by="alice", asserted_by="svc-importer", imported=True)]
    )
    assert steps[0].details == ["by alice", "imported as already approved by the token of svc-importer"]
    # Approved here by the same subject: said once.
    same = timeline_steps(
        [_entry("ACTION_APPROVED", 0, approved_by="bob", asserted_by="bob", imported=False)]
    )
    assert same[0].details == ["by bob"]


def test_a_failed_outcome_carries_its_explanation() -> None:
    steps = timeline_steps(
        [
            _entry(
                "ACTION_FAILED",
                tool_name="t.x",
                error_class="DOWNSTREAM",
                error_code="HTTP_503",
                error_message="busy",
            )
        ]
    )
    outcome = steps[-1]
    assert outcome.status == "FAILED"
    assert outcome.details == ["DOWNSTREAM HTTP_503", "busy"]
    assert outcome.error is not None
    assert outcome.error.startswith("The target system failed")


def test_each_failed_try_is_a_step_saying_whether_it_is_retried() -> None:
    common = {
        "tool_name": "crm.create_task",
        "max_tries": 2,
        "error_class": "TIMEOUT",
        "error_code": "GATEWAY_TIMEOUT",
    }
    steps = timeline_steps(
        [
            _entry("EXECUTION_STARTED"),
            _entry(
                "TOOL_CALL_TRY_FAILED", **{"try": 1, "will_retry": True, "error_message": "slow"}, **common
            ),
            _entry(
                "TOOL_CALL_TRY_FAILED", **{"try": 2, "will_retry": False, "error_message": "slow"}, **common
            ),
        ]
    )
    assert [s.kind for s in steps] == ["start", "retry", "retry"]
    assert steps[1].title == "Tool call crm.create_task failed (try 1 of 2), retrying"
    assert steps[2].title == "Tool call crm.create_task failed (try 2 of 2), no tries left"
    assert steps[1].details == ["TIMEOUT GATEWAY_TIMEOUT", "slow"]
    assert steps[1].error


def test_unknown_entries_are_shown_not_dropped() -> None:
    (step,) = timeline_steps([_entry("SOMETHING_NEW", value=1)])
    assert step.title == "Something new"
    assert step.details == ['{"value": 1}']


def test_parameters_strings_as_they_are_other_values_as_json() -> None:
    assert parameter_rows({"b": {"x": 1}, "a": "text", "c": 3}) == [
        ("a", "text"),
        ("b", '{\n  "x": 1\n}'),
        ("c", "3"),
    ]


def test_session_secret_is_configured_or_derived_in_dev_mode_only(tmp_path: Path) -> None:
    dev = make_settings(tmp_path, database_url="sqlite:///x.db")
    assert session_secret(dev) == session_secret(dev)
    assert session_secret(dev) != dev.jwt_secret
    configured = dev.model_copy(update={"console_session_secret": SecretStr("s" * 40)})
    assert session_secret(configured) == "s" * 40
    production = dev.model_copy(update={"auth_mode": "production"})
    assert session_secret(production) is None


def test_a_fallback_ref_says_why_on_the_tool_step() -> None:
    note = "its JSON answer has no external_object_refs (looked for …)"
    [tool, _outcome] = timeline_steps(
        [
            _entry(
                "ACTION_EXECUTED",
                status="SUCCEEDED",
                tool_name="tickets.log_note",
                registry_version=1,
                external_object_refs=[
                    {"system": "MCP:tickets", "object_type": "log_note", "object_id": "N-1"}
                ],
                refs_note=note,
            )
        ]
    )
    assert f"no usable refs in the answer: {note}" in tool.details


def test_a_rerun_after_a_stop_says_so() -> None:
    [step] = timeline_steps(
        [
            _entry(
                "RERUN_REQUESTED",
                2,
                reason="switch off",
                after_stop="KILL_SWITCH_ENABLED",
                beyond_max_attempts=True,
            )
        ]
    )
    assert step.details == [
        "switch off",
        "after a stop before the tool call (KILL_SWITCH_ENABLED): beyond the intent's max_attempts",
    ]
