"""``fulfill outbox``: the outbox's dead letters, on the database."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from fulfill.cli.operators import CLI_CHANGED_BY, on_database
from fulfill.cli.options import DbOption
from fulfill.cli.output import console
from fulfill.usecases.outbox import DeadLetterView

commands = typer.Typer(
    help="The outbox's dead letters: deliveries refused FULFILL_OUTBOX_MAX_ATTEMPTS times (on the "
    "database: --db, else FULFILL_DATABASE_URL).",
    no_args_is_help=True,
)


def _dead_letter_table(views: list[DeadLetterView]) -> Table:
    table = Table("message_id", "tenant", "topic", "destination", "attempts", "last_error", "dead since")
    for view in views:
        table.add_row(
            view.message_id,
            view.tenant_id,
            view.topic,
            view.destination or view.destination_kind,
            str(view.attempts),
            view.last_error or "",
            view.dead_lettered_at or "",
        )
    return table


@commands.command("dead-letters")
def outbox_dead_letters(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's.")] = None,
    destination: Annotated[str | None, typer.Option(help="Only this destination's.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    db: DbOption = None,
) -> None:
    """List dead-lettered deliveries, oldest first (never their payloads)."""
    from fulfill.usecases import outbox

    with on_database(db) as operator:
        listing = outbox.list_dead_letters(
            operator.store, tenant_id=tenant, platform=True, destination=destination, limit=limit
        )
    if json_output:
        console.print_json(data=listing.model_dump(mode="json"))
    else:
        console.print(_dead_letter_table(listing.dead_letters))


@commands.command("redeliver")
def outbox_redeliver(
    message_id: Annotated[str | None, typer.Option("--message-id", help="This message's.")] = None,
    destination: Annotated[str | None, typer.Option(help="This destination's.")] = None,
    tenant: Annotated[str | None, typer.Option(help="This tenant's.")] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every dead letter (needed when nothing else is named).")
    ] = False,
    db: DbOption = None,
) -> None:
    """Put dead letters back in line: due now, with a fresh count of tries. A running worker
    delivers them at its next poll."""
    from fulfill.usecases import outbox
    from fulfill.usecases.errors import UseCaseError

    if not (message_id or destination or tenant or every):
        console.print("[red]name --message-id, --destination or --tenant, or pass --all[/red]")
        raise typer.Exit(2)
    with on_database(db) as operator:
        try:
            redelivered = outbox.redeliver(
                operator.store,
                operator.clock,
                outbox.RedeliverBody(message_id=message_id, destination=destination),
                tenant_id=tenant,
                platform=True,
                requested_by=CLI_CHANGED_BY,
            )
        except UseCaseError as exc:
            console.print(f"[red]{escape(exc.message)}[/red]")
            raise typer.Exit(1) from None
    console.print(_dead_letter_table(redelivered.redelivered))
    console.print(f"redelivered {len(redelivered.redelivered)} deliveries")
