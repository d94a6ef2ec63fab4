"""The tooling's commands (load test, end-to-end check, demo, local Salesforce server) plug into
the command line: the product never imports its tooling package, it looks ``fulfill_tools.cli``
up by name and lets it register its commands. Without that package (it ships in the same
distribution) the command line has none of them, and ``serve --demo`` says why."""

from __future__ import annotations

import functools
import importlib
from typing import Protocol, cast

import typer
from rich.console import Console

from fulfill.config import Settings

TOOLING_MODULE = "fulfill_tools.cli"


class Tooling(Protocol):
    def register(self, app: typer.Typer) -> None:
        """Add the tooling's commands to ``app``."""
        ...

    def run_demo(self, url: str, settings: Settings, console: Console) -> bool:
        """The demo against the service at ``url`` (``fulfill serve --demo`` once it answers)."""
        ...


NOT_INSTALLED = "the tooling package fulfill_tools is not installed"


@functools.cache
def tooling() -> Tooling | None:
    """The tooling's commands, or None when its package is not installed."""
    try:
        module = importlib.import_module(TOOLING_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name not in ("fulfill_tools", TOOLING_MODULE):
            raise
        return None
    return cast(Tooling, module)
