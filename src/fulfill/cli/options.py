"""The options several commands share, and the settings they read."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

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


def read_json_object(source: str, option: str) -> dict[str, Any]:
    """The JSON object in the file ``source`` (``-``: stdin); anything else is refused, naming the
    option, before the service is asked."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {source}: {exc.strerror or exc}", param_hint=option) from None
    try:
        loaded = json.loads(text)
    except ValueError as exc:
        where = "stdin" if source == "-" else source
        raise typer.BadParameter(f"{where} is not JSON: {exc}", param_hint=option) from None
    if not isinstance(loaded, dict):
        raise typer.BadParameter("must hold a JSON object ({...})", param_hint=option)
    return loaded
