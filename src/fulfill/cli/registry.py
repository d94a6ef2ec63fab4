"""``fulfill registry``: the action-type registry, through the API or on the database."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fulfill.cli.operators import operator_for
from fulfill.cli.options import DbOption, JsonOption, TokenOption, UrlOption
from fulfill.cli.output import console

commands = typer.Typer(
    help="The action-type registry (through the API with --url or FULFILL_URL, else the database).",
    no_args_is_help=True,
)


@commands.command("list")
def registry_list(
    action_type: Annotated[str | None, typer.Option(help="Only this action type.")] = None,
    json_output: JsonOption = False,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """List every registry version."""
    with operator_for(url, db, bearer) as operator:
        entries = operator.registry_entries(action_type)
    if json_output:
        console.print_json(data={"entries": [entry.model_dump(mode="json") for entry in entries]})
        return
    table = Table("action_type", "version", "tool", "compensation", "deprecated_at")
    for entry in entries:
        table.add_row(
            entry.action_type,
            str(entry.registry_version),
            entry.tool_name,
            entry.compensation_strategy.value,
            entry.deprecated_at or "",
        )
    console.print(table)
