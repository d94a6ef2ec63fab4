"""The ``fulfill`` command line.

Commands that talk to a running service (``intent``, ``approve``, ``status``, ``demo``) use its
HTTP API at ``--url`` (``FULFILL_URL``; without it, ``http://FULFILL_HOST:FULFILL_PORT``, where
``fulfill serve`` listens with the same settings) with a token minted from ``FULFILL_JWT_SECRET``
unless ``--token`` is given. Commands that operate the service (``kill-switch``, ``registry``) go
through the same API when a service URL is given, and otherwise work on the database directly
(``--db``, else ``FULFILL_DATABASE_URL``), so an emergency stop works even when the API does not:
they name the database they act on and never create one. Whoever can reach the database is a
platform operator (over HTTP the same changes need the ``platform:admin`` scope). ``gateway`` and
``connectors`` work on the database; running services pick up their changes within
``FULFILL_GATEWAY_TARGETS_REFRESH_SECONDS`` (targets) or at once (limits).

Failures end in one line saying what went wrong and what to do (exit 1, or 2 for configuration
and reachability); ``fulfill --debug …`` shows the traceback instead.

The package: ``app`` (the application and the order of its commands), one module per command
group, ``operators`` (the same operations through the API or on the database), ``remote`` (the
API, over ``fulfill.client``), ``auth`` (bearer tokens), ``options`` and ``output``; ``base``
(the application without its commands) and :func:`main`, which builds only ``serve`` for
``fulfill serve …``: a server process loads neither the other commands nor their libraries, so
importing this package loads nothing until ``app`` or ``CLI_CHANGED_BY`` is asked for.
"""

from __future__ import annotations

import os
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

    from fulfill.cli.app import app
    from fulfill.cli.operators import CLI_CHANGED_BY

__all__ = ["CLI_CHANGED_BY", "app", "command_line", "main"]


def command_line(arguments: list[str]) -> typer.Typer:
    """The application that runs ``fulfill <arguments>``: for ``serve …``, ``serve`` alone."""
    if arguments[:1] == ["serve"]:
        if "httpx" not in sys.modules:
            # httpx's own command line (never run here) would import click, Rich and Pygments
            # with httpx: ~1.7 MiB resident in a server process.
            sys.modules["httpx._main"] = None  # type: ignore[assignment]
        from fulfill.cli.base import serving_app

        return serving_app()
    from fulfill.cli.app import app as application

    return application


def main() -> None:
    os.environ.setdefault("DBOS__DISABLE_TELEMETRY", "true")
    application = command_line(sys.argv[1:])
    try:
        application()
    except KeyboardInterrupt:
        sys.exit(130)


class _Package(types.ModuleType):
    """``fulfill.cli.app`` is the Typer application, as it always was, even once the module of
    that name is imported (the import system sets the module as this package's attribute)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "app" and isinstance(value, types.ModuleType):
            value = value.app
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        if name == "app":
            from fulfill.cli.app import app as application

            return application
        if name == "CLI_CHANGED_BY":
            from fulfill.cli.operators import CLI_CHANGED_BY as changed_by

            return changed_by
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


sys.modules[__name__].__class__ = _Package
