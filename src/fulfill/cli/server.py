"""``fulfill serve`` and ``fulfill migrate``: run the service, prepare its database."""

from __future__ import annotations

import errno
import socket
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fulfill import collector
from fulfill.cli.base import options
from fulfill.cli.options import DbOption
from fulfill.config import Settings
from fulfill.explain import CliError, explain, shown_url

if TYPE_CHECKING:
    import uvicorn


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (FULFILL_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (FULFILL_PORT).")] = None,
    role: Annotated[str | None, typer.Option(help="all | api | worker (FULFILL_ROLE).")] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Run the built-in demo once the service is up.")
    ] = False,
) -> None:
    """Run the service: HTTP API, MCP gateway and workers. Migrates the database on start."""
    from fulfill.logging_setup import configure_logging
    from fulfill.server import build_server, startup_error

    overrides: dict[str, Any] = {
        k: v for k, v in {"host": host, "port": port, "role": role}.items() if v is not None
    }
    settings = Settings(**overrides)
    configure_logging(settings.log_level, log_format=settings.log_format, secrets=settings.log_secrets)
    collector.tune(settings.gc_young_threshold)
    try:
        server, sock, bound = build_server(settings, verbose_startup_errors=options.debug)
    except OSError as exc:
        raise CliError(_cannot_listen(exc, settings), exit_code=2) from None
    # As it is: Rich's console is ~1.2 MiB resident in a process that prints nothing else.
    print(
        f"fulfill serving on http://{bound.host}:{bound.port} "
        f"(role {bound.role}, {shown_url(bound.database_url)})",
        flush=True,
    )
    if demo:
        threading.Thread(target=_demo_when_ready, args=(server, bound), daemon=True).start()
    threading.Thread(target=_freeze_when_ready, args=(server,), name="fulfill-gc-freeze", daemon=True).start()
    try:
        server.run(sockets=[sock])
    except SystemExit:
        failure = startup_error(server)
        if failure is None or options.debug:
            raise
        raise CliError(
            f"fulfill could not start: {explain(failure, database_url=bound.database_url)}"
        ) from None


def _cannot_listen(exc: OSError, settings: Settings) -> str:
    where = f"{settings.host}:{settings.port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use (another `fulfill serve`?). "
            "Stop that process, or choose another port with --port or FULFILL_PORT."
        )
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied; ports below 1024 need privileges, use another port."
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return f"cannot listen on {where}: no such address on this machine; check --host or FULFILL_HOST."
    return f"cannot listen on {where}: {explain(exc)}"


def _wait_started(server: uvicorn.Server) -> bool:
    """Wait until uvicorn has started (True), or is exiting without having started (False)."""
    while not server.started:
        if server.should_exit:
            return False
        time.sleep(0.05)
    return True


def _freeze_when_ready(server: uvicorn.Server) -> None:
    """Once the service answers (started: its modules, models, pools and DBOS are built), keep
    what start-up built out of later garbage collections (:mod:`fulfill.collector`)."""
    if _wait_started(server):
        collector.freeze_start_up()


def _demo_when_ready(server: uvicorn.Server, settings: Settings) -> None:
    from rich.markup import escape

    from fulfill.cli.output import console, err_console
    from fulfill.cli.remote import local_service_url
    from fulfill.cli.tooling import NOT_INSTALLED, tooling

    tools = tooling()
    if tools is None:
        err_console.print(f"[red]demo failed:[/red] {NOT_INSTALLED}", highlight=False, soft_wrap=True)
        return
    if not _wait_started(server):
        return
    url = local_service_url(settings)
    try:
        tools.run_demo(url, settings, console)
    except Exception as exc:
        err_console.print(f"[red]demo failed:[/red] {escape(explain(exc))}", highlight=False, soft_wrap=True)
    console.print(f"[green]the service keeps serving on {url}; press Ctrl+C to stop[/green]")
    console.print(f"operator console: {url}/console/", highlight=False, soft_wrap=True)


def migrate(db: DbOption = None) -> None:
    """Create or upgrade the database schema and seed the default registry (FULFILL_DATABASE_URL)."""
    from fulfill.cli.operators import describe_database
    from fulfill.cli.output import console, note
    from fulfill.clock import SystemClock
    from fulfill.store.db import Database
    from fulfill.store.migrate import current_revision, upgrade_to_head
    from fulfill.store.sql_store import SqlStore
    from fulfill.usecases.registry import seed_default_registry

    url = db or Settings().database_url
    note(f"database: {describe_database(url)}")
    database = Database(url)
    try:
        upgrade_to_head(database)
        seed_default_registry(SqlStore(database), SystemClock().now_iso())
        console.print(f"database at revision {current_revision(database)}")
    except Exception as exc:
        raise CliError(explain(exc, database_url=url)) from None
    finally:
        database.dispose()
