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
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from fulfill.config import Settings
from fulfill.explain import CliError, explain, network_reason, problem_line, shown_url

if TYPE_CHECKING:
    from fulfill.domain.killswitch import KillSwitchScope


@dataclass
class _Options:
    debug: bool = False


_options = _Options()
# Output that is piped or redirected goes to programs and to files read in a wide window: Rich
# would cut its tables at 80 columns there (``CREATE_INTERNAL…``), so it gets room instead.
PIPED_WIDTH = 4096


def _console(*, stderr: bool = False) -> Console:
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=PIPED_WIDTH)


console = _console()
err_console = _console(stderr=True)


class _OneLineErrors(TyperGroup):
    """Every command's unexpected failure as one line on stderr (``--debug``: the traceback)."""

    def invoke(self, ctx: Any) -> Any:  # a typer.Context (its base class is private)
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, KeyboardInterrupt):
            raise
        except Exception as exc:
            if _options.debug:
                raise
            explained = isinstance(exc, CliError | ValidationError)  # nothing more to see in a traceback
            code = exc.exit_code if isinstance(exc, CliError) else 2 if explained else 1
            hint = "" if explained else " (fulfill --debug … shows the traceback)"
            err_console.print(
                f"[red]error:[/red] {escape(explain(exc))}{hint}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(code) from None


app = typer.Typer(
    help="fulfill: execute approved AI-agent actions exactly once.",
    no_args_is_help=True,
    cls=_OneLineErrors,
    pretty_exceptions_enable=False,
)
intent_app = typer.Typer(help="Submit action intents.", no_args_is_help=True)
kill_app = typer.Typer(
    help="Kill switches: take effect at the next check, no restart needed. Through the service's API "
    "when --url or FULFILL_URL is given, else on the database (--db, else FULFILL_DATABASE_URL).",
    no_args_is_help=True,
)
registry_app = typer.Typer(
    help="The action-type registry (through the API with --url or FULFILL_URL, else the database).",
    no_args_is_help=True,
)
gateway_app = typer.Typer(
    help="Gateway targets: remote MCP servers whose tools the gateway serves as {name}.{tool}.",
    no_args_is_help=True,
)
connectors_app = typer.Typer(
    help="Flow control of connectors and remote targets: limits (shared by every process, applied "
    "without a restart) and circuit breakers.",
    no_args_is_help=True,
)
outbox_app = typer.Typer(
    help="The outbox's dead letters: deliveries refused FULFILL_OUTBOX_MAX_ATTEMPTS times (on the "
    "database: --db, else FULFILL_DATABASE_URL).",
    no_args_is_help=True,
)
bench_app = typer.Typer(help="Benchmarks against a service in its own process.", no_args_is_help=True)
credentials_app = typer.Typer(
    help="Connector credentials, encrypted with FULFILL_SECRETS_KEY (secrets are never printed).",
    no_args_is_help=True,
)
dev_app = typer.Typer(
    help="Local stand-ins for external systems (development and tests).", no_args_is_help=True
)
app.add_typer(intent_app, name="intent")
app.add_typer(credentials_app, name="credentials")
app.add_typer(dev_app, name="dev")
app.add_typer(bench_app, name="bench")
app.add_typer(kill_app, name="kill-switch")
app.add_typer(registry_app, name="registry")
app.add_typer(gateway_app, name="gateway")
app.add_typer(connectors_app, name="connectors")
app.add_typer(outbox_app, name="outbox")

# Every scope of a tenant's own work; ``admin`` manages that tenant only. What affects every
# tenant (the global kill switches, the registry) needs ``platform:admin`` instead.
ALL_SCOPES = "intents:write intents:read intents:approve events:write executions:read admin"
PLATFORM_ADMIN = "platform:admin"
# Who the ledger says changed a kill switch written straight to the database (--db).
CLI_CHANGED_BY = "fulfill-cli (database)"
MAX_TOKEN_TTL_SECONDS = 366 * 24 * 3600

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


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an unexpected failure.")
    ] = False,
) -> None:
    _options.debug = debug


def _settings() -> Settings:
    return Settings()


def _token(tenant: str, token: str | None, scopes: str = ALL_SCOPES) -> str:
    if token:
        return token
    from fulfill.tokens import mint_token

    settings = _settings()
    if settings.auth_mode == "production":
        raise CliError(
            "FULFILL_AUTH_MODE=production: tokens come from your identity provider; pass one with "
            "--token or FULFILL_TOKEN",
            exit_code=2,
        )
    minted = mint_token(settings, tenant_id=tenant, scopes=scopes.split())
    _minted.add(minted)
    return minted


# The tokens this command minted itself, so that a refusal can say where its token came from.
_minted: set[str] = set()


def local_service_url(settings: Settings) -> str:
    """Where ``fulfill serve`` with these settings is reached from this machine."""
    host = settings.host
    if host in ("0.0.0.0", ""):  # noqa: S104 - naming the wildcard address, not binding it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


class ServiceApi:
    """The service's HTTP API, for the client commands: one line when it cannot be reached."""

    def __init__(self, url: str | None) -> None:
        if url:
            self.base = url.rstrip("/")
            self.source = "--url / FULFILL_URL"
        else:
            self.base = local_service_url(_settings())
            self.source = "FULFILL_HOST / FULFILL_PORT; set --url or FULFILL_URL for another service"

    def send(self, method: str, path: str, token: str, body: Any = None) -> httpx.Response:
        try:
            return httpx.request(
                method,
                self.base + path,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30.0,
            )
        except httpx.TransportError as exc:
            raise CliError(
                f"cannot reach the service at {self.base} (from {self.source}): {network_reason(exc)}. "
                "Is `fulfill serve` running there?",
                exit_code=2,
            ) from None

    def call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        """The JSON answer; a problem answer ends the command in one line on stderr naming its
        status, code and detail (exit 1); ``fulfill --debug …`` also prints the whole body."""
        response = self.send(method, path, token, body)
        try:
            payload = response.json() if response.content else None
        except ValueError:
            raise CliError(
                f"{method} {self.base}{path} answered {response.status_code} with something that is not "
                "JSON: is that URL a fulfill service?"
            ) from None
        if response.status_code >= 400:
            if _options.debug:
                err_console.print_json(data=payload)
            line = problem_line(response)
            if response.status_code in (401, 403):
                line += f" (the token came from {_token_source(token)})"
            err_console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        return payload


def _token_source(token: str) -> str:
    """Where the bearer token of a refused call came from: an exported ``FULFILL_TOKEN`` wins over
    a minted one, even for another service's --url, and a 403 alone would not say so."""
    if token == os.environ.get("FULFILL_TOKEN"):
        return "FULFILL_TOKEN; unset it to mint one from FULFILL_JWT_SECRET"
    if token in _minted:
        return "a token minted from FULFILL_JWT_SECRET"
    return "--token"


@app.command()
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
    try:
        server, sock, bound = build_server(settings, verbose_startup_errors=_options.debug)
    except OSError as exc:
        raise CliError(_cannot_listen(exc, settings), exit_code=2) from None
    console.print(
        f"fulfill serving on http://{bound.host}:{bound.port} "
        f"(role {bound.role}, {shown_url(bound.database_url)})",
        soft_wrap=True,
        highlight=False,
    )
    if demo:
        threading.Thread(target=_demo_when_ready, args=(server, bound), daemon=True).start()
    try:
        server.run(sockets=[sock])
    except SystemExit:
        failure = startup_error(server)
        if failure is None or _options.debug:
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


def _demo_when_ready(server: Any, settings: Settings) -> None:
    import time

    from fulfill.demo import run_demo

    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.05)
    url = local_service_url(settings)
    try:
        run_demo(url, settings, console)
    except Exception as exc:
        err_console.print(f"[red]demo failed:[/red] {escape(explain(exc))}", highlight=False, soft_wrap=True)
    console.print(f"[green]the service keeps serving on {url}; press Ctrl+C to stop[/green]")
    console.print(f"operator console: {url}/console/", highlight=False, soft_wrap=True)


@app.command()
def demo(url: UrlOption = None) -> None:
    """Submit, approve and execute one internal task against a running service; print its status."""
    from fulfill.demo import run_demo

    api = ServiceApi(url)
    try:
        ok = run_demo(api.base, _settings(), console)
    except httpx.TransportError as exc:
        raise CliError(
            f"cannot reach the service at {api.base} (from {api.source}): {network_reason(exc)}. "
            "Start it with `fulfill serve`, or point --url at it.",
            exit_code=2,
        ) from None
    if not ok:
        raise typer.Exit(1)


@app.command()
def e2e(
    url: Annotated[
        str | None,
        typer.Option("--url", envvar="FULFILL_URL", help="Service to verify; omit to start an embedded one."),
    ] = None,
    bearer: TokenOption = None,
    account: Annotated[
        str, typer.Option("--account", envvar="FULFILL_ACCOUNT_ID", help="Account of the test intents.")
    ] = "e2e-account",
    db: Annotated[
        str | None, typer.Option("--db", help="Database URL of that service: also check its rows.")
    ] = None,
    global_stop: Annotated[
        bool,
        typer.Option(
            "--global-stop",
            envvar="FULFILL_E2E_GLOBAL_STOP",
            help="Kill-switch path: use the global stop (stops every tenant; needs platform:admin) "
            "instead of switching off the token's own tenant.",
        ),
    ] = False,
) -> None:
    """Verify a service end to end (B2, B1, kill switch, expiry, duplicates). Exit 0 verified,
    1 a check failed, 2 configuration error."""
    from fulfill.e2e import ConfigurationError, run_e2e, run_embedded

    try:
        if not url:
            if db:
                raise ConfigurationError("--db needs FULFILL_URL (the embedded run checks its own database)")
            ok = run_embedded(account, console, global_stop=global_stop)
        elif not bearer:
            raise ConfigurationError("FULFILL_URL is set but FULFILL_TOKEN is missing (--token)")
        else:
            ok = run_e2e(url, bearer, account, console, db_url=db, global_stop=global_stop)
    except ConfigurationError as exc:
        console.print(f"[red]configuration error: {exc}[/red]")
        raise typer.Exit(2) from None
    if not ok:
        raise typer.Exit(1)


@app.command()
def migrate(db: DbOption = None) -> None:
    """Create or upgrade the database schema and seed the default registry (FULFILL_DATABASE_URL)."""
    from fulfill.clock import SystemClock
    from fulfill.store.db import Database
    from fulfill.store.migrate import current_revision, upgrade_to_head
    from fulfill.store.sql_store import SqlStore
    from fulfill.usecases.registry import seed_default_registry

    url = db or _settings().database_url
    err_console.print(f"database: {escape(_describe_database(url))}", highlight=False, soft_wrap=True)
    database = Database(url)
    try:
        upgrade_to_head(database)
        seed_default_registry(SqlStore(database), SystemClock().now_iso())
        console.print(f"database at revision {current_revision(database)}")
    except Exception as exc:
        raise CliError(explain(exc, database_url=url)) from None
    finally:
        database.dispose()


@app.command()
def token(
    tenant: Annotated[str, typer.Option(help="Tenant id (the tenant_id claim).")],
    scopes: Annotated[
        str,
        typer.Option(
            help="Space-separated scopes; given, they replace the default (every tenant scope, "
            "'admin', the tenant's own admin, included). What affects every tenant (the global kill "
            "switches, the registry) needs 'platform:admin': --scopes platform:admin is that scope "
            "alone; list the others too for both."
        ),
    ] = ALL_SCOPES,
    account_ids: Annotated[
        str | None, typer.Option(help="Comma-separated account ids; omit for all.")
    ] = None,
    sub: Annotated[str, typer.Option(help="Subject (the sub claim).")] = "fulfill-cli",
    ttl: Annotated[
        int, typer.Option(help="Lifetime in seconds (1 to one year).", min=1, max=MAX_TOKEN_TTL_SECONDS)
    ] = 3600,
) -> None:
    """Print a dev-mode (HS256) user token signed with FULFILL_JWT_SECRET.

    User tokens never open the MCP gateway (/mcp): only the engine's own service tokens do."""
    from fulfill.tokens import mint_token

    if _settings().auth_mode == "production":
        raise CliError("FULFILL_AUTH_MODE=production: tokens come from your identity provider", exit_code=2)
    if not tenant.strip():
        raise typer.BadParameter("must not be empty", param_hint="--tenant")
    accounts = [a.strip() for a in account_ids.split(",") if a.strip()] if account_ids is not None else None
    typer.echo(
        mint_token(
            _settings(),
            tenant_id=tenant,
            scopes=scopes.split(),
            account_ids=accounts,
            subject=sub,
            ttl_seconds=ttl,
        )
    )


def parse_params(items: list[str]) -> dict[str, Any]:
    """``key=value`` is the string ``value``; ``key:=JSON`` is a JSON value (number, boolean, list,
    object, null), as HTTPie writes them. Anything else is refused, naming the item."""
    parameters: dict[str, Any] = {}
    for item in items:
        key, separator, raw = item.partition("=")
        if not separator:
            raise typer.BadParameter(
                f"{item!r} has no '=': write key=value (a string) or key:=JSON (a number, boolean, list or object)",
                param_hint="--param",
            )
        if key.endswith(":"):
            key = key[:-1]
            try:
                value: Any = json.loads(raw)
            except ValueError:
                raise typer.BadParameter(
                    f"{item!r}: the value after ':=' is not JSON (a string is key=value)",
                    param_hint="--param",
                ) from None
        else:
            value = raw
        if not key:
            raise typer.BadParameter(f"{item!r} has no name before '='", param_hint="--param")
        if key in parameters:
            raise typer.BadParameter(f"{key!r} is given twice", param_hint="--param")
        parameters[key] = value
    return parameters


def parse_policy(policy: str | None, **fields: int | None) -> dict[str, Any]:
    """``--policy`` (a JSON object) with the single-field options laid over it; the service checks
    the values (a problem answer names a wrong one)."""
    parsed: dict[str, Any] = {}
    if policy is not None:
        try:
            loaded = json.loads(policy)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--policy") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter(
                "must be a JSON object, e.g. '{\"max_attempts\": 3}'", param_hint="--policy"
            )
        parsed = loaded
    return {**parsed, **{name: value for name, value in fields.items() if value is not None}}


@intent_app.command("submit")
def intent_submit(
    action_type: Annotated[str, typer.Option(help="e.g. CREATE_INTERNAL_TASK")],
    account: Annotated[str, typer.Option(help="Account id.")],
    tenant: TenantOption,
    param: Annotated[
        list[str] | None,
        typer.Option(
            help="key=value (a string) or key:=JSON (a number, boolean, list or object); repeatable."
        ),
    ] = None,
    intent_id: Annotated[str | None, typer.Option(help="Client-chosen action_intent_id.")] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            help="The execution_policy as a JSON object, e.g. '{\"max_attempts\": 3}'; the options "
            "below override its fields."
        ),
    ] = None,
    max_attempts: Annotated[
        int | None,
        typer.Option(
            help="execution_policy.max_attempts: attempts in all, the first included (default 1: no "
            "rerun after a failed tool call; a rerun after a kill switch or an outage is always allowed).",
            min=1,
            max=10,
        ),
    ] = None,
    retry_count: Annotated[
        int | None,
        typer.Option(
            help="execution_policy.retry_count: retries of a transient failure (default 3).", min=0, max=10
        ),
    ] = None,
    timeout_seconds: Annotated[
        int | None,
        typer.Option(
            help="execution_policy.timeout_seconds: one attempt's budget (default 300).", min=1, max=86_400
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the created intent as JSON instead of its id.")
    ] = False,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """Create an intent (PENDING_APPROVAL) and print its id (--json: the whole intent)."""
    body: dict[str, Any] = {
        "action_type": action_type,
        "account_id": account,
        "parameters": parse_params(param or []),
    }
    if intent_id:
        body["action_intent_id"] = intent_id
    execution_policy = parse_policy(
        policy, max_attempts=max_attempts, retry_count=retry_count, timeout_seconds=timeout_seconds
    )
    if execution_policy:
        body["execution_policy"] = execution_policy
    created = ServiceApi(url).call("POST", "/intents", _token(tenant, bearer), body)
    if json_output:
        console.print_json(data=created)
    else:  # the id alone, for `ID=$(fulfill intent submit …)`
        typer.echo(created["action_intent_id"])
    ignored = created.get("ignored_parameters") if isinstance(created, dict) else None
    if ignored:
        err_console.print(
            f"warning: {action_type} does not use the parameter(s) {escape(', '.join(ignored))}: they are "
            "stored with the intent, but its registry mapping never sends them to the tool",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def approve(
    action_intent_id: str,
    tenant: TenantOption,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """Approve an intent: it executes right away."""
    answer = ServiceApi(url).call("POST", f"/intents/{action_intent_id}/approve", _token(tenant, bearer))
    console.print_json(data=answer)
    _print_warnings(answer)


def _print_warnings(answer: Any) -> None:
    """An answer's ``warnings`` (an approval into an active kill switch), on stderr."""
    warnings = answer.get("warnings") if isinstance(answer, dict) else None
    for warning in warnings if isinstance(warnings, list) else []:
        err_console.print(f"warning: {escape(str(warning))}", highlight=False, soft_wrap=True)


@app.command()
def rerun(
    action_intent_id: str,
    tenant: TenantOption,
    reason: Annotated[str | None, typer.Option(help="Why, for the ledger (RERUN_REQUESTED).")] = None,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """Rerun a FAILED or CANCELLED execution (tenant admin): a new attempt with the same idempotency
    key. Always allowed after a kill switch or an outage stopped it before its tool call; otherwise
    within the intent's execution_policy.max_attempts."""
    body = {"reason": reason} if reason else None
    console.print_json(
        data=ServiceApi(url).call("POST", f"/intents/{action_intent_id}/rerun", _token(tenant, bearer), body)
    )


@app.command()
def cancel(
    action_intent_id: str,
    tenant: TenantOption,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """Cancel an intent: before its execution it never runs; a write already made is undone where
    its registry entry says how (compensation)."""
    console.print_json(
        data=ServiceApi(url).call("POST", f"/intents/{action_intent_id}/cancel", _token(tenant, bearer))
    )


@app.command()
def status(
    action_intent_id: str,
    tenant: TenantOption,
    url: UrlOption = None,
    bearer: TokenOption = None,
) -> None:
    """Print the execution status of an intent."""
    console.print_json(
        data=ServiceApi(url).call("GET", f"/executions/{action_intent_id}/status", _token(tenant, bearer))
    )


# ---------------------------------------------------------------- operating: database or API


def _describe_database(url: str) -> str:
    from sqlalchemy.engine import make_url

    shown = shown_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return f"{shown} ({Path(parsed.database or '').expanduser().resolve()})"
    return shown


def _open_database(db: str | None) -> Any:
    """The database a command acts on, named on stderr; never created. A SQLite file must exist
    and every database must hold fulfill's tables."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from fulfill.store.db import Database
    from fulfill.store.tables import global_execution_config

    url = db or _settings().database_url
    source = (
        "--db" if db else "FULFILL_DATABASE_URL" if "FULFILL_DATABASE_URL" in os.environ else "the default"
    )
    described = _describe_database(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "").expanduser().resolve() if parsed.database else None
        if path is None or not path.is_file():
            raise CliError(
                f"no database at {described} ({source}). Run this where the service runs, set "
                "FULFILL_DATABASE_URL (or --db) to the service's database, or go through its API with "
                "--url / FULFILL_URL.",
                exit_code=2,
            )
    err_console.print(f"database: {escape(described)}", highlight=False, soft_wrap=True)
    database = Database(url)
    try:
        with database.read() as conn:
            migrated = inspect(conn).has_table(global_execution_config.name)
    except Exception as exc:
        database.dispose()
        raise CliError(explain(exc, database_url=url), exit_code=2) from None
    if not migrated:
        database.dispose()
        raise CliError(
            f"{described} holds no fulfill tables: is it the service's database? (`fulfill migrate` "
            "creates them in a new one.)",
            exit_code=2,
        )
    return database


class _Operator:
    """Kill switches and the registry, through the API or on the database."""

    def __init__(self, url: str | None, db: str | None, bearer: str | None) -> None:
        self.api = ServiceApi(url) if url and not db else None
        self.bearer = bearer
        self.database = None if self.api else _open_database(db)
        if self.api:
            err_console.print(f"service: {escape(self.api.base)} (its API)", highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.database is not None:
            self.database.dispose()

    def _platform_token(self) -> str:
        return _token("platform", self.bearer, PLATFORM_ADMIN)

    def _tenant_token(self, tenant: str) -> str:
        return _token(tenant, self.bearer, "admin")

    def action_types(self) -> set[str] | None:
        """The registered action types; None when this token may not read the registry."""
        if self.api:
            response = self.api.send("GET", "/admin/registry", self._platform_token())
            if response.status_code != 200:
                return None
            return {entry["action_type"] for entry in response.json()["entries"]}
        from fulfill.store import registry

        with self.database.read() as conn:  # type: ignore[union-attr]
            return {entry.action_type for entry in registry.list_entries(conn)}

    def registry_entries(self, action_type: str | None) -> list[dict[str, Any]]:
        if self.api:
            query = f"?action_type={action_type}" if action_type else ""
            listing = self.api.call("GET", f"/admin/registry{query}", self._platform_token())
            return list(listing["entries"])
        from fulfill.store import registry

        with self.database.read() as conn:  # type: ignore[union-attr]
            return [entry.model_dump(mode="json") for entry in registry.list_entries(conn, action_type)]

    def show(self, tenant: str | None) -> dict[str, Any]:
        if self.api:
            data: dict[str, Any] = {
                "global": self.api.call("GET", "/admin/kill-switches", self._platform_token())
            }
            if tenant:
                data["tenant"] = self.api.call(
                    "GET", f"/admin/tenants/{tenant}/execution", self._tenant_token(tenant)
                )
            return data
        from fulfill.domain.killswitch import GLOBAL_SCOPE, KillSwitchScope
        from fulfill.store.sql_store import SqlStore
        from fulfill.usecases.admin import read_switches

        assert self.database is not None
        store = SqlStore(self.database)
        data = {"global": read_switches(store, GLOBAL_SCOPE).public()}
        if tenant:
            data["tenant"] = read_switches(store, KillSwitchScope.of_tenant(tenant)).public()
        data["environment_stop"] = _settings().global_execution_stop
        return data

    def change_global(self, change: Any) -> dict[str, Any]:
        """Apply ``change`` (a function of the current switches' fields) to the global switches."""
        if self.api:
            token = self._platform_token()
            current = self.api.call("GET", "/admin/kill-switches", token)
            wanted = change({k: current[k] for k in ("global_stop", "disabled_action_types")})
            return dict(self._put("/admin/kill-switches", token, current, wanted))
        from fulfill.domain.killswitch import GLOBAL_SCOPE

        return self._change_on_database(GLOBAL_SCOPE, change)

    def change_tenant(self, tenant: str, change: Any) -> dict[str, Any]:
        if self.api:
            token = self._tenant_token(tenant)
            path = f"/admin/tenants/{tenant}/execution"
            current = self.api.call("GET", path, token)
            wanted = change({k: current[k] for k in ("execution_enabled", "disabled_action_types")})
            return dict(self._put(path, token, current, wanted))
        from fulfill.domain.killswitch import KillSwitchScope

        return self._change_on_database(KillSwitchScope.of_tenant(tenant), change)

    def _change_on_database(self, scope: KillSwitchScope, change: Any) -> dict[str, Any]:
        from fulfill.clock import SystemClock
        from fulfill.domain.killswitch import SwitchSettings
        from fulfill.store.sql_store import SqlStore
        from fulfill.usecases.admin import change_switches

        assert self.database is not None
        stored = change_switches(
            SqlStore(self.database),
            scope,
            lambda current: SwitchSettings.from_fields(scope, change(current.fields(scope))),
            now=SystemClock().now_iso(),
            changed_by=CLI_CHANGED_BY,
        )
        return stored.public()

    def _put(self, path: str, token: str, current: dict[str, Any], wanted: dict[str, Any]) -> Any:
        assert self.api is not None
        answer = self.api.call("PUT", path, token, wanted)
        # The API has no conditional PUT: a change between the GET and the PUT would be replaced.
        if isinstance(current.get("revision"), int) and answer.get("revision") != current["revision"] + 1:
            err_console.print(
                "warning: the switches changed while this command ran; check them with "
                "`fulfill kill-switch show`",
                highlight=False,
            )
        return answer


def _operate(url: str | None, db: str | None, bearer: str | None) -> _Operator:
    return _Operator(url, db, bearer)


@kill_app.command("show")
def kill_show(
    tenant: Annotated[str | None, typer.Option(help="Also show this tenant's switches.")] = None,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Show the global switches (and a tenant's)."""
    operator = _operate(url, db, bearer)
    try:
        console.print_json(data=operator.show(tenant))
    finally:
        operator.close()


@kill_app.command("global")
def kill_global(
    state: Annotated[str, typer.Argument(help="'stop' halts every execution; 'resume' lifts it.")],
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Stop or resume every execution."""
    if state not in ("stop", "resume"):
        raise typer.BadParameter("use 'stop' or 'resume'", param_hint="STATE")
    operator = _operate(url, db, bearer)
    try:
        console.print_json(
            data=operator.change_global(lambda current: {**current, "global_stop": state == "stop"})
        )
    finally:
        operator.close()


@kill_app.command("tenant")
def kill_tenant(
    tenant_id: str,
    state: Annotated[str, typer.Argument(help="'stop' or 'resume' this tenant's executions.")],
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Disable or enable execution for one tenant."""
    if state not in ("stop", "resume"):
        raise typer.BadParameter("use 'stop' or 'resume'", param_hint="STATE")
    operator = _operate(url, db, bearer)
    try:
        console.print_json(
            data=operator.change_tenant(
                tenant_id, lambda current: {**current, "execution_enabled": state == "resume"}
            )
        )
    finally:
        operator.close()


@kill_app.command("action-type")
def kill_action_type(
    action_type: str,
    state: Annotated[str, typer.Argument(help="'disable' or 'enable'.")],
    tenant: Annotated[str | None, typer.Option(help="Only for this tenant; omit for every tenant.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Disable an action type the registry does not know (yet).")
    ] = False,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Disable or enable one action type, globally or for one tenant."""
    if state not in ("disable", "enable"):
        raise typer.BadParameter("use 'disable' or 'enable'", param_hint="STATE")
    operator = _operate(url, db, bearer)
    try:
        known = operator.action_types()
        if known is None:
            err_console.print(
                "warning: this token cannot read the registry, so the action type is not checked",
                highlight=False,
            )
        elif action_type not in known and state == "disable" and not force:
            raise CliError(
                f"{action_type} is not a registered action type (known: {', '.join(sorted(known)) or 'none'}); "
                "check the spelling, or add --force to disable it anyway",
                exit_code=2,
            )

        def change(current: dict[str, Any]) -> dict[str, Any]:
            types = set(current["disabled_action_types"])
            if state == "enable" and action_type not in types:
                raise CliError(
                    f"{action_type} is not disabled {'for tenant ' + tenant if tenant else 'globally'}; "
                    f"disabled: {', '.join(sorted(types)) or 'none'}",
                    exit_code=2,
                )
            if state == "disable":
                types.add(action_type)
            else:
                types.discard(action_type)
            return {**current, "disabled_action_types": sorted(types)}

        updated = operator.change_tenant(tenant, change) if tenant else operator.change_global(change)
        console.print_json(data=updated)
    finally:
        operator.close()


@registry_app.command("list")
def registry_list(
    action_type: Annotated[str | None, typer.Option(help="Only this action type.")] = None,
    json_output: JsonOption = False,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """List every registry version."""
    operator = _operate(url, db, bearer)
    try:
        entries = operator.registry_entries(action_type)
    finally:
        operator.close()
    if json_output:
        console.print_json(data={"entries": entries})
        return
    table = Table("action_type", "version", "tool", "compensation", "deprecated_at")
    for entry in entries:
        table.add_row(
            entry["action_type"],
            str(entry["registry_version"]),
            entry["tool_name"],
            entry["compensation_strategy"],
            entry.get("deprecated_at") or "",
        )
    console.print(table)


def _vault() -> Any:
    from fulfill.clock import SystemClock
    from fulfill.service import credential_vault

    settings = _settings()
    return credential_vault(_open_database(None), settings, SystemClock())


def _read_secret(path: str | None, prompt: str) -> str | None:
    """A secret from a file (``-`` = standard input), or typed at a hidden prompt; never an
    argument (it would be visible in the process list and the shell history)."""
    if path == "-":
        return sys.stdin.read().strip()
    if path:
        from pathlib import Path

        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {path}: {exc.strerror}") from None
    if not prompt:
        return None
    return str(typer.prompt(prompt, hide_input=True)).strip()


def _use_case(call: Any) -> Any:
    from fulfill.usecases.errors import UseCaseError

    try:
        return call()
    except UseCaseError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None


ConnectorArgument = Annotated[str, typer.Argument(help="The connector, e.g. salesforce.")]
AccountOption = Annotated[
    str | None, typer.Option("--account", help="An account's own credential; omit for the tenant-wide one.")
]
CredentialTenant = Annotated[str, typer.Option("--tenant", help="Tenant id.")]


@credentials_app.command("set")
def credentials_set(
    connector: ConnectorArgument,
    tenant: CredentialTenant,
    credential_type: Annotated[
        str, typer.Option("--type", help="client_credentials | jwt_bearer | refresh_token")
    ],
    client_id: Annotated[str, typer.Option(help="The OAuth client id (Salesforce: consumer key).")],
    account: AccountOption = None,
    login_url: Annotated[
        str | None, typer.Option(help="OAuth server; default FULFILL_SALESFORCE_LOGIN_URL.")
    ] = None,
    username: Annotated[str | None, typer.Option(help="jwt_bearer: the user the assertion names.")] = None,
    audience: Annotated[str | None, typer.Option(help="jwt_bearer: the assertion's aud.")] = None,
    client_secret_file: Annotated[
        str | None, typer.Option(help="File holding the client secret ('-': standard input).")
    ] = None,
    private_key_file: Annotated[
        str | None, typer.Option(help="jwt_bearer: PEM file of the RSA private key.")
    ] = None,
    refresh_token_file: Annotated[
        str | None, typer.Option(help="refresh_token: file holding the refresh token ('-': stdin).")
    ] = None,
) -> None:
    """Store (or replace) a connector credential; prints its metadata, never the secret."""
    from pydantic import TypeAdapter, ValidationError

    from fulfill.domain.credentials import CredentialInput
    from fulfill.usecases import credentials

    body: dict[str, Any] = {"type": credential_type, "client_id": client_id, "login_url": login_url}
    if credential_type == "client_credentials":
        body["client_secret"] = _read_secret(client_secret_file, "client secret")
    elif credential_type == "jwt_bearer":
        if not private_key_file:
            raise typer.BadParameter("jwt_bearer needs --private-key-file")
        body.update(
            username=username, audience=audience, private_key=_read_secret(private_key_file, "private key")
        )
    elif credential_type == "refresh_token":
        body["refresh_token"] = _read_secret(refresh_token_file, "refresh token")
        if client_secret_file:
            body["client_secret"] = _read_secret(client_secret_file, "")
    try:
        parsed = TypeAdapter(CredentialInput).validate_python(
            {k: v for k, v in body.items() if v is not None}
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'][1:] or error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        console.print(f"[red]invalid credential: {problems}[/red]")
        raise typer.Exit(2) from None
    stored, created = _use_case(
        lambda: credentials.put_credential(
            _vault(), tenant, connector, account, parsed, login_policy=_settings().salesforce_login_policy
        )
    )
    console.print(f"{'created' if created else 'replaced'}:")
    console.print_json(data=stored.model_dump())


@credentials_app.command("list")
def credentials_list(tenant: CredentialTenant) -> None:
    """The tenant's credentials (metadata only)."""
    from fulfill.usecases import credentials

    listed = _use_case(lambda: credentials.list_credentials(_vault(), tenant))
    console.print_json(data={"credentials": [item.model_dump() for item in listed]})


@credentials_app.command("rotate")
def credentials_rotate(
    connector: ConnectorArgument,
    tenant: CredentialTenant,
    account: AccountOption = None,
    client_secret_file: Annotated[
        str | None, typer.Option(help="The new client secret ('-': stdin).")
    ] = None,
    private_key_file: Annotated[str | None, typer.Option(help="The new RSA private key (PEM).")] = None,
    refresh_token_file: Annotated[
        str | None, typer.Option(help="The new refresh token ('-': stdin).")
    ] = None,
) -> None:
    """Replace the stored secret(s) of a credential, keeping the rest."""
    from pydantic import ValidationError

    from fulfill.domain.credentials import SecretRotation
    from fulfill.usecases import credentials

    values = {
        "client_secret": _read_secret(client_secret_file, ""),
        "private_key": _read_secret(private_key_file, ""),
        "refresh_token": _read_secret(refresh_token_file, ""),
    }
    try:
        rotation = SecretRotation.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        console.print(f"[red]invalid secret: {problems}[/red]")
        raise typer.Exit(2) from None
    stored = _use_case(lambda: credentials.rotate_credential(_vault(), tenant, connector, account, rotation))
    console.print_json(data=stored.model_dump())


@credentials_app.command("delete")
def credentials_delete(
    connector: ConnectorArgument, tenant: CredentialTenant, account: AccountOption = None
) -> None:
    """Delete a credential."""
    from fulfill.usecases import credentials

    _use_case(lambda: credentials.delete_credential(_vault(), tenant, connector, account))
    console.print("deleted")


@credentials_app.command("new-key")
def credentials_new_key() -> None:
    """Print a new random FULFILL_SECRETS_KEY."""
    from fulfill.credentials.crypto import new_key

    typer.echo(new_key())


@credentials_app.command("rekey")
def credentials_rekey() -> None:
    """Re-encrypt every stored secret with the first key of FULFILL_SECRETS_KEY (after a key
    rotation: new key first, old key after it; drop the old one once this has run)."""
    from fulfill.credentials.crypto import SecretsKeyError

    try:
        changed = _vault().rekey()
        targets = _target_secrets(_open_database(None)).rekey()
    except SecretsKeyError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"{changed} credential(s) and {targets} gateway target secret(s) re-encrypted")


@dev_app.command("salesforce")
def dev_salesforce(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind (0: any free port).")] = 8900,
    client_id: Annotated[str, typer.Option(help="The OAuth client id it accepts.")] = "fulfill-dev-client",
    client_secret: Annotated[
        str, typer.Option(help="The client secret it accepts (a made-up, local one).")
    ] = "fulfill-dev-secret",  # noqa: S107 - the local server's own made-up secret
    username: Annotated[
        str, typer.Option(help="The user JWT assertions must name.")
    ] = "integration@fulfill.dev",
    jwt_public_key: Annotated[
        str | None, typer.Option(help="PEM file of the public key that verifies JWT bearer assertions.")
    ] = None,
    refresh_token: Annotated[
        str | None, typer.Option(help="A refresh token it accepts (default: a new one, printed).")
    ] = None,
    session_seconds: Annotated[
        float | None, typer.Option(help="Access tokens expire after this (default: never).")
    ] = None,
) -> None:
    """Run a local Salesforce-compatible server (REST sObjects, SOQL, OAuth, fault injection)."""
    from pathlib import Path

    from fulfill.dev.salesforce import DevSalesforce, DevSalesforceConfig, DevSalesforceServer

    config = DevSalesforceConfig(
        client_id=client_id,
        client_secret=client_secret,
        username=username,
        jwt_public_key_pem=Path(jwt_public_key).read_text() if jwt_public_key else None,
        session_seconds=session_seconds,
    )
    dev = DevSalesforce(config)
    token = refresh_token or dev.issue_refresh_token()
    if refresh_token:
        dev.accept_refresh_token(refresh_token)
    seeded = dev.seed()
    server = DevSalesforceServer(dev, host=host, port=port)
    for line in (
        f"local Salesforce on {server.url} (login URL and instance URL)",
        f"  client_id {client_id}   client_secret {client_secret}   username {username}",
        f"  refresh token {token}",
        f"  seeded Account {seeded['account_id']}, Opportunity {seeded['opportunity_id']}",
        f"  faults: POST {server.url}/__dev/faults   records: GET {server.url}/__dev/records/Task",
    ):
        typer.echo(line)
    server.run()


def _target_secrets(database: Any) -> Any:
    from fulfill.clock import SystemClock
    from fulfill.credentials.crypto import SecretBox
    from fulfill.gateway.target_auth import EncryptedTargetSecrets

    box = SecretBox.from_setting(_settings().secrets_key.get_secret_value())
    return EncryptedTargetSecrets(database, box, SystemClock().now_iso)


def _target_admin() -> Any:
    from fulfill.clock import SystemClock
    from fulfill.service import CONNECTOR_NAMESPACES
    from fulfill.store.sql_store import SqlStore
    from fulfill.usecases.targets import TargetAdmin

    settings = _settings()
    database = _open_database(None)
    clock = SystemClock()
    return TargetAdmin(
        SqlStore(database),
        _target_secrets(database),
        allow=settings.egress_allow,
        now_iso=clock.now_iso,
        reserved_namespaces=CONNECTOR_NAMESPACES,
        discovery_timeout=settings.gateway_discovery_timeout_seconds,
        max_response_bytes=settings.gateway_max_response_bytes,
    )


def _run_target_change(change: Any) -> Any:
    from fulfill.usecases.errors import UseCaseError

    try:
        return change()
    except UseCaseError as exc:
        console.print(f"[red]{exc.code or exc.kind}: {exc.message}[/red]")
        raise typer.Exit(1) from None


def _secret_from(env_var: str | None, what: str) -> str | None:
    if env_var is None:
        return None
    value = os.environ.get(env_var, "")
    if not value:
        raise typer.BadParameter(f"the environment variable {env_var} (the {what}) is empty or not set")
    return value


@gateway_app.command("add")
def gateway_add(
    name: Annotated[str, typer.Argument(help="Target name: its tools are served as {name}.{tool}.")],
    url: Annotated[str, typer.Argument(help="The server's MCP endpoint (Streamable HTTP).")],
    deduplicates: Annotated[
        bool,
        typer.Option(
            "--deduplicates/--no-deduplicates",
            help="The server deduplicates on _meta io.fulfill/idempotency-key (then lost answers are retried).",
        ),
    ] = False,
    bearer_token_env: Annotated[
        str | None, typer.Option(help="Authenticate with the bearer token in this environment variable.")
    ] = None,
    oauth_token_url: Annotated[
        str | None, typer.Option(help="OAuth client credentials: the token URL.")
    ] = None,
    oauth_client_id: Annotated[str | None, typer.Option(help="OAuth client credentials: client id.")] = None,
    oauth_client_secret_env: Annotated[
        str | None,
        typer.Option(help="OAuth client credentials: the environment variable holding the secret."),
    ] = None,
    oauth_scope: Annotated[str | None, typer.Option(help="OAuth client credentials: scope.")] = None,
    oauth_audience: Annotated[str | None, typer.Option(help="OAuth client credentials: audience.")] = None,
) -> None:
    """Register a remote MCP server as a gateway target (its tools are discovered now).

    Secrets are read from environment variables, never from the command line.
    """
    from pydantic import ValidationError

    from fulfill.usecases.targets import TargetDraft

    auth: dict[str, Any] = {"type": "none"}
    if bearer_token_env and oauth_token_url:
        raise typer.BadParameter("use either a bearer token or OAuth client credentials")
    if bearer_token_env:
        auth = {"type": "bearer", "token": _secret_from(bearer_token_env, "bearer token")}
    elif oauth_token_url or oauth_client_id or oauth_client_secret_env:
        if not (oauth_token_url and oauth_client_id and oauth_client_secret_env):
            raise typer.BadParameter(
                "OAuth needs --oauth-token-url, --oauth-client-id and --oauth-client-secret-env"
            )
        auth = {
            "type": "oauth_client_credentials",
            "token_url": oauth_token_url,
            "client_id": oauth_client_id,
            "client_secret": _secret_from(oauth_client_secret_env, "OAuth client secret"),
            "scope": oauth_scope,
            "audience": oauth_audience,
        }
    try:
        draft = TargetDraft.model_validate(
            {"name": name, "url": url, "auth": auth, "deduplicates": deduplicates}
        )
    except ValidationError as exc:
        fields = ", ".join(".".join(str(part) for part in error["loc"]) for error in exc.errors())
        raise typer.BadParameter(f"invalid {fields}") from None
    view = _run_target_change(lambda: _target_admin().add(draft))
    console.print_json(data=view.model_dump(mode="json"))


@gateway_app.command("list")
def gateway_list(json_output: JsonOption = False) -> None:
    """List the gateway targets and their tools."""
    listing = _target_admin().list()
    if json_output:
        console.print_json(data=listing.model_dump(mode="json"))
        return
    table = Table("name", "url", "auth", "deduplicates", "tools", "synced_at")
    for target in listing.targets:
        table.add_row(
            target.name,
            target.url,
            target.auth.type.value,
            "yes" if target.deduplicates else "no",
            ", ".join(tool.name for tool in target.tools),
            target.synced_at,
        )
    console.print(table)


@gateway_app.command("sync")
def gateway_sync(name: str) -> None:
    """Discover a target's tools again."""
    view = _run_target_change(lambda: _target_admin().sync(name))
    console.print_json(data=view.model_dump(mode="json"))


@gateway_app.command("remove")
def gateway_remove(name: str) -> None:
    """Remove a target, its tools and its stored secret."""
    _run_target_change(lambda: _target_admin().remove(name))
    console.print(f"removed gateway target {name}")


def _connector_table(views: list[dict[str, Any]]) -> Table:
    """Connectors as the API lists them (``ConnectorView`` as JSON)."""
    table = Table("name", "rate_per_second", "concurrency", "circuit", "failures", "opened_at", "updated_at")
    for view in views:
        rate, concurrency, circuit = view["rate_per_second"], view["concurrency"], view["circuit"]
        table.add_row(
            view["name"],
            "unlimited" if rate is None else f"{rate:g}",
            "unlimited" if concurrency is None else str(concurrency),
            circuit["state"],
            str(circuit["failures"]),
            circuit["opened_at"] or "",
            view["updated_at"] or "(default)",
        )
    return table


@connectors_app.command("list")
def connectors_list(
    json_output: JsonOption = False,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Every connector and gateway target, with its limits and circuit (through the API with
    --url or FULFILL_URL, else the database)."""
    if url and not db:
        api = ServiceApi(url)
        err_console.print(f"service: {escape(api.base)} (its API)", highlight=False, soft_wrap=True)
        views = list(api.call("GET", "/admin/connectors", _token("platform", bearer, PLATFORM_ADMIN)))
    else:
        from fulfill.store import targets
        from fulfill.store.sql_store import SqlStore
        from fulfill.usecases import connectors

        database = _open_database(db)
        try:
            with database.read() as conn:  # a target is a connector before any process serves it
                names = _built_in_connectors() | {target.name for target in targets.list_targets(conn)}
            views = [
                view.model_dump(mode="json") for view in connectors.list_connectors(SqlStore(database), names)
            ]
        finally:
            database.dispose()
    if json_output:
        console.print_json(data=views)
    else:
        console.print(_connector_table(views))


@connectors_app.command("limits")
def connectors_limits(
    name: Annotated[str, typer.Argument(help="The connector or remote target (e.g. internal).")],
    rate: Annotated[
        str | None,
        typer.Option(
            "--rate",
            help="Calls per second across every process (a whole number from 1, or below 1), or "
            "'none' for no limit. Omitted: unchanged.",
        ),
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option(
            "--concurrency",
            help="Calls in flight at once across every process, or 'none' for no limit. Omitted: unchanged.",
        ),
    ] = None,
) -> None:
    """Set a connector's limits; every process applies them at its next call, no restart needed."""
    from fulfill.clock import SystemClock
    from fulfill.store import connectors as stored
    from fulfill.store.sql_store import SqlStore
    from fulfill.usecases import connectors
    from fulfill.usecases.errors import UseCaseError

    database = _open_database(None)
    with database.read() as conn:
        current = stored.get_limits(conn, name).limits
    try:
        rate_value = current.rate_per_second if rate is None else _limit_number(rate, float, "--rate")
        concurrency_value = (
            current.concurrency if concurrency is None else _limit_number(concurrency, int, "--concurrency")
        )
        connectors.validated_limits(name, rate_value, concurrency_value)  # a clear message first
        body = connectors.ConnectorLimitsBody(rate_per_second=rate_value, concurrency=concurrency_value)
        view = connectors.put_limits(SqlStore(database), SystemClock(), name, body)
    except (UseCaseError, ValueError) as exc:
        message = exc.message if isinstance(exc, UseCaseError) else str(exc).splitlines()[0]
        console.print(f"[red]{message}[/red]")
        raise typer.Exit(2) from None
    console.print(_connector_table([view.model_dump(mode="json")]))


@connectors_app.command("tenant-limits")
def connectors_tenant_limits(
    name: Annotated[str, typer.Argument(help="The connector or remote target (e.g. internal).")],
    tenant: Annotated[str, typer.Argument(help="The tenant whose calls to it are capped.")],
    rate: Annotated[
        str | None,
        typer.Option("--rate", help="This tenant's calls per second, or 'none'. Omitted: unchanged."),
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option(
            "--concurrency", help="This tenant's calls in flight at once, or 'none'. Omitted: unchanged."
        ),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the tenant's cap on this connector.")
    ] = False,
) -> None:
    """Cap one tenant's calls to a connector, on top of the connector's own limits (which every
    tenant shares, taking turns). Without --rate, --concurrency or --clear: show the caps."""
    from fulfill.clock import SystemClock
    from fulfill.store import connectors as stored
    from fulfill.store.sql_store import SqlStore
    from fulfill.usecases import connectors
    from fulfill.usecases.errors import UseCaseError

    database = _open_database(None)
    try:
        if clear:
            connectors.delete_tenant_cap(SqlStore(database), name, tenant)
        elif rate is not None or concurrency is not None:
            with database.read() as conn:
                current = stored.tenant_cap(conn, name, tenant)
            rate_value = (
                (current.rate_per_second if current else None)
                if rate is None
                else _limit_number(rate, float, "--rate")
            )
            concurrency_value = (
                (current.concurrency if current else None)
                if concurrency is None
                else _limit_number(concurrency, int, "--concurrency")
            )
            connectors.validated_limits(name, rate_value, concurrency_value)  # a clear message first
            body = connectors.TenantCapBody(rate_per_second=rate_value, concurrency=concurrency_value)
            connectors.put_tenant_cap(
                SqlStore(database), SystemClock(), name, tenant, body, by="cli", lower_only=False
            )
    except (UseCaseError, ValueError) as exc:
        message = exc.message if isinstance(exc, UseCaseError) else str(exc).splitlines()[0]
        console.print(f"[red]{message}[/red]")
        raise typer.Exit(2) from None
    table = Table("connector", "tenant", "rate/s", "concurrency", "updated", "by")
    for view in connectors.list_tenant_caps(SqlStore(database), name=name):
        table.add_row(
            view.name,
            view.tenant_id,
            "-" if view.rate_per_second is None else f"{view.rate_per_second:g}",
            "-" if view.concurrency is None else str(view.concurrency),
            view.updated_at,
            view.updated_by,
        )
    console.print(table)


def _limit_number(raw: str, kind: type[float] | type[int], option: str) -> Any:
    if raw.strip().lower() in ("none", "unlimited", "null"):
        return None
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{option} must be a number or 'none' (got {raw!r})") from None


def _built_in_connectors() -> set[str]:
    from fulfill.service import CONNECTOR_NAMESPACES

    return set(CONNECTOR_NAMESPACES)


def _dead_letter_table(views: list[Any]) -> Table:
    table = Table("message_id", "tenant", "topic", "destination", "attempts", "last_error", "dead since")
    for view in views:
        table.add_row(
            view.message_id,
            view.tenant_id,
            view.topic,
            view.destination or view.destination_kind,
            str(view.attempts),
            view.last_error or "",
            view.dead_lettered_at or "",
        )
    return table


@outbox_app.command("dead-letters")
def outbox_dead_letters(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's.")] = None,
    destination: Annotated[str | None, typer.Option(help="Only this destination's.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    db: DbOption = None,
) -> None:
    """List dead-lettered deliveries, oldest first (never their payloads)."""
    from fulfill.store.sql_store import SqlStore
    from fulfill.usecases import outbox

    database = _open_database(db)
    try:
        listing = outbox.list_dead_letters(
            SqlStore(database), tenant_id=tenant, platform=True, destination=destination, limit=limit
        )
    finally:
        database.dispose()
    if json_output:
        console.print_json(data=listing.model_dump(mode="json"))
    else:
        console.print(_dead_letter_table(listing.dead_letters))


@outbox_app.command("redeliver")
def outbox_redeliver(
    message_id: Annotated[str | None, typer.Option("--message-id", help="This message's.")] = None,
    destination: Annotated[str | None, typer.Option(help="This destination's.")] = None,
    tenant: Annotated[str | None, typer.Option(help="This tenant's.")] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every dead letter (needed when nothing else is named).")
    ] = False,
    db: DbOption = None,
) -> None:
    """Put dead letters back in line: due now, with a fresh count of tries. A running worker
    delivers them at its next poll."""
    from fulfill.clock import SystemClock
    from fulfill.store.sql_store import SqlStore
    from fulfill.usecases import outbox
    from fulfill.usecases.errors import UseCaseError

    if not (message_id or destination or tenant or every):
        console.print("[red]name --message-id, --destination or --tenant, or pass --all[/red]")
        raise typer.Exit(2)
    database = _open_database(db)
    try:
        redelivered = outbox.redeliver(
            SqlStore(database),
            SystemClock(),
            outbox.RedeliverBody(message_id=message_id, destination=destination),
            tenant_id=tenant,
            platform=True,
            requested_by=CLI_CHANGED_BY,
        )
    except UseCaseError as exc:
        console.print(f"[red]{escape(exc.message)}[/red]")
        raise typer.Exit(1) from None
    finally:
        database.dispose()
    console.print(_dead_letter_table(redelivered.redelivered))
    console.print(f"redelivered {len(redelivered.redelivered)} deliveries")


@bench_app.command("load")
def bench_load(
    url: Annotated[
        str | None, typer.Option("--url", help="A running service; omit to start one in a subprocess.")
    ] = None,
    bearer: Annotated[str | None, typer.Option("--token", help="Bearer token for --url.")] = None,
    jwt_secret: Annotated[
        str | None, typer.Option("--jwt-secret", help="Mint a dev token for --url with this secret.")
    ] = None,
    tenant: Annotated[str, typer.Option(help="Tenant of the minted token.")] = "bench-load",
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="Database of the started service (default: temporary SQLite)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="0: one 'all' process; N: an 'api' process and N 'worker' processes.")
    ] = 0,
    rates: Annotated[
        str, typer.Option(help="Offered approvals/s of the open-loop runs, comma-separated.")
    ] = ("10,20,50,100"),
    seconds: Annotated[float, typer.Option(help="Length of each open-loop run.")] = 15.0,
    burst: Annotated[int, typer.Option(help="Approvals sent at once (0: skip).")] = 400,
    serial: Annotated[int, typer.Option(help="Approvals one at a time (0: skip).")] = 100,
    drain: Annotated[float, typer.Option(help="Seconds to wait for outcomes after the last send.")] = 60.0,
    floor: Annotated[bool, typer.Option(help="Also time the bare-DBOS floor in this process.")] = True,
    json_path: Annotated[str | None, typer.Option("--json", help="Write the results here.")] = None,
    append_doc: Annotated[
        bool, typer.Option("--append-doc", help="Append a dated section to docs/PERFORMANCE.md.")
    ] = False,
) -> None:
    """Open-loop, burst and one-at-a-time approval load, next to the bare-DBOS floor."""
    from pathlib import Path

    from fulfill import loadtest

    options = loadtest.LoadOptions(
        url=url,
        token=bearer,
        jwt_secret=jwt_secret,
        tenant=tenant,
        database_url=database_url,
        workers=workers,
        rates=[float(r) for r in rates.split(",") if r.strip()],
        seconds=seconds,
        burst=burst,
        serial=serial,
        drain=drain,
        floor=floor,
        json_path=Path(json_path) if json_path else None,
        append_doc=Path("docs/PERFORMANCE.md") if append_doc else None,
        command=loadtest.command_line(),
    )
    try:
        result = loadtest.run(options, console)
    except (RuntimeError, ValueError) as exc:
        raise CliError(str(exc)) from None
    loadtest.report(result, options, console)


def main() -> None:
    os.environ.setdefault("DBOS__DISABLE_TELEMETRY", "true")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
