"""``fulfill notifications``: a tenant's notification channels (Slack, email, webhooks), through
the service's API (a tenant ``admin`` token) or on the database (see ``operators.py``). Secrets are
read from the file given, sent or sealed, and never printed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape

from fulfill.cli.operators import operator_for
from fulfill.cli.options import DbOption, TenantOption, TokenOption, UrlOption
from fulfill.cli.output import console, err_console

commands = typer.Typer(
    help="A tenant's notification channels (Slack, email, webhooks): through the service's API when "
    "--url or FULFILL_URL is given, else on the database (--db, else FULFILL_DATABASE_URL). Secrets "
    "are never printed.",
    no_args_is_help=True,
)


@commands.command("show")
def notifications_show(
    tenant: TenantOption,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Show the tenant's channels (which secrets are stored, never their values)."""
    with operator_for(url, db, bearer) as operator:
        view = operator.notifications(tenant)
    console.print_json(data=view.model_dump(mode="json"))


@commands.command("set")
def notifications_set(
    tenant: TenantOption,
    file: Annotated[
        str,
        typer.Option(
            "--file",
            help="A JSON file with any of slack, email, webhooks (- = standard input); a missing one "
            "is turned off, a secret left out keeps the stored one.",
        ),
    ],
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Replace the tenant's channels with the file's."""
    from fulfill.domain.notifications import NotificationSettings
    from fulfill.usecases.errors import UseCaseError

    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc.strerror}") from None
    try:
        channels = NotificationSettings.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        # Never quote the input: it holds secrets.
        errors = exc.errors(include_input=False) if isinstance(exc, ValidationError) else None
        where = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in errors or []
        )
        err_console.print(
            f"[red]{escape(file)} is not valid channels JSON[/red]: {escape(where or 'not JSON')}"
        )
        raise typer.Exit(2) from None
    with operator_for(url, db, bearer) as operator:
        try:
            view = operator.put_notifications(tenant, channels)
        except UseCaseError as exc:
            err_console.print(f"[red]{escape(exc.message)}[/red]")
            raise typer.Exit(1) from None
    console.print_json(data=view.model_dump(mode="json"))
