"""``fulfill policies``: the approval policies of a tenant, and the platform's (which apply to every
tenant), in the manner of the other operating commands: through the service's API when a URL is
given (``--url`` / ``FULFILL_URL``, with a tenant ``admin`` token, ``platform:admin`` too for a
policy written with ``"scope": "platform"``), else on the database (``--db``, else
``FULFILL_DATABASE_URL``) through the same use cases, as a platform operator (whoever can reach
the database is one; the versions it writes name ``fulfill-cli (database)``).

A policy is JSON as the API reads and answers it; the commands read a body from a file (``-`` is
stdin), and the checks are the service's own (an invalid ``when`` expression is refused with the
parser's message)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer
from rich.markup import escape
from rich.table import Table

from fulfill.cli.auth import PLATFORM_ADMIN, bearer_token
from fulfill.cli.operators import CLI_CHANGED_BY, DatabaseOperator
from fulfill.cli.options import DbOption, JsonOption, TenantOption, TokenOption, UrlOption, read_json_object
from fulfill.cli.output import console, error_line, note
from fulfill.cli.remote import Service
from fulfill.domain.scopes import Scope

if TYPE_CHECKING:
    from fulfill.config import Settings
    from fulfill.domain.policies import Policy
    from fulfill.domain.ports import Clock
    from fulfill.ports.store import Store
    from fulfill.tokens import Principal
    from fulfill.usecases.policies import SimulationResult

commands = typer.Typer(
    help="Approval policies: who must approve what, what approves itself, what is denied. Through "
    "the service's API when --url or FULFILL_URL is given (a tenant admin's token, or one minted "
    "for --tenant from FULFILL_JWT_SECRET), else on the database (--db, else FULFILL_DATABASE_URL).",
    no_args_is_help=True,
)

FileOption = Annotated[
    str,
    typer.Option("--file", "-f", help="The policy as a JSON object, in this file ('-': read it from stdin)."),
]
# A token minted here may write the tenant's policies and the platform's (whoever holds the
# signing secret can mint either); a --token is used as it is, and the service judges its scopes.
MINTED_SCOPES = f"{Scope.ADMIN} {PLATFORM_ADMIN}"


class PolicyOperator(Protocol):
    """What ``fulfill policies`` does, the same way through the API and on the database."""

    def list(self) -> list[Policy]: ...

    def get(self, policy_id: str) -> Policy: ...

    def create(self, body: Mapping[str, Any]) -> Policy: ...

    def replace(self, policy_id: str, body: Mapping[str, Any]) -> Policy: ...

    def delete(self, policy_id: str) -> None: ...

    def simulate(self, body: Mapping[str, Any]) -> SimulationResult:
        """``body``: ``{"policy": {...}, "limit"?: N}``."""
        ...

    def close(self) -> None: ...


class ApiPolicies:
    """Through the service's HTTP API; a refusal ends the command with the problem's line."""

    def __init__(self, url: str | None, tenant: str, bearer: str | None) -> None:
        self.service = Service(url)
        self.token = bearer_token(tenant, bearer, MINTED_SCOPES)
        note(f"service: {self.service.base} (its API)")

    def close(self) -> None:
        self.service.close()

    def list(self) -> list[Policy]:
        return self.service.call(self.token, lambda api: api.list_policies())

    def get(self, policy_id: str) -> Policy:
        return self.service.call(self.token, lambda api: api.get_policy(policy_id))

    def create(self, body: Mapping[str, Any]) -> Policy:
        return self.service.call(self.token, lambda api: api.create_policy(body))

    def replace(self, policy_id: str, body: Mapping[str, Any]) -> Policy:
        return self.service.call(self.token, lambda api: api.replace_policy(policy_id, body))

    def delete(self, policy_id: str) -> None:
        self.service.call(self.token, lambda api: api.delete_policy(policy_id))

    def simulate(self, body: Mapping[str, Any]) -> SimulationResult:
        limit = body.get("limit")
        return self.service.call(
            self.token,
            lambda api: api.simulate_policy(
                body.get("policy") or {}, limit=limit if isinstance(limit, int) else None
            ),
        )


@dataclass
class _DatabaseContext:
    """What the policies' use cases read, on the database alone (no gateway, no outbox)."""

    settings: Settings
    store: Store
    clock: Clock
    tool_schemas: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    outbox_wakeup: threading.Event = field(default_factory=threading.Event)

    def connector_names(self) -> set[str]:
        return set()


class DatabasePolicies:
    """On the database, through the use cases the API calls, as a platform operator of the tenant
    (``--tenant``): its policies and the platform's. A refusal ends the command in one line."""

    def __init__(self, db: str | None, tenant: str) -> None:
        from fulfill.tokens import Principal

        self.operator = DatabaseOperator.open(db)
        self.ctx = _DatabaseContext(self.operator.settings, self.operator.store, self.operator.clock)
        self.principal: Principal = Principal(
            subject=CLI_CHANGED_BY,
            tenant_id=tenant,
            scopes=frozenset({Scope.ADMIN.value, PLATFORM_ADMIN.value}),
        )

    def close(self) -> None:
        self.operator.close()

    def _run(self, call: Any) -> Any:
        """``call()``; a refusal of the use case, or a body the policy model refuses, ends the
        command in one line (exit 1), as the API's problem answer would."""
        from pydantic import ValidationError

        from fulfill.usecases.errors import UseCaseError

        try:
            return call()
        except UseCaseError as exc:
            error_line(f"{exc.code or exc.kind}: {exc.message}")
            raise typer.Exit(1) from None
        except ValidationError as exc:
            errors = exc.errors()
            first = errors[0]
            where = "/".join(str(part) for part in first["loc"]) or "the body"
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            error_line(f"INVALID_REQUEST: the policy is not valid: {where}: {first['msg']}{more}")
            raise typer.Exit(1) from None

    def list(self) -> list[Policy]:
        from fulfill.usecases import policies

        listing = self._run(lambda: policies.list_policies(self.ctx, self.principal))
        return list(listing.policies)

    def get(self, policy_id: str) -> Policy:
        from fulfill.usecases import policies

        found: Policy = self._run(lambda: policies.get_policy(self.ctx, self.principal, policy_id))
        return found

    def create(self, body: Mapping[str, Any]) -> Policy:
        from fulfill.domain.policies import PolicySpec
        from fulfill.usecases import policies

        created: Policy = self._run(
            lambda: policies.create_policy(self.ctx, self.principal, PolicySpec.model_validate(dict(body)))
        )
        return created

    def replace(self, policy_id: str, body: Mapping[str, Any]) -> Policy:
        from fulfill.domain.policies import PolicySpec
        from fulfill.usecases import policies

        replaced: Policy = self._run(
            lambda: policies.replace_policy(
                self.ctx, self.principal, policy_id, PolicySpec.model_validate(dict(body))
            )
        )
        return replaced

    def delete(self, policy_id: str) -> None:
        from fulfill.usecases import policies

        self._run(lambda: policies.delete_policy(self.ctx, self.principal, policy_id))

    def simulate(self, body: Mapping[str, Any]) -> SimulationResult:
        from fulfill.usecases import policies

        result: SimulationResult = self._run(
            lambda: policies.simulate(
                self.ctx, self.principal, policies.SimulationRequest.model_validate(dict(body))
            )
        )
        return result


@contextmanager
def policies_for(
    url: str | None, db: str | None, tenant: str, bearer: str | None
) -> Iterator[PolicyOperator]:
    """Through the API when a service URL is given (and no ``--db``), else on the database."""
    operator: PolicyOperator = (
        ApiPolicies(url, tenant, bearer) if url and not db else DatabasePolicies(db, tenant)
    )
    try:
        yield operator
    finally:
        operator.close()


def _shown(policy: Policy) -> dict[str, Any]:
    return policy.model_dump(mode="json")


def _match_words(policy: Policy) -> str:
    """``action_types=A,B risk_classes=LOW when …``; ``any`` when nothing narrows it."""
    match = policy.match
    parts = [
        f"{name}={','.join(str(value) for value in values)}"
        for name, values in (
            ("action_types", match.action_types),
            ("risk_classes", match.risk_classes),
            ("account_ids", match.account_ids),
        )
        if values
    ]
    if match.when:
        parts.append(f"when {match.when}")
    return " ".join(parts) or "any"


def _approvals_words(policy: Policy) -> str:
    """``2 (approvers:crm)`` for a REQUIRE_APPROVAL policy; empty for the others."""
    if policy.decision.value != "REQUIRE_APPROVAL":
        return ""
    scopes = ", ".join(str(scope) for scope in policy.approver_scopes)
    return f"{policy.approvals_required}" + (f" ({scopes})" if scopes else "")


@commands.command("list")
def policies_list(
    tenant: TenantOption,
    json_output: JsonOption = False,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """List the policies that apply to the tenant, in the order they are evaluated: its own, then
    the platform's, each by priority (lower first). The first matching ENFORCE policy decides."""
    with policies_for(url, db, tenant, bearer) as operator:
        policies = operator.list()
    if json_output:
        console.print_json(data={"policies": [_shown(policy) for policy in policies]})
        return
    table = Table(
        "policy_id", "scope", "priority", "name", "match", "decision", "approvals", "mode", "version"
    )
    for policy in policies:
        table.add_row(
            policy.policy_id,
            policy.scope,
            str(policy.priority),
            escape(policy.name),
            escape(_match_words(policy)),
            policy.decision.value,
            escape(_approvals_words(policy)),
            policy.mode.value,
            str(policy.version),
        )
    console.print(table)
    if not policies:
        note("no policies: every intent waits for one person's approval")


@commands.command("show")
def policies_show(
    policy_id: str,
    tenant: TenantOption,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Print one policy (its current version) as JSON."""
    with policies_for(url, db, tenant, bearer) as operator:
        console.print_json(data=_shown(operator.get(policy_id)))


@commands.command("create")
def policies_create(
    tenant: TenantOption,
    file: FileOption,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Create a policy from a JSON file and print it as stored (its policy_id, version 1). A
    platform policy has "scope": "platform" (through the API it needs platform:admin)."""
    body = read_json_object(file, "--file")
    with policies_for(url, db, tenant, bearer) as operator:
        stored = operator.create(body)
    console.print_json(data=_shown(stored))
    note(f"created {stored.policy_id} (version {stored.version})")


@commands.command("update")
def policies_update(
    policy_id: str,
    tenant: TenantOption,
    file: FileOption,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Replace a policy with the JSON file's: its next version (intents already created keep the
    rule they were created with)."""
    body = read_json_object(file, "--file")
    with policies_for(url, db, tenant, bearer) as operator:
        stored = operator.replace(policy_id, body)
    console.print_json(data=_shown(stored))
    note(f"updated {stored.policy_id} to version {stored.version}")


@commands.command("delete")
def policies_delete(
    policy_id: str,
    tenant: TenantOption,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Delete a policy: it stops applying to new intents; its versions stay for the audit."""
    with policies_for(url, db, tenant, bearer) as operator:
        operator.delete(policy_id)
    note(f"deleted {policy_id}: it no longer applies to new intents")


@commands.command("simulate")
def policies_simulate(
    tenant: TenantOption,
    file: FileOption,
    limit: Annotated[
        int | None,
        typer.Option(
            help="How many of the tenant's latest intents to run it over (default 100, at most 1000)."
        ),
    ] = None,
    json_output: JsonOption = False,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """What a candidate policy (the JSON file) would have decided, enforced and alone, for the
    tenant's latest intents, before anyone enables it: counts per decision and examples. Nothing
    is stored. The file holds the policy, or {"policy": {...}, "limit": N}."""
    candidate = read_json_object(file, "--file")
    body: dict[str, Any] = dict(candidate) if "policy" in candidate else {"policy": candidate}
    if limit is not None:
        body["limit"] = limit
    with policies_for(url, db, tenant, bearer) as operator:
        result = operator.simulate(body)
    if json_output:
        console.print_json(data=result.model_dump(mode="json"))
        return
    print_simulation(result)


def print_simulation(result: SimulationResult) -> None:
    """The counts per decision, then the examples of each, as tables."""
    counts = Table("would have decided", "intents", title=f"Over the latest {result.evaluated} intents")
    for outcome, count in result.counts.items():
        counts.add_row(_OUTCOME_WORDS.get(outcome, outcome), str(count))
    console.print(counts)
    if result.errors:
        note(
            f"{result.errors} evaluation(s) of its expression failed and were counted fail-safe "
            "(a match for DENY and REQUIRE_APPROVAL, none for AUTO_APPROVE); see the examples' error"
        )
    examples = Table(
        "decision",
        "action_intent_id",
        "action_type",
        "account_id",
        "risk_class",
        "proposed_by",
        "created_at",
        "error",
        title="Examples",
    )
    for outcome, intents in result.examples.items():
        for intent in intents:
            examples.add_row(
                outcome,
                intent.action_intent_id,
                intent.action_type,
                intent.account_id,
                intent.risk_class or "",
                escape(intent.proposed_by or ""),
                intent.created_at,
                escape(intent.error or ""),
            )
    if examples.row_count:
        console.print(examples)


_OUTCOME_WORDS = {
    "AUTO_APPROVE": "AUTO_APPROVE",
    "REQUIRE_APPROVAL": "REQUIRE_APPROVAL",
    "DENY": "DENY",
    "NO_MATCH": "NO_MATCH (the default: one approval)",
}
