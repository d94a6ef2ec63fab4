"""Client commands: submit, approve, rerun, cancel an intent and read its status, through the
service's HTTP API (``--url``, else where ``fulfill serve`` listens) with a token minted from
``FULFILL_JWT_SECRET`` unless ``--token`` is given."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.markup import escape

from fulfill.cli.auth import APPROVER_SUBJECT, PROPOSER_SUBJECT, bearer_token
from fulfill.cli.options import TenantOption, TokenOption, UrlOption, read_json_object
from fulfill.cli.output import console, err_console, note
from fulfill.cli.remote import Service
from fulfill.client import ApiError, FulfillClient
from fulfill.explain import problem_line

T = TypeVar("T")

commands = typer.Typer(help="Submit action intents.", no_args_is_help=True)


def parse_params(items: list[str]) -> dict[str, Any]:
    """``key=value`` is the string ``value``; ``key:=JSON`` is a JSON value (number, boolean, list,
    object, null), as HTTPie writes them. Anything else is refused, naming the item."""
    parameters: dict[str, Any] = {}
    for item in items:
        key, separator, raw = item.partition("=")
        if not separator:
            raise typer.BadParameter(
                f"{item!r} has no '=': write key=value (a string) or key:=JSON (a number, boolean, list or object)",
                param_hint="--param",
            )
        if key.endswith(":"):
            key = key[:-1]
            try:
                value: Any = json.loads(raw)
            except ValueError:
                raise typer.BadParameter(
                    f"{item!r}: the value after ':=' is not JSON (a string is key=value)",
                    param_hint="--param",
                ) from None
        else:
            value = raw
        if not key:
            raise typer.BadParameter(f"{item!r} has no name before '='", param_hint="--param")
        if key in parameters:
            raise typer.BadParameter(f"{key!r} is given twice", param_hint="--param")
        parameters[key] = value
    return parameters


def parse_policy(policy: str | None, **fields: int | None) -> dict[str, Any]:
    """``--policy`` (a JSON object) with the single-field options laid over it; the service checks
    the values (a problem answer names a wrong one)."""
    parsed: dict[str, Any] = {}
    if policy is not None:
        try:
            loaded = json.loads(policy)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--policy") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter(
                "must be a JSON object, e.g. '{\"max_attempts\": 3}'", param_hint="--policy"
            )
        parsed = loaded
    return {**parsed, **{name: value for name, value in fields.items() if value is not None}}


@commands.command("submit")
def intent_submit(
    action_type: Annotated[str, typer.Option(help="e.g. CREATE_INTERNAL_TASK")],
    account: Annotated[str, typer.Option(help="Account id.")],
    tenant: TenantOption,
    param: Annotated[
        list[str] | None,
        typer.Option(
            help="key=value (a string) or key:=JSON (a number, boolean, list or object); repeatable."
        ),
    ] = None,
    intent_id: Annotated[str | None, typer.Option(help="Client-chosen action_intent_id.")] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            help="The execution_policy as a JSON object, e.g. '{\"max_attempts\": 3}'; the options "
            "below override its fields."
        ),
    ] = None,
    max_attempts: Annotated[
        int | None,
        typer.Option(
            help="execution_policy.max_attempts: attempts in all, the first included (default 1: no "
            "rerun after a failed tool call; a rerun after a kill switch or an outage is always allowed).",
            min=1,
            max=10,
        ),
    ] = None,
    retry_count: Annotated[
        int | None,
        typer.Option(
            help="execution_policy.retry_count: retries of a transient failure (default 3).", min=0, max=10
        ),
    ] = None,
    timeout_seconds: Annotated[
        int | None,
        typer.Option(
            help="execution_policy.timeout_seconds: one attempt's budget (default 300).", min=1, max=86_400
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the created intent as JSON instead of its id.")
    ] = False,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """Create an intent (PENDING_APPROVAL) and print its id (--json: the whole intent)."""
    body: dict[str, Any] = {
        "action_type": action_type,
        "account_id": account,
        "parameters": parse_params(param or []),
    }
    if intent_id:
        body["action_intent_id"] = intent_id
    execution_policy = parse_policy(
        policy, max_attempts=max_attempts, retry_count=retry_count, timeout_seconds=timeout_seconds
    )
    if execution_policy:
        body["execution_policy"] = execution_policy
    created = _on_service(url, tenant, bearer, lambda api: api.create_intent(body)).value
    if json_output:
        console.print_json(data=created.model_dump(mode="json"))
    else:  # the id alone, for `ID=$(fulfill intent submit …)`
        typer.echo(created.action_intent_id)
    ignored = created.ignored_parameters
    if ignored:
        err_console.print(
            f"warning: {action_type} does not use the parameter(s) {escape(', '.join(ignored))}: they are "
            "stored with the intent, but its registry mapping never sends them to the tool",
            highlight=False,
            soft_wrap=True,
        )


MAX_AT_ONCE = 100  # intents one `approve` or `reject` decides


def approve(
    action_intent_ids: Annotated[
        list[str],
        typer.Argument(
            metavar="ACTION_INTENT_ID",
            help=f"One intent, or several (at most {MAX_AT_ONCE}): each is approved on its own and reported.",
        ),
    ],
    tenant: TenantOption,
    parameters: Annotated[
        str | None,
        typer.Option(
            "--parameters",
            help="Edit before approving: a JSON file ('-': stdin) holding the whole new parameter "
            "object. It is checked like at creation, recorded in the ledger with before and after, "
            "and counts as this approval.",
        ),
    ] = None,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """Approve an intent: it executes right away (or, when its policy asks for more than one
    person, once enough have approved). Without --token, as fulfill-cli-approver (the tokens
    `intent submit` mints propose as fulfill-cli: nobody approves their own proposal). Several
    ids: each is approved on its own, by the same rules, one line each; a refused one is named
    with its reason, the others proceed (exit 1 when any was refused)."""
    if len(action_intent_ids) > 1:
        if parameters is not None:
            raise typer.BadParameter("edits one intent: give a single id", param_hint="--parameters")
        _decide_each(url, tenant, bearer, action_intent_ids, "approve")
        return
    action_intent_id = action_intent_ids[0]
    edited = read_json_object(parameters, "--parameters") if parameters is not None else None
    answer = _on_service(
        url,
        tenant,
        bearer,
        lambda api: api.approve(action_intent_id, parameters=edited),
        subject=APPROVER_SUBJECT,
    )
    console.print_json(data=answer.model_dump(mode="json", exclude_none=True))
    # An approval into an active kill switch: its execution will be stopped before its tool call.
    for warning in answer.warnings:
        err_console.print(f"warning: {escape(warning)}", highlight=False, soft_wrap=True)
    required, given = answer.approvals_required, len(answer.approvals or [])
    if answer.approval_status.value == "PENDING_APPROVAL" and required:
        # Counted, but its policy asks for more people: it runs after the last of them.
        note(f"{given} of {required} approvals: it runs once {required - given} more approve")


def reject(
    action_intent_ids: Annotated[
        list[str],
        typer.Argument(
            metavar="ACTION_INTENT_ID",
            help=f"One intent, or several (at most {MAX_AT_ONCE}): each is rejected on its own and reported.",
        ),
    ],
    tenant: TenantOption,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """Reject intents waiting for approval: they never run. Without --token, as
    fulfill-cli-approver. Several ids: one line each; a refused one is named with its reason, the
    others proceed (exit 1 when any was refused)."""
    if len(action_intent_ids) > 1:
        _decide_each(url, tenant, bearer, action_intent_ids, "reject")
        return
    intent_id = action_intent_ids[0]
    answer = _on_service(url, tenant, bearer, lambda api: api.reject(intent_id), subject=APPROVER_SUBJECT)
    console.print_json(data=answer.model_dump(mode="json", exclude_none=True))


def _decide_each(url: str | None, tenant: str, bearer: str | None, ids: list[str], decision: str) -> None:
    """Approve or reject each intent on its own: one line per intent on stdout (its new status),
    or on stderr (refused, with the service's code and reason); a summary; exit 1 if any refused."""
    wanted = list(dict.fromkeys(ids))
    if len(wanted) > MAX_AT_ONCE:
        raise typer.BadParameter(
            f"at most {MAX_AT_ONCE} intents at once ({len(wanted)} were given)",
            param_hint="ACTION_INTENT_ID...",
        )
    service = Service(url)
    token = bearer_token(tenant, bearer, subject=APPROVER_SUBJECT)
    refused = 0
    try:
        api = service.client(token)
        for intent_id in wanted:
            try:
                answer = api.approve(intent_id) if decision == "approve" else api.reject(intent_id)
            except httpx.TransportError as exc:
                raise service.cannot_reach(exc, "Is `fulfill serve` running there?") from None
            except ApiError as error:
                refused += 1
                err_console.print(
                    f"{escape(intent_id)}: refused: {escape(problem_line(error.response))}",
                    highlight=False,
                    soft_wrap=True,
                )
                continue
            line = f"{intent_id}: {answer.approval_status.value}"
            required, given = answer.approvals_required, len(answer.approvals or [])
            if answer.approval_status.value == "PENDING_APPROVAL" and required:
                line += f" ({given} of {required} approvals)"
            console.print(escape(line), highlight=False, soft_wrap=True)
            for warning in answer.warnings:
                err_console.print(
                    f"{escape(intent_id)}: warning: {escape(warning)}", highlight=False, soft_wrap=True
                )
    finally:
        service.close()
    done = "approved" if decision == "approve" else "rejected"
    note(f"{len(wanted) - refused} of {len(wanted)} {done}" + (f"; {refused} refused" if refused else ""))
    if refused:
        raise typer.Exit(1)


def rerun(
    action_intent_id: str,
    tenant: TenantOption,
    reason: Annotated[str | None, typer.Option(help="Why, for the ledger (RERUN_REQUESTED).")] = None,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """Rerun a FAILED or CANCELLED execution (tenant admin): a new attempt with the same idempotency
    key. Always allowed after a kill switch or an outage stopped it before its tool call; otherwise
    within the intent's execution_policy.max_attempts."""
    rerun = _on_service(url, tenant, bearer, lambda api: api.rerun(action_intent_id, reason))
    console.print_json(data=rerun.model_dump(mode="json", exclude_none=True))


def cancel(
    action_intent_id: str,
    tenant: TenantOption,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """Cancel an intent: before its execution it never runs; a write already made is undone where
    its registry entry says how (compensation)."""
    cancelled = _on_service(url, tenant, bearer, lambda api: api.cancel(action_intent_id))
    console.print_json(data=cancelled.model_dump(mode="json"))


def status(
    action_intent_id: str,
    tenant: TenantOption,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """Print the execution status of an intent."""
    view = _on_service(url, tenant, bearer, lambda api: api.execution_status(action_intent_id))
    console.print_json(data=view.model_dump(mode="json", exclude_none=True))


def _on_service(
    url: str | None,
    tenant: str,
    bearer: str | None,
    call: Callable[[FulfillClient], T],
    *,
    subject: str = PROPOSER_SUBJECT,
) -> T:
    service = Service(url)
    try:
        return service.call(bearer_token(tenant, bearer, subject=subject), call)
    finally:
        service.close()
