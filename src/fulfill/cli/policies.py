"""``fulfill policies``: the approval policies of a tenant (and the platform's, which apply to every
tenant), through the service's API with a tenant ``admin`` token (``platform:admin`` too for a
policy written with ``"scope": "platform"``).

A policy is JSON as the API reads and answers it; the commands read a body from a file (``-`` is
stdin) and leave every check to the service, whose problem answer names a wrong value (an invalid
``when`` expression comes back with the parser's message)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from fulfill.cli.auth import PLATFORM_ADMIN, bearer_token
from fulfill.cli.options import JsonOption, TenantOption, TokenOption, UrlOption, read_json_object
from fulfill.cli.output import console, note
from fulfill.cli.remote import Service
from fulfill.client import ApiError, FulfillClient
from fulfill.domain.scopes import Scope

commands = typer.Typer(
    help="Approval policies: who must approve what, what approves itself, what is denied "
    "(through the service's API, --url or FULFILL_URL; a tenant admin's token, or one minted for "
    "--tenant from FULFILL_JWT_SECRET).",
    no_args_is_help=True,
)

FileOption = Annotated[
    str,
    typer.Option("--file", "-f", help="The policy as a JSON object, in this file ('-': read it from stdin)."),
]
# A token minted here may write the tenant's policies and the platform's (whoever holds the
# signing secret can mint either); a --token is used as it is, and the service judges its scopes.
MINTED_SCOPES = f"{Scope.ADMIN} {PLATFORM_ADMIN}"


class PolicyApi:
    """The policy routes of the service's HTTP API, as JSON objects."""

    def __init__(self, url: str | None, tenant: str, bearer: str | None) -> None:
        self.service = Service(url)
        self.token = bearer_token(tenant, bearer, MINTED_SCOPES)

    def close(self) -> None:
        self.service.close()

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        def call(api: FulfillClient) -> Any:
            response = api.http.request(
                method,
                api.base_url + path,
                json=body,
                headers={"Authorization": f"Bearer {api.token}"},
            )
            if response.status_code >= 400:
                raise ApiError(response)
            if response.status_code == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise ApiError(response, reason="the answer is not JSON") from None

        return self.service.call(self.token, call)

    def list(self) -> list[dict[str, Any]]:
        answer = self._send("GET", "/admin/policies")
        return list(answer["policies"]) if isinstance(answer, dict) else []

    def get(self, policy_id: str) -> dict[str, Any]:
        return dict(self._send("GET", f"/admin/policies/{_segment(policy_id)}"))

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._send("POST", "/admin/policies", body))

    def update(self, policy_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._send("PUT", f"/admin/policies/{_segment(policy_id)}", body))

    def delete(self, policy_id: str) -> None:
        self._send("DELETE", f"/admin/policies/{_segment(policy_id)}")

    def simulate(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._send("POST", "/admin/policies/simulate", body))


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _api(url: str | None, tenant: str, bearer: str | None) -> PolicyApi:
    return PolicyApi(url, tenant, bearer)


def _match_words(match: Any) -> str:
    """``action_types=A,B risk_classes=LOW when=…``; ``any`` when nothing narrows it."""
    if not isinstance(match, dict):
        return "any"
    parts = []
    for name in ("action_types", "risk_classes", "account_ids"):
        values = match.get(name)
        if values:
            parts.append(f"{name}={','.join(str(value) for value in values)}")
    if match.get("when"):
        parts.append(f"when {match['when']}")
    return " ".join(parts) or "any"


def _approvals_words(policy: dict[str, Any]) -> str:
    if policy.get("decision") != "REQUIRE_APPROVAL":
        return ""
    words = str(policy.get("approvals_required", 1))
    scopes = policy.get("approver_scopes") or []
    return words + (f" ({', '.join(scopes)})" if scopes else "")


@commands.command("list")
def policies_list(
    tenant: TenantOption,
    json_output: JsonOption = False,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """List the policies that apply to the tenant: its own, then the platform's, in the order they
    are evaluated (lower priority first)."""
    api = _api(url, tenant, bearer)
    try:
        policies = api.list()
    finally:
        api.close()
    if json_output:
        console.print_json(data={"policies": policies})
        return
    table = Table(
        "policy_id", "scope", "priority", "name", "match", "decision", "approvals", "mode", "version"
    )
    for policy in policies:
        table.add_row(
            escape(str(policy.get("policy_id", ""))),
            escape(str(policy.get("scope", ""))),
            str(policy.get("priority", "")),
            escape(str(policy.get("name", ""))),
            escape(_match_words(policy.get("match"))),
            escape(str(policy.get("decision", ""))),
            escape(_approvals_words(policy)),
            escape(str(policy.get("mode", ""))),
            str(policy.get("version", "")),
        )
    console.print(table)
    if not policies:
        note("no policies: every intent waits for one person's approval")


@commands.command("show")
def policies_show(
    policy_id: str,
    tenant: TenantOption,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """Print one policy (its current version) as JSON."""
    api = _api(url, tenant, bearer)
    try:
        console.print_json(data=api.get(policy_id))
    finally:
        api.close()


@commands.command("create")
def policies_create(
    tenant: TenantOption,
    file: FileOption,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """Create a policy from a JSON file and print it as stored (with its policy_id and version 1).
    A platform policy has "scope": "platform" and needs platform:admin."""
    body = read_json_object(file, "--file")
    api = _api(url, tenant, bearer)
    try:
        stored = api.create(body)
    finally:
        api.close()
    console.print_json(data=stored)
    note(f"created {stored.get('policy_id')} (version {stored.get('version')})")


@commands.command("update")
def policies_update(
    policy_id: str,
    tenant: TenantOption,
    file: FileOption,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """Replace a policy with the JSON file's (its version goes up by one; intents already created
    keep the rule they were created with)."""
    body = read_json_object(file, "--file")
    api = _api(url, tenant, bearer)
    try:
        stored = api.update(policy_id, body)
    finally:
        api.close()
    console.print_json(data=stored)
    note(f"updated {stored.get('policy_id')} to version {stored.get('version')}")


@commands.command("delete")
def policies_delete(
    policy_id: str,
    tenant: TenantOption,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """Delete a policy: it stops applying to new intents; its versions stay for the audit."""
    api = _api(url, tenant, bearer)
    try:
        api.delete(policy_id)
    finally:
        api.close()
    note(f"deleted {policy_id}: it no longer applies to new intents")


@commands.command("simulate")
def policies_simulate(
    tenant: TenantOption,
    file: FileOption,
    limit: Annotated[
        int | None,
        typer.Option(
            help="How many of the tenant's latest intents to run it over (default: the service's).", min=1
        ),
    ] = None,
    json_output: JsonOption = False,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """What a candidate policy (the JSON file) would have decided for the tenant's latest intents,
    before anyone enables it: counts per decision, and examples. Nothing is stored."""
    candidate = read_json_object(file, "--file")
    body: dict[str, Any] = dict(candidate) if "policy" in candidate else {"policy": candidate}
    if limit is not None:
        body["limit"] = limit
    api = _api(url, tenant, bearer)
    try:
        answer = api.simulate(body)
    finally:
        api.close()
    if json_output:
        console.print_json(data=answer)
        return
    print_simulation(answer)


def print_simulation(answer: dict[str, Any]) -> None:
    """The counts per decision as one table, the examples as another; the other fields as lines."""
    counts = answer.get("counts")
    if isinstance(counts, dict):
        table = Table("decision", "intents", title="Would have decided")
        for decision, count in counts.items():
            table.add_row(escape(str(decision)), str(count))
        console.print(table)
    examples = answer.get("examples")
    if isinstance(examples, list) and examples:
        columns: list[str] = []
        for example in examples:
            if isinstance(example, dict):
                columns.extend(key for key in example if key not in columns)
        table = Table(*columns, title="Examples")
        for example in examples:
            if isinstance(example, dict):
                table.add_row(*(escape(_cell(example.get(column))) for column in columns))
        console.print(table)
    for name, value in answer.items():
        if name not in ("counts", "examples"):
            console.print(f"{escape(name)}: {escape(_cell(value))}", highlight=False)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
