"""The ``fulfill`` application: its commands in the order ``fulfill --help`` lists them, and one
line on stderr for any command's unexpected failure."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from typer.core import TyperGroup

from fulfill.cli import (
    connectors,
    credentials,
    gateway,
    intents,
    killswitch,
    ledger,
    notifications,
    outbox,
    policies,
    registry,
)
from fulfill.cli.auth import token
from fulfill.cli.output import err_console, options
from fulfill.cli.server import migrate, serve
from fulfill.cli.tooling import tooling
from fulfill.explain import CliError, explain

# ``fulfill --help`` lists the commands in this order, whichever module registers them.
HELP_ORDER = (
    "serve",
    "demo",
    "e2e",
    "migrate",
    "token",
    "approve",
    "reject",
    "rerun",
    "resolve",
    "cancel",
    "status",
    "intent",
    "credentials",
    "dev",
    "bench",
    "kill-switch",
    "registry",
    "policies",
    "gateway",
    "connectors",
    "outbox",
    "notifications",
    "ledger",
)


class _OneLineErrors(TyperGroup):
    """Every command's unexpected failure as one line on stderr (``--debug``: the traceback)."""

    def invoke(self, ctx: Any) -> Any:  # a typer.Context (its base class is private)
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, KeyboardInterrupt):
            raise
        except Exception as exc:
            if options.debug:
                raise
            explained = isinstance(exc, CliError | ValidationError)  # nothing more to see in a traceback
            code = exc.exit_code if isinstance(exc, CliError) else 2 if explained else 1
            hint = "" if explained else " (fulfill --debug … shows the traceback)"
            err_console.print(
                f"[red]error:[/red] {escape(explain(exc))}{hint}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(code) from None

    def list_commands(self, ctx: Any) -> list[str]:
        def place(name: str) -> int:
            return HELP_ORDER.index(name) if name in HELP_ORDER else len(HELP_ORDER)

        return sorted(super().list_commands(ctx), key=place)


app = typer.Typer(
    help="fulfill: execute approved AI-agent actions exactly once.",
    no_args_is_help=True,
    cls=_OneLineErrors,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an unexpected failure.")
    ] = False,
) -> None:
    options.debug = debug


app.command()(serve)
app.command()(migrate)
app.command()(token)
app.command()(intents.approve)
app.command()(intents.reject)
app.command()(intents.rerun)
app.command()(intents.resolve)
app.command()(intents.cancel)
app.command()(intents.status)
app.add_typer(intents.commands, name="intent")
app.add_typer(credentials.commands, name="credentials")
app.add_typer(killswitch.commands, name="kill-switch")
app.add_typer(registry.commands, name="registry")
app.add_typer(policies.commands, name="policies")
app.add_typer(gateway.commands, name="gateway")
app.add_typer(connectors.commands, name="connectors")
app.add_typer(outbox.commands, name="outbox")
app.add_typer(notifications.commands, name="notifications")
app.add_typer(ledger.commands, name="ledger")


tools = tooling()
if tools is not None:
    tools.register(app)


def main() -> None:
    os.environ.setdefault("DBOS__DISABLE_TELEMETRY", "true")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
