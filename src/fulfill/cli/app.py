"""The ``fulfill`` application with every command (``fulfill serve`` alone builds only its own:
``fulfill.cli.base``, where the order ``fulfill --help`` lists them in and the one line on stderr
for any command's unexpected failure are)."""

from __future__ import annotations

import os
import sys

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
from fulfill.cli.base import HELP_ORDER as HELP_ORDER
from fulfill.cli.base import new_app
from fulfill.cli.server import migrate, serve
from fulfill.cli.tooling import tooling

app = new_app()

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
