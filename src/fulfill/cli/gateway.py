"""``fulfill gateway``: gateway targets (remote MCP servers) on the database; running services
pick up a change within ``FULFILL_GATEWAY_TARGETS_REFRESH_SECONDS``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from fulfill.cli.operators import on_database
from fulfill.cli.options import JsonOption
from fulfill.cli.output import console

if TYPE_CHECKING:
    from fulfill.usecases.targets import TargetAdmin

T = TypeVar("T")

commands = typer.Typer(
    help="Gateway targets: remote MCP servers whose tools the gateway serves as {name}.{tool}.",
    no_args_is_help=True,
)


def _on_targets(change: Callable[[TargetAdmin], T]) -> T:
    """``change`` with the database's target administration; a refusal ends the command in one line."""
    from fulfill.usecases.errors import UseCaseError

    with on_database() as operator:
        try:
            return change(operator.target_admin())
        except UseCaseError as exc:
            console.print(f"[red]{exc.code or exc.kind}: {exc.message}[/red]")
            raise typer.Exit(1) from None


def _secret_from(env_var: str | None, what: str) -> str | None:
    if env_var is None:
        return None
    value = os.environ.get(env_var, "")
    if not value:
        raise typer.BadParameter(f"the environment variable {env_var} (the {what}) is empty or not set")
    return value


@commands.command("add")
def gateway_add(
    name: Annotated[str, typer.Argument(help="Target name: its tools are served as {name}.{tool}.")],
    url: Annotated[str, typer.Argument(help="The server's MCP endpoint (Streamable HTTP).")],
    deduplicates: Annotated[
        bool,
        typer.Option(
            "--deduplicates/--no-deduplicates",
            help="The server deduplicates on _meta io.fulfill/idempotency-key (then lost answers are retried).",
        ),
    ] = False,
    lookup_tool: Annotated[
        str | None,
        typer.Option(
            help="The server's tool that looks a write up by idempotency_key (reconcile probes of "
            "AMBIGUOUS executions)."
        ),
    ] = None,
    bearer_token_env: Annotated[
        str | None, typer.Option(help="Authenticate with the bearer token in this environment variable.")
    ] = None,
    oauth_token_url: Annotated[
        str | None, typer.Option(help="OAuth client credentials: the token URL.")
    ] = None,
    oauth_client_id: Annotated[str | None, typer.Option(help="OAuth client credentials: client id.")] = None,
    oauth_client_secret_env: Annotated[
        str | None,
        typer.Option(help="OAuth client credentials: the environment variable holding the secret."),
    ] = None,
    oauth_scope: Annotated[str | None, typer.Option(help="OAuth client credentials: scope.")] = None,
    oauth_audience: Annotated[str | None, typer.Option(help="OAuth client credentials: audience.")] = None,
) -> None:
    """Register a remote MCP server as a gateway target (its tools are discovered now).

    Secrets are read from environment variables, never from the command line.
    """
    from pydantic import ValidationError

    from fulfill.usecases.targets import TargetDraft

    auth: dict[str, Any] = {"type": "none"}
    if bearer_token_env and oauth_token_url:
        raise typer.BadParameter("use either a bearer token or OAuth client credentials")
    if bearer_token_env:
        auth = {"type": "bearer", "token": _secret_from(bearer_token_env, "bearer token")}
    elif oauth_token_url or oauth_client_id or oauth_client_secret_env:
        if not (oauth_token_url and oauth_client_id and oauth_client_secret_env):
            raise typer.BadParameter(
                "OAuth needs --oauth-token-url, --oauth-client-id and --oauth-client-secret-env"
            )
        auth = {
            "type": "oauth_client_credentials",
            "token_url": oauth_token_url,
            "client_id": oauth_client_id,
            "client_secret": _secret_from(oauth_client_secret_env, "OAuth client secret"),
            "scope": oauth_scope,
            "audience": oauth_audience,
        }
    try:
        draft = TargetDraft.model_validate(
            {
                "name": name,
                "url": url,
                "auth": auth,
                "deduplicates": deduplicates,
                "lookup_tool": lookup_tool,
            }
        )
    except ValidationError as exc:
        fields = ", ".join(".".join(str(part) for part in error["loc"]) for error in exc.errors())
        raise typer.BadParameter(f"invalid {fields}") from None
    view = _on_targets(lambda targets: targets.add(draft))
    console.print_json(data=view.model_dump(mode="json"))


@commands.command("list")
def gateway_list(json_output: JsonOption = False) -> None:
    """List the gateway targets and their tools."""
    with on_database() as operator:
        listing = operator.target_admin().list()
    if json_output:
        console.print_json(data=listing.model_dump(mode="json"))
        return
    table = Table("name", "url", "auth", "deduplicates", "tools", "synced_at")
    for target in listing.targets:
        table.add_row(
            target.name,
            target.url,
            target.auth.type.value,
            "yes" if target.deduplicates else "no",
            ", ".join(tool.name for tool in target.tools),
            target.synced_at,
        )
    console.print(table)


@commands.command("sync")
def gateway_sync(name: str) -> None:
    """Discover a target's tools again."""
    view = _on_targets(lambda targets: targets.sync(name))
    console.print_json(data=view.model_dump(mode="json"))


@commands.command("remove")
def gateway_remove(name: str) -> None:
    """Remove a target, its tools and its stored secret."""
    _on_targets(lambda targets: targets.remove(name))
    console.print(f"removed gateway target {name}")
