"""What every ``fulfill`` command line has, without its commands: the options of ``fulfill``
itself, the order ``fulfill --help`` lists the commands in, and one line on stderr for any
command's unexpected failure. ``fulfill.cli.app`` adds every command; ``fulfill serve`` adds only
its own (:func:`serving_app`), so a server process does not load the other commands' libraries
(the API client, Rich's tables, the tooling package)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

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


@dataclass
class Options:
    """The options of ``fulfill`` itself (before the command)."""

    debug: bool = False


options = Options()


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
            from rich.markup import escape

            from fulfill.cli.output import err_console

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


def new_app() -> typer.Typer:
    """The ``fulfill`` application with its own options and no command yet."""
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

    return app


def serving_app() -> typer.Typer:
    """``fulfill`` with ``serve`` only: what ``fulfill serve …`` runs (the same command, options,
    help and errors as in the whole application)."""
    from fulfill.cli.server import serve

    app = new_app()
    app.command()(serve)
    return app
