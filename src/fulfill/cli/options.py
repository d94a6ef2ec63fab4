"""The options several commands share, and the settings they read."""

from __future__ import annotations

from typing import Annotated

import typer

from fulfill.config import Settings

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="FULFILL_URL",
        help="Base URL of the service. Default: http://FULFILL_HOST:FULFILL_PORT (where `fulfill serve` "
        "listens with the same settings; 127.0.0.1:8080 unless set).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TenantOption = Annotated[str, typer.Option("--tenant", envvar="FULFILL_TENANT", help="Tenant id.")]
TokenOption = Annotated[
    str | None, typer.Option("--token", envvar="FULFILL_TOKEN", help="Bearer token to use.")
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Act on this database directly (a FULFILL_DATABASE_URL), even when FULFILL_URL is set.",
        show_default=False,
    ),
]


def settings() -> Settings:
    """The settings of this shell's environment (read at each use: tests change it)."""
    return Settings()
