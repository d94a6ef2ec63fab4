"""``fulfill connectors``: flow control of connectors and remote targets. The list goes through
the API or the database; limits and tenant caps are set on the database, and every process
applies them at its next call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from fulfill.cli.operators import on_database, operator_for
from fulfill.cli.options import DbOption, JsonOption, TokenOption, UrlOption
from fulfill.cli.output import console
from fulfill.usecases.connectors import ConnectorView

N = TypeVar("N", int, float)

commands = typer.Typer(
    help="Flow control of connectors and remote targets: limits (shared by every process, applied "
    "without a restart) and circuit breakers.",
    no_args_is_help=True,
)


def _connector_table(views: list[ConnectorView]) -> Table:
    table = Table("name", "rate_per_second", "concurrency", "circuit", "failures", "opened_at", "updated_at")
    for view in views:
        rate, concurrency, circuit = view.rate_per_second, view.concurrency, view.circuit
        table.add_row(
            view.name,
            "unlimited" if rate is None else f"{rate:g}",
            "unlimited" if concurrency is None else str(concurrency),
            circuit.state,
            str(circuit.failures),
            circuit.opened_at or "",
            view.updated_at or "(default)",
        )
    return table


@commands.command("list")
def connectors_list(
    json_output: JsonOption = False,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Every connector and gateway target, with its limits and circuit (through the API with
    --url or FULFILL_URL, else the database)."""
    with operator_for(url, db, bearer) as operator:
        views = operator.connectors()
    if json_output:
        console.print_json(data=[view.model_dump(mode="json") for view in views])
    else:
        console.print(_connector_table(views))


@commands.command("limits")
def connectors_limits(
    name: Annotated[str, typer.Argument(help="The connector or remote target (e.g. internal).")],
    rate: Annotated[
        str | None,
        typer.Option(
            "--rate",
            help="Calls per second across every process (a whole number from 1, or below 1), or "
            "'none' for no limit. Omitted: unchanged.",
        ),
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option(
            "--concurrency",
            help="Calls in flight at once across every process, or 'none' for no limit. Omitted: unchanged.",
        ),
    ] = None,
) -> None:
    """Set a connector's limits; every process applies them at its next call, no restart needed."""
    from fulfill.usecases import connectors
    from fulfill.usecases.errors import UseCaseError

    with on_database() as operator:
        current = connectors.current_limits(operator.store, name)
        try:
            rate_value = current.rate_per_second if rate is None else _limit(rate, float, "--rate")
            concurrency_value = (
                current.concurrency if concurrency is None else _limit(concurrency, int, "--concurrency")
            )
            connectors.validated_limits(name, rate_value, concurrency_value)  # a clear message first
            body = connectors.ConnectorLimitsBody(rate_per_second=rate_value, concurrency=concurrency_value)
            view = connectors.put_limits(operator.store, operator.clock, name, body)
        except (UseCaseError, ValueError) as exc:
            message = exc.message if isinstance(exc, UseCaseError) else str(exc).splitlines()[0]
            console.print(f"[red]{message}[/red]")
            raise typer.Exit(2) from None
    console.print(_connector_table([view]))


@commands.command("tenant-limits")
def connectors_tenant_limits(
    name: Annotated[str, typer.Argument(help="The connector or remote target (e.g. internal).")],
    tenant: Annotated[str, typer.Argument(help="The tenant whose calls to it are capped.")],
    rate: Annotated[
        str | None,
        typer.Option("--rate", help="This tenant's calls per second, or 'none'. Omitted: unchanged."),
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option(
            "--concurrency", help="This tenant's calls in flight at once, or 'none'. Omitted: unchanged."
        ),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the tenant's cap on this connector.")
    ] = False,
) -> None:
    """Cap one tenant's calls to a connector, on top of the connector's own limits (which every
    tenant shares, taking turns). Without --rate, --concurrency or --clear: show the caps."""
    from fulfill.usecases import connectors
    from fulfill.usecases.errors import UseCaseError

    with on_database() as operator:
        store = operator.store
        try:
            if clear:
                connectors.delete_tenant_cap(store, name, tenant)
            elif rate is not None or concurrency is not None:
                current = connectors.current_tenant_cap(store, name, tenant)
                rate_value = (
                    (current.rate_per_second if current else None)
                    if rate is None
                    else _limit(rate, float, "--rate")
                )
                concurrency_value = (
                    (current.concurrency if current else None)
                    if concurrency is None
                    else _limit(concurrency, int, "--concurrency")
                )
                connectors.validated_limits(name, rate_value, concurrency_value)  # a clear message first
                body = connectors.TenantCapBody(rate_per_second=rate_value, concurrency=concurrency_value)
                connectors.put_tenant_cap(
                    store, operator.clock, name, tenant, body, by="cli", lower_only=False
                )
        except (UseCaseError, ValueError) as exc:
            message = exc.message if isinstance(exc, UseCaseError) else str(exc).splitlines()[0]
            console.print(f"[red]{message}[/red]")
            raise typer.Exit(2) from None
        caps = connectors.list_tenant_caps(store, name=name)
    table = Table("connector", "tenant", "rate/s", "concurrency", "updated", "by")
    for view in caps:
        table.add_row(
            view.name,
            view.tenant_id,
            "-" if view.rate_per_second is None else f"{view.rate_per_second:g}",
            "-" if view.concurrency is None else str(view.concurrency),
            view.updated_at,
            view.updated_by,
        )
    console.print(table)


def _limit(raw: str, kind: Callable[[str], N], option: str) -> N | None:
    """A limit option's value: a number, or None for 'none' (no limit)."""
    if raw.strip().lower() in ("none", "unlimited", "null"):
        return None
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{option} must be a number or 'none' (got {raw!r})") from None
