"""What the console shows people: errors in plain words, timeline steps, parameters.

Pure functions of the API's own values (error classes and codes, ledger entries); no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fulfill.domain.action_hash import prefix
from fulfill.domain.models import TERMINAL_STATUSES, ExecutionStatus

_CLASS_WORDS = {
    "AUTH": "The target system refused fulfill's credentials. Check the connector's credential "
    "(it may have expired or lost a permission), then rerun.",
    "RATE_LIMIT": "The target system asked fulfill to slow down, and the retries ran out. It usually "
    "passes on its own; rerun later or lower the connector's rate limit.",
    "VALIDATION": "The request was refused as invalid: a parameter, the registry mapping or the "
    "intent itself is wrong. Rerunning the same intent will fail again; fix the cause first.",
    "DOWNSTREAM": "The target system failed or could not be reached, and the retries ran out. "
    "Check that it is up, then rerun.",
    "TIMEOUT": "The call took longer than the execution's time budget allowed.",
    "UNKNOWN": "Something unexpected failed; the error code below says what.",
}

_CODE_WORDS = {
    "KILL_SWITCH_ENABLED": "A kill switch stopped this execution before its tool call: nothing was written.",
    "INTENT_EXPIRED": "The intent expired before it could run.",
    "EXECUTION_TIMEOUT": "The execution's time budget ran out before the tool answered.",
    "TOOL_MAPPING_NOT_FOUND": "The registry has no mapping for this action type and version.",
    "UNKNOWN_OUTCOME": "The call reached a target that does not deduplicate and its answer was "
    "lost: check the target for a write with this execution's idempotency key, then resolve it "
    "(committed, not committed, or abandon).",
    "NOT_COMMITTED": "A person found that the call had not written; it was sent once more under "
    "the same idempotency key (the next attempt).",
    "AMBIGUOUS_ABANDONED": "A person gave up an execution whose outcome was unknown; the reason "
    "below is theirs.",
    "INTENT_CANCELLED": "Someone cancelled the intent.",
    "APPROVAL_MISMATCH": "The action about to run was not the one approved (its parameters, "
    "registry version, account or expiry changed after the approval), so its tool was not called: "
    "nothing was written. Propose the action again and have it approved.",
    "CONNECTOR_UNAVAILABLE": "The connector's circuit was open or it could not be reached.",
    "INVALID_PARAMETERS": "The parameters do not fit the tool's input schema.",
    "INVALID_PARAMETER_TYPE": "A parameter has the wrong type for its tool argument.",
    "STORE_UNAVAILABLE": "The database could not be reached while the execution ran.",
}


def explain_error(error_class: str | None, error_code: str | None) -> str:
    """A sentence or two a person can act on: what the code means when it is a well-known one,
    else what its class means."""
    if error_code and error_code in _CODE_WORDS:
        return _CODE_WORDS[error_code]
    if error_class and error_class in _CLASS_WORDS:
        return _CLASS_WORDS[error_class]
    return "The execution failed."


STATUS_SYMBOLS = {
    "PENDING": "◷",
    "RUNNING": "▶",
    "SUCCEEDED": "✓",
    "FAILED": "✗",
    "CANCELLED": "■",
    "EXPIRED": "⌛",
    "AMBIGUOUS": "?",
}


def is_terminal(status: str) -> bool:
    """Nothing changes it any more without a person: ended, or AMBIGUOUS (waiting to be resolved)."""
    return status in {s.value for s in TERMINAL_STATUSES} or status == ExecutionStatus.AMBIGUOUS.value


@dataclass(frozen=True)
class Link:
    text: str
    url: str | None


@dataclass(frozen=True)
class Step:
    """One line of an execution's timeline."""

    kind: str  # approval | start | rerun | retry | tool | outcome | signal | compensation | decision | other
    title: str
    timestamp: str
    attempt: int
    details: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    error: str | None = None
    status: str | None = None


_OUTCOME_TYPES = {
    "ACTION_EXECUTED": ExecutionStatus.SUCCEEDED,
    "ACTION_FAILED": ExecutionStatus.FAILED,
    "EXECUTION_CANCELLED": ExecutionStatus.CANCELLED,
    "EXECUTION_EXPIRED": ExecutionStatus.EXPIRED,
    "ACTION_AMBIGUOUS": ExecutionStatus.AMBIGUOUS,
}


def timeline_steps(entries: list[dict[str, Any]]) -> list[Step]:
    """The ledger entries of one execution (oldest first) as the steps a person reads:
    approval → start → each failed try (retried) → tool call with its external objects → outcome
    → signal."""
    steps: list[Step] = []
    for entry in entries:
        steps.extend(_steps_of(entry))
    return steps


def _refs(data: dict[str, Any]) -> list[Link]:
    links = []
    for ref in data.get("external_object_refs") or []:
        if isinstance(ref, dict):
            text = f"{ref.get('system', '')} {ref.get('object_type', '')} {ref.get('object_id', '')}".strip()
            url = ref.get("object_url")
            links.append(Link(text=text, url=url if isinstance(url, str) and _is_web(url) else None))
    return links


def _is_web(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def _steps_of(entry: dict[str, Any]) -> list[Step]:
    event = str(entry.get("event_type", ""))
    data = entry.get("data") or {}
    ts = str(entry.get("timestamp", ""))
    attempt = int(entry.get("attempt", 0))
    comment = data.get("comment")
    if event == "ACTION_APPROVED":
        details = [f"by {data.get('approved_by') or 'an upstream decision'}"]
        asserted_by = data.get("asserted_by")
        if data.get("imported"):
            # The body named the approver; the token that vouched for it is a separate fact.
            details.append(
                f"imported as already approved by the token of {asserted_by}"
                if asserted_by
                else "imported as already approved"
            )
        elif asserted_by and asserted_by != data.get("approved_by"):
            details.append(f"asserted by the token of {asserted_by}")
        if comment:
            details.append(f"comment: {comment}")
        details.extend(_approved_details(data))
        return [Step("approval", "Approved", ts, attempt, details)]
    if event in ("INTENT_REJECTED", "INTENT_CANCELLED"):
        details = [f"by {data.get('decided_by', '')}"]
        if comment:
            details.append(f"comment: {comment}")
        title = "Rejected" if event == "INTENT_REJECTED" else "Cancelled"
        return [Step("decision", title, ts, attempt, details)]
    if event == "EXECUTION_STARTED":
        bound = data.get("action_hash")
        # The approved action it runs only while the intent still hashes to it (domain/action_hash.py).
        details = [f"bound to the approved action {prefix(bound)}…"] if isinstance(bound, str) else []
        return [Step("start", "Execution started", ts, attempt, details)]
    if event in ("RERUN_REQUESTED", "RERUN_STARTED"):
        details = [str(data["reason"])] if data.get("reason") else []
        if data.get("after_stop"):
            # Allowed whatever max_attempts, since the stopped attempt never called its tool.
            details.append(
                f"after a stop before the tool call ({data['after_stop']})"
                + (": beyond the intent's max_attempts" if data.get("beyond_max_attempts") else "")
            )
        title = "Rerun requested" if event == "RERUN_REQUESTED" else "Rerun started"
        return [Step("rerun", title, ts, attempt, details)]
    if event in _OUTCOME_TYPES:
        status = _OUTCOME_TYPES[event].value
        steps = []
        tool = data.get("tool_name")
        if tool:
            steps.append(
                Step(
                    "tool",
                    f"Tool call {tool}",
                    ts,
                    attempt,
                    [
                        f"registry version {data.get('registry_version')}",
                        # Why the only ref is one to the call itself (gateway/remote.py).
                        f"no usable refs in the answer: {data['refs_note']}" if data.get("refs_note") else "",
                    ],
                    links=_refs(data),
                )
            )
        error = None
        details = []
        if data.get("error_code") or data.get("error_class"):
            error = explain_error(data.get("error_class"), data.get("error_code"))
            details.append(f"{data.get('error_class') or ''} {data.get('error_code') or ''}".strip())
            if data.get("error_message"):
                details.append(str(data["error_message"]))
        if status == ExecutionStatus.AMBIGUOUS.value:
            # The evidence a person resolves it on: what was sent, when, and what came back.
            details = [
                f"sent: {tool or 'the tool call'} with idempotency key {data.get('idempotency_key') or ''}",
                f"when: the attempt's call, before {ts}",
                f"what came back: {data.get('error_message') or 'no answer'}",
            ]
        steps.append(Step("outcome", f"Outcome: {status}", ts, attempt, details, error=error, status=status))
        return steps
    if event == "EXECUTION_RESOLVED":
        resolution = str(data.get("resolution", ""))
        details = [f"by {data.get('decided_by', '')}", f"now {data.get('status', '')}"]
        if data.get("reason"):
            details.append(f"reason: {data['reason']}")
        if data.get("next_attempt"):
            details.append(f"sent once more as attempt {data['next_attempt']}, same idempotency key")
        return [
            Step(
                "decision",
                f"Resolved: {resolution.replace('_', ' ')}",
                ts,
                attempt,
                details,
                links=_refs(data),
            )
        ]
    if event == "TOOL_CALL_TRY_FAILED":
        tries = (
            f"try {data.get('try')} of {data.get('max_tries')}"
            if data.get("max_tries")
            else f"try {data.get('try')}"
        )
        then = "retrying" if data.get("will_retry") else "no tries left"
        return [
            Step(
                "retry",
                f"Tool call {data.get('tool_name', '')} failed ({tries}), {then}",
                ts,
                attempt,
                [
                    f"{data.get('error_class', '')} {data.get('error_code', '')}".strip(),
                    str(data.get("error_message", "")),
                ],
                error=explain_error(data.get("error_class"), data.get("error_code")),
            )
        ]
    if event == "OUTCOME_UNKNOWN":
        return [
            Step(
                "outcome",
                "Outcome unknown: check the target",
                ts,
                attempt,
                [str(data.get("action", "")), f"idempotency key {data.get('idempotency_key', '')}"],
                error=explain_error(None, "UNKNOWN_OUTCOME"),
            )
        ]
    if event in _APPROVAL_EVENTS:
        return [_APPROVAL_EVENTS[event](data, ts, attempt)]
    if event == "SIGNAL":
        return [Step("signal", f"Signal {data.get('signalType', '')}", ts, attempt)]
    if event == "COMPENSATION_OUTCOME_UNKNOWN":
        return [
            Step(
                "compensation",
                "Compensation outcome unknown: check the target",
                ts,
                attempt,
                [
                    str(data.get("action", "")),
                    f"{data.get('compensation_tool_name', '')} of {data.get('object_id', '')}",
                    f"idempotency key {data.get('idempotency_key', '')}",
                ],
            )
        ]
    if event.startswith("COMPENSATION") or event == "NOTHING_TO_COMPENSATE":
        return [Step("compensation", event.replace("_", " ").capitalize(), ts, attempt)]
    if event == "EVENT_REJECTED":
        return [Step("other", "An ACTION_APPROVED event was refused", ts, attempt, [_short(data)])]
    return [Step("other", event.replace("_", " ").capitalize(), ts, attempt, [_short(data)])]


def _short(data: dict[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


def parameter_rows(parameters: dict[str, Any]) -> list[tuple[str, str]]:
    """Parameters as (name, value) pairs to show: strings as they are, other values as JSON."""
    rows = []
    for name in sorted(parameters):
        value = parameters[name]
        shown = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True, default=str)
        rows.append((name, shown))
    return rows


# --- approval policies: the ledger entries of a decision, of each approval, of an edit ----------


def _hash_words(value: object) -> str:
    """An action hash by its first characters (the console's approval facts show it whole)."""
    if not isinstance(value, str):
        return ""
    scheme, _, digest = value.partition(":")
    return f"{scheme}:{digest[:12]}…" if digest else value


def _approved_details(data: dict[str, Any]) -> list[str]:
    details = []
    if data.get("approval_source") == "POLICY" and data.get("policy_id"):
        details.append(
            f"by policy {data['policy_id']} (version {data.get('policy_version')}): no person needed"
        )
    approvers = data.get("approvers")
    if isinstance(approvers, list) and approvers:
        details.append(f"approvers: {', '.join(str(approver) for approver in approvers)}")
    if data.get("action_hash"):
        details.append(f"bound to the action {_hash_words(data['action_hash'])}")
    return details


def _policy_evaluated(data: dict[str, Any], ts: str, attempt: int) -> Step:
    outcome = str(data.get("outcome") or data.get("decision") or "")
    if data.get("policy_id"):
        name = data.get("policy_name") or data["policy_id"]
        title = f"Policy {name}: {outcome}"
        details = [
            f"{data['policy_id']}, version {data.get('policy_version')}, {data.get('mode', 'ENFORCE')}"
        ]
    else:
        title = f"No policy matched, the default rule: {outcome}"
        details = []
    if data.get("applied") is False:
        details.append("shadow mode: recorded, not acted on")
    error = data.get("error")
    if error:
        details.append(f"its expression could not be evaluated ({error}), so it was decided fail-safe")
    return Step("decision", title, ts, attempt, details)


def _approval_recorded(data: dict[str, Any], ts: str, attempt: int) -> Step:
    details = [f"by {data.get('approved_by', '')}"]
    if data.get("comment"):
        details.append(f"comment: {data['comment']}")
    details.append(f"bound to the action {_hash_words(data.get('action_hash'))}")
    title = f"Approval {data.get('approvals')} of {data.get('approvals_required')}"
    return Step("approval", title, ts, attempt, details)


def _intent_edited(data: dict[str, Any], ts: str, attempt: int) -> Step:
    fields = data.get("edited_fields") or []
    details = [
        f"by {data.get('edited_by', '')}",
        f"changed: {', '.join(str(name) for name in fields) or 'nothing'}",
        f"before: {_short(data.get('before') or {})}",
        f"after: {_short(data.get('after') or {})}",
        f"action {_hash_words(data.get('action_hash_before'))} → {_hash_words(data.get('action_hash_after'))}; "
        "earlier approvals no longer count",
    ]
    return Step("approval", "Parameters edited before approval", ts, attempt, details)


def _approval_escalated(data: dict[str, Any], ts: str, attempt: int) -> Step:
    scopes = ", ".join(str(scope) for scope in data.get("escalate_to_scopes") or [])
    details = [
        f"now also approvable with {scopes}" if scopes else "",
        f"until {data.get('expires_at', '')}",
        f"policy {data.get('policy_id')}, version {data.get('policy_version')}",
    ]
    return Step("decision", "Approval escalated", ts, attempt, details)


_APPROVAL_EVENTS = {
    "POLICY_EVALUATED": _policy_evaluated,
    "APPROVAL_RECORDED": _approval_recorded,
    "INTENT_EDITED": _intent_edited,
    "APPROVAL_ESCALATED": _approval_escalated,
}
