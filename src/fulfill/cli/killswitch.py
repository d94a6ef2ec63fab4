"""``fulfill kill-switch``: the global switches and a tenant's, through the API or on the
database (see ``operators.py``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import typer

from fulfill.cli.operators import operator_for
from fulfill.cli.options import DbOption, TokenOption, UrlOption
from fulfill.cli.output import console, err_console
from fulfill.domain.killswitch import GLOBAL_SCOPE, KillSwitchScope, SwitchSettings
from fulfill.explain import CliError

commands = typer.Typer(
    help="Kill switches: take effect at the next check, no restart needed. Through the service's API "
    "when --url or FULFILL_URL is given, else on the database (--db, else FULFILL_DATABASE_URL).",
    no_args_is_help=True,
)


@commands.command("show")
def kill_show(
    tenant: Annotated[str | None, typer.Option(help="Also show this tenant's switches.")] = None,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Show the global switches (and a tenant's)."""
    with operator_for(url, db, bearer) as operator:
        board = operator.switch_board(tenant)
        shown: dict[str, Any] = {"global": operator.shown(board.global_switches)}
        if board.tenant_switches is not None:
            shown["tenant"] = operator.shown(board.tenant_switches)
    if board.environment_stop is not None:
        shown["environment_stop"] = board.environment_stop
    console.print_json(data=shown)


@commands.command("global")
def kill_global(
    state: Annotated[str, typer.Argument(help="'stop' halts every execution; 'resume' lifts it.")],
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Stop or resume every execution."""
    _stop_or_resume(GLOBAL_SCOPE, state, url, db, bearer)


@commands.command("tenant")
def kill_tenant(
    tenant_id: str,
    state: Annotated[str, typer.Argument(help="'stop' or 'resume' this tenant's executions.")],
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Disable or enable execution for one tenant."""
    _stop_or_resume(KillSwitchScope.of_tenant(tenant_id), state, url, db, bearer)


def _stop_or_resume(
    scope: KillSwitchScope, state: str, url: str | None, db: str | None, bearer: str | None
) -> None:
    if state not in ("stop", "resume"):
        raise typer.BadParameter("use 'stop' or 'resume'", param_hint="STATE")
    with operator_for(url, db, bearer) as operator:
        stored = operator.change_switches(scope, lambda current: replace(current, stopped=state == "stop"))
        console.print_json(data=operator.shown(stored))


@commands.command("action-type")
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
    scope = KillSwitchScope.of_tenant(tenant) if tenant else GLOBAL_SCOPE
    with operator_for(url, db, bearer) as operator:
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

        def change(current: SwitchSettings) -> SwitchSettings:
            types = set(current.disabled_action_types)
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
            return replace(current, disabled_action_types=tuple(sorted(types)))

        console.print_json(data=operator.shown(operator.change_switches(scope, change)))
