"""The ``fulfill`` command line.

Commands that talk to a running service (``intent``, ``approve``, ``status``, ``demo``) use its
HTTP API at ``--url`` (``FULFILL_URL``, default ``http://127.0.0.1:8080``) with a token minted from
``FULFILL_JWT_SECRET`` unless ``--token`` is given. Commands that operate the service
(``migrate``, ``kill-switch``, ``registry``, ``connectors``) work on the database directly, so an emergency stop
works even when the API does not; whoever can reach the database is a platform operator (over
HTTP the same changes need the ``platform:admin`` scope).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from fulfill.config import Settings

app = typer.Typer(help="fulfill: execute approved AI-agent actions exactly once.", no_args_is_help=True)
intent_app = typer.Typer(help="Submit action intents.", no_args_is_help=True)
kill_app = typer.Typer(
    help="Kill switches: take effect at the next check, no restart needed.", no_args_is_help=True
)
registry_app = typer.Typer(help="The action-type registry.", no_args_is_help=True)
connectors_app = typer.Typer(
    help="Flow control of connectors and remote targets: limits (shared by every process, applied "
    "without a restart) and circuit breakers.",
    no_args_is_help=True,
)
bench_app = typer.Typer(help="Benchmarks against a service in its own process.", no_args_is_help=True)
app.add_typer(intent_app, name="intent")
app.add_typer(bench_app, name="bench")
app.add_typer(kill_app, name="kill-switch")
app.add_typer(registry_app, name="registry")
app.add_typer(connectors_app, name="connectors")

console = Console()
# Every scope of a tenant's own work; ``admin`` manages that tenant only. What affects every
# tenant (the global kill switches, the registry) needs ``platform:admin`` instead.
ALL_SCOPES = "intents:write intents:read intents:approve events:write executions:read admin"

UrlOption = Annotated[str, typer.Option("--url", envvar="FULFILL_URL", help="Base URL of the service.")]
TenantOption = Annotated[str, typer.Option("--tenant", envvar="FULFILL_TENANT", help="Tenant id.")]
TokenOption = Annotated[
    str | None, typer.Option("--token", envvar="FULFILL_TOKEN", help="Bearer token to use.")
]


def _settings() -> Settings:
    return Settings()


def _token(tenant: str, token: str | None) -> str:
    if token:
        return token
    from fulfill.tokens import mint_token

    return mint_token(_settings(), tenant_id=tenant, scopes=ALL_SCOPES.split())


def _request(method: str, url: str, token: str, body: Any = None) -> Any:
    try:
        response = httpx.request(
            method, url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
        )
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach {url}: {type(exc).__name__}[/red]")
        raise typer.Exit(2) from None
    payload = response.json() if response.content else None
    if response.status_code >= 400:
        console.print_json(data=payload)
        raise typer.Exit(1)
    return payload


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
    from sqlalchemy.engine import make_url

    from fulfill.logging_setup import configure_logging
    from fulfill.server import build_server

    overrides: dict[str, Any] = {
        k: v for k, v in {"host": host, "port": port, "role": role}.items() if v is not None
    }
    settings = Settings(**overrides)
    configure_logging(settings.log_level)
    server, sock, bound = build_server(settings)
    database = make_url(bound.database_url).render_as_string(hide_password=True)
    console.print(f"fulfill serving on http://{bound.host}:{bound.port} (role {bound.role}, {database})")
    if demo:
        threading.Thread(target=_demo_when_ready, args=(server, bound), daemon=True).start()
    server.run(sockets=[sock])


def _demo_when_ready(server: Any, settings: Settings) -> None:
    import time

    from fulfill.demo import run_demo

    while not server.started:
        time.sleep(0.05)
    url = f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '::') else settings.host}:{settings.port}"  # noqa: S104
    try:
        run_demo(url, settings, console)
    except Exception as exc:
        console.print(f"[red]demo failed: {exc}[/red]")
    console.print(f"[green]the service keeps serving on {url}; press Ctrl+C to stop[/green]")


@app.command()
def demo(url: UrlOption = "http://127.0.0.1:8080") -> None:
    """Submit, approve and execute one internal task against a running service; print its status."""
    from fulfill.demo import run_demo

    if not run_demo(url, _settings(), console):
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
def migrate() -> None:
    """Create or upgrade the database schema and seed the default registry."""
    from fulfill.clock import SystemClock
    from fulfill.store.db import Database
    from fulfill.store.migrate import current_revision, upgrade_to_head
    from fulfill.usecases.registry import seed_default_registry

    database = Database(_settings().database_url)
    upgrade_to_head(database)
    seed_default_registry(database, SystemClock().now_iso())
    console.print(f"database at revision {current_revision(database)}")


@app.command()
def token(
    tenant: Annotated[str, typer.Option(help="Tenant id (the tenant_id claim).")],
    scopes: Annotated[
        str,
        typer.Option(
            help="Space-separated scopes. The default is every tenant scope, 'admin' (the tenant's "
            "own admin) included; add 'platform:admin' for what affects every tenant (the global "
            "kill switches, the registry): --scopes platform:admin."
        ),
    ] = ALL_SCOPES,
    account_ids: Annotated[
        str | None, typer.Option(help="Comma-separated account ids; omit for all.")
    ] = None,
    sub: Annotated[str, typer.Option(help="Subject (the sub claim).")] = "fulfill-cli",
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 3600,
) -> None:
    """Print a dev-mode (HS256) user token signed with FULFILL_JWT_SECRET.

    User tokens never open the MCP gateway (/mcp): only the engine's own service tokens do."""
    from fulfill.tokens import mint_token

    if _settings().auth_mode == "production":
        console.print("[red]FULFILL_AUTH_MODE=production: tokens come from your identity provider[/red]")
        raise typer.Exit(2)

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


@intent_app.command("submit")
def intent_submit(
    action_type: Annotated[str, typer.Option(help="e.g. CREATE_INTERNAL_TASK")],
    account: Annotated[str, typer.Option(help="Account id.")],
    tenant: TenantOption,
    param: Annotated[
        list[str] | None, typer.Option(help="key=value (repeatable); JSON values allowed.")
    ] = None,
    intent_id: Annotated[str | None, typer.Option(help="Client-chosen action_intent_id.")] = None,
    url: UrlOption = "http://127.0.0.1:8080",
    bearer: TokenOption = None,
) -> None:
    """Create an intent (PENDING_APPROVAL) and print it."""
    parameters: dict[str, Any] = {}
    for item in param or []:
        key, _, raw = item.partition("=")
        try:
            parameters[key] = json.loads(raw)
        except ValueError:
            parameters[key] = raw
    body: dict[str, Any] = {"action_type": action_type, "account_id": account, "parameters": parameters}
    if intent_id:
        body["action_intent_id"] = intent_id
    console.print_json(data=_request("POST", f"{url}/intents", _token(tenant, bearer), body))


@app.command()
def approve(
    action_intent_id: str,
    tenant: TenantOption,
    url: UrlOption = "http://127.0.0.1:8080",
    bearer: TokenOption = None,
) -> None:
    """Approve an intent: it executes right away."""
    console.print_json(
        data=_request("POST", f"{url}/intents/{action_intent_id}/approve", _token(tenant, bearer))
    )


@app.command()
def status(
    action_intent_id: str,
    tenant: TenantOption,
    url: UrlOption = "http://127.0.0.1:8080",
    bearer: TokenOption = None,
) -> None:
    """Print the execution status of an intent."""
    console.print_json(
        data=_request("GET", f"{url}/executions/{action_intent_id}/status", _token(tenant, bearer))
    )


def _database() -> Any:
    from fulfill.store.db import Database

    return Database(_settings().database_url)


@kill_app.command("show")
def kill_show(
    tenant: Annotated[str | None, typer.Option(help="Also show this tenant's switches.")] = None,
) -> None:
    """Show the global switches (and a tenant's)."""
    from fulfill.store import killswitches

    with _database().read() as conn:
        data: dict[str, Any] = {"global": killswitches.get_global(conn).model_dump()}
        if tenant:
            data["tenant"] = killswitches.get_tenant(conn, tenant).model_dump()
    data["environment_stop"] = _settings().global_execution_stop
    console.print_json(data=data)


@kill_app.command("global")
def kill_global(
    state: Annotated[str, typer.Argument(help="'stop' halts every execution; 'resume' lifts it.")],
) -> None:
    """Stop or resume every execution."""
    from fulfill.clock import SystemClock
    from fulfill.store import killswitches

    if state not in ("stop", "resume"):
        raise typer.BadParameter("use 'stop' or 'resume'")
    with _database().write() as conn:
        current = killswitches.get_global(conn, for_update=True)
        updated = killswitches.put_global(
            conn, current.model_copy(update={"global_stop": state == "stop"}), now=SystemClock().now_iso()
        )
    console.print_json(data=updated.model_dump())


@kill_app.command("tenant")
def kill_tenant(
    tenant_id: str, state: Annotated[str, typer.Argument(help="'stop' or 'resume' this tenant's executions.")]
) -> None:
    """Disable or enable execution for one tenant."""
    from fulfill.clock import SystemClock
    from fulfill.store import killswitches

    if state not in ("stop", "resume"):
        raise typer.BadParameter("use 'stop' or 'resume'")
    with _database().write() as conn:
        current = killswitches.get_tenant(conn, tenant_id, for_update=True)
        updated = killswitches.put_tenant(
            conn,
            current.model_copy(update={"execution_enabled": state == "resume"}),
            now=SystemClock().now_iso(),
        )
    console.print_json(data=updated.model_dump())


@kill_app.command("action-type")
def kill_action_type(
    action_type: str,
    state: Annotated[str, typer.Argument(help="'disable' or 'enable'.")],
    tenant: Annotated[str | None, typer.Option(help="Only for this tenant; omit for every tenant.")] = None,
) -> None:
    """Disable or enable one action type, globally or for one tenant."""
    from fulfill.clock import SystemClock
    from fulfill.store import killswitches

    if state not in ("disable", "enable"):
        raise typer.BadParameter("use 'disable' or 'enable'")
    now = SystemClock().now_iso()
    with _database().write() as conn:
        # Locked: two concurrent changes of different action types both stay.
        config: Any = (
            killswitches.get_tenant(conn, tenant, for_update=True)
            if tenant
            else killswitches.get_global(conn, for_update=True)
        )
        types = set(config.disabled_action_types)
        if state == "disable":
            types.add(action_type)
        else:
            types.discard(action_type)
        changed = config.model_copy(update={"disabled_action_types": sorted(types)})
        updated = (
            killswitches.put_tenant(conn, changed, now=now)
            if tenant
            else killswitches.put_global(conn, changed, now=now)
        )
    console.print_json(data=updated.model_dump())


@registry_app.command("list")
def registry_list(
    action_type: Annotated[str | None, typer.Option(help="Only this action type.")] = None,
) -> None:
    """List every registry version."""
    from fulfill.store import registry

    with _database().read() as conn:
        entries = registry.list_entries(conn, action_type)
    table = Table("action_type", "version", "tool", "compensation", "deprecated_at")
    for entry in entries:
        table.add_row(
            entry.action_type,
            str(entry.registry_version),
            entry.tool_name,
            entry.compensation_strategy.value,
            entry.deprecated_at or "",
        )
    console.print(table)


def _connector_table(views: list[Any]) -> Table:
    table = Table("name", "rate_per_second", "concurrency", "circuit", "failures", "opened_at", "updated_at")
    for view in views:
        table.add_row(
            view.name,
            "unlimited" if view.rate_per_second is None else f"{view.rate_per_second:g}",
            "unlimited" if view.concurrency is None else str(view.concurrency),
            view.circuit.state.value,
            str(view.circuit.failures),
            view.circuit.opened_at or "",
            view.updated_at or "(default)",
        )
    return table


@connectors_app.command("list")
def connectors_list(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every connector with stored limits or circuit state, and the built-in ones."""
    from fulfill.usecases import connectors

    views = connectors.list_connectors(_database(), _built_in_connectors())
    if json_output:
        console.print_json(data=[view.model_dump(mode="json") for view in views])
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
    from fulfill.usecases import connectors
    from fulfill.usecases.errors import UseCaseError

    database = _database()
    with database.read() as conn:
        current = stored.get_limits(conn, name).limits
    try:
        rate_value = current.rate_per_second if rate is None else _limit_number(rate, float, "--rate")
        concurrency_value = (
            current.concurrency if concurrency is None else _limit_number(concurrency, int, "--concurrency")
        )
        connectors.validated_limits(name, rate_value, concurrency_value)  # a clear message first
        body = connectors.ConnectorLimitsBody(rate_per_second=rate_value, concurrency=concurrency_value)
        view = connectors.put_limits(database, SystemClock(), name, body)
    except (UseCaseError, ValueError) as exc:
        message = exc.message if isinstance(exc, UseCaseError) else str(exc).splitlines()[0]
        console.print(f"[red]{message}[/red]")
        raise typer.Exit(2) from None
    console.print(_connector_table([view]))


def _limit_number(raw: str, kind: type[float] | type[int], option: str) -> Any:
    if raw.strip().lower() in ("none", "unlimited", "null"):
        return None
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{option} must be a number or 'none' (got {raw!r})") from None


def _built_in_connectors() -> set[str]:
    from fulfill.clock import SystemClock
    from fulfill.connectors.internal import InternalConnector
    from fulfill.domain.flowcontrol import connector_of

    return {connector_of(tool.name) for tool in InternalConnector(_database(), SystemClock()).tools()}


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
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    loadtest.report(result, options, console)


def main() -> None:
    os.environ.setdefault("DBOS__DISABLE_TELEMETRY", "true")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
