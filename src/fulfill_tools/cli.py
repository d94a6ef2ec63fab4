"""The tooling's commands on the ``fulfill`` command line: ``demo``, ``e2e``, ``dev salesforce``
and ``bench load``.

The product's command line looks this module up by name (``fulfill.cli.tooling``): when it imports,
it calls :func:`register`, and ``fulfill serve --demo`` runs :func:`run_demo` once the service
answers. Names, options and output are the command line's own (README, docs/TESTING.md,
docs/PERFORMANCE.md).
"""

from __future__ import annotations

from typing import Annotated

import httpx
import typer
from rich.console import Console

from fulfill.cli.options import TokenOption, UrlOption, settings
from fulfill.cli.output import console
from fulfill.cli.remote import Service
from fulfill.config import Settings
from fulfill.explain import CliError

dev_commands = typer.Typer(
    help="Local stand-ins for external systems (development and tests).", no_args_is_help=True
)
bench_commands = typer.Typer(help="Benchmarks against a service in its own process.", no_args_is_help=True)


def run_demo(url: str, current: Settings, out: Console) -> bool:
    from fulfill_tools.demo import run_demo as run

    return run(url, current, out)


def register(app: typer.Typer) -> None:
    app.command()(demo)
    app.command()(e2e)
    app.add_typer(dev_commands, name="dev")
    app.add_typer(bench_commands, name="bench")


def demo(url: UrlOption = None) -> None:
    """Submit, approve and execute one internal task against a running service; print its status."""
    service = Service(url)
    try:
        ok = run_demo(service.base, settings(), console)
    except httpx.TransportError as exc:
        raise service.cannot_reach(exc, "Start it with `fulfill serve`, or point --url at it.") from None
    finally:
        service.close()
    if not ok:
        raise typer.Exit(1)


def e2e(
    url: Annotated[
        str | None,
        typer.Option("--url", envvar="FULFILL_URL", help="Service to verify; omit to start an embedded one."),
    ] = None,
    bearer: TokenOption = None,
    approver_token: Annotated[
        str | None,
        typer.Option(
            "--approver-token",
            envvar="FULFILL_APPROVER_TOKEN",
            help="Another person's token of the same tenant (intents:approve) for the approvals: nobody "
            "approves their own proposal. Default: the --token.",
        ),
    ] = None,
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
    from fulfill_tools.e2e import ConfigurationError, run_e2e, run_embedded

    try:
        if not url:
            if db:
                raise ConfigurationError("--db needs FULFILL_URL (the embedded run checks its own database)")
            ok = run_embedded(account, console, global_stop=global_stop)
        elif not bearer:
            raise ConfigurationError("FULFILL_URL is set but FULFILL_TOKEN is missing (--token)")
        else:
            ok = run_e2e(
                url,
                bearer,
                account,
                console,
                db_url=db,
                global_stop=global_stop,
                approver_token=approver_token,
            )
    except ConfigurationError as exc:
        console.print(f"[red]configuration error: {exc}[/red]")
        raise typer.Exit(2) from None
    if not ok:
        raise typer.Exit(1)


@dev_commands.command("salesforce")
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

    from fulfill_tools.dev.salesforce import DevSalesforce, DevSalesforceConfig, DevSalesforceServer

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


@bench_commands.command("load")
def bench_load(
    url: Annotated[
        str | None, typer.Option("--url", help="A running service; omit to start one in a subprocess.")
    ] = None,
    bearer: Annotated[str | None, typer.Option("--token", help="Bearer token for --url.")] = None,
    approver_token: Annotated[
        str | None,
        typer.Option(
            "--approver-token",
            help="Another subject's token of the same tenant for the approvals, with --token (nobody "
            "approves their own proposal); minted with --jwt-secret.",
        ),
    ] = None,
    jwt_secret: Annotated[
        str | None, typer.Option("--jwt-secret", help="Mint dev tokens for --url with this secret.")
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
    window: Annotated[
        float, typer.Option(min=0.1, help="Seconds of schedule per row of the open-loop window tables.")
    ] = 10.0,
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

    from fulfill_tools import loadtest

    options = loadtest.LoadOptions(
        url=url,
        token=bearer,
        approver_token=approver_token,
        jwt_secret=jwt_secret,
        tenant=tenant,
        database_url=database_url,
        workers=workers,
        rates=[float(r) for r in rates.split(",") if r.strip()],
        seconds=seconds,
        window=window,
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
