"""Bearer tokens: the one a command was given, or one minted from ``FULFILL_JWT_SECRET``; and
``fulfill token``, which prints one."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from fulfill.cli.options import settings
from fulfill.domain.scopes import TENANT_SCOPES, Scope, spelled
from fulfill.explain import CliError

# Every scope of a tenant's own work; ``admin`` manages that tenant only. What affects every
# tenant (the global kill switches, the registry) needs ``platform:admin`` instead.
ALL_SCOPES = spelled(TENANT_SCOPES)
PLATFORM_ADMIN = Scope.PLATFORM_ADMIN
MAX_TOKEN_TTL_SECONDS = 366 * 24 * 3600
# The subjects of the tokens the client commands mint: `intent submit` proposes as one, `approve`
# approves as another, since nobody approves a proposal made with their own subject.
PROPOSER_SUBJECT = "fulfill-cli"
APPROVER_SUBJECT = "fulfill-cli-approver"

# The tokens this command minted itself, so that a refusal can say where its token came from.
_minted: set[str] = set()


def bearer_token(
    tenant: str, token: str | None, scopes: str = ALL_SCOPES, *, subject: str = PROPOSER_SUBJECT
) -> str:
    """``token`` when one was given, else a dev token for ``tenant`` with ``scopes``, for
    ``subject``."""
    if token:
        return token
    from fulfill.tokens import mint_token

    current = settings()
    if current.auth_mode == "production":
        raise CliError(
            "FULFILL_AUTH_MODE=production: tokens come from your identity provider; pass one with "
            "--token or FULFILL_TOKEN",
            exit_code=2,
        )
    minted = mint_token(current, tenant_id=tenant, scopes=scopes.split(), subject=subject)
    _minted.add(minted)
    return minted


def token_source(token: str) -> str:
    """Where the bearer token of a refused call came from: an exported ``FULFILL_TOKEN`` wins over
    a minted one, even for another service's --url, and a 403 alone would not say so."""
    if token == os.environ.get("FULFILL_TOKEN"):
        return "FULFILL_TOKEN; unset it to mint one from FULFILL_JWT_SECRET"
    if token in _minted:
        return "a token minted from FULFILL_JWT_SECRET"
    return "--token"


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
    sub: Annotated[str, typer.Option(help="Subject (the sub claim).")] = PROPOSER_SUBJECT,
    act: Annotated[
        str | None,
        typer.Option(
            "--act",
            help='An agent\'s token: the agent acting for --sub (an RFC 8693 act claim {"sub": ACT}). '
            "It may propose, never approve or reject.",
        ),
    ] = None,
    agent: Annotated[
        bool, typer.Option("--agent", help="An agent's token acting as itself: the same as --act SUB.")
    ] = False,
    ttl: Annotated[
        int, typer.Option(help="Lifetime in seconds (1 to one year).", min=1, max=MAX_TOKEN_TTL_SECONDS)
    ] = 3600,
) -> None:
    """Print a dev-mode (HS256) user token signed with FULFILL_JWT_SECRET.

    User tokens never open the MCP gateway (/mcp): only the engine's own service tokens do. With
    --agent or --act the token is an agent's: it proposes, and a person approves."""
    from fulfill.tokens import mint_token

    if settings().auth_mode == "production":
        raise CliError("FULFILL_AUTH_MODE=production: tokens come from your identity provider", exit_code=2)
    if not tenant.strip():
        raise typer.BadParameter("must not be empty", param_hint="--tenant")
    if act is not None and not act.strip():
        raise typer.BadParameter("must not be empty", param_hint="--act")
    if agent and act is not None and act != sub:
        raise typer.BadParameter(
            "--agent is --act with the subject itself: give one of them", param_hint="--agent"
        )
    accounts = [a.strip() for a in account_ids.split(",") if a.strip()] if account_ids is not None else None
    typer.echo(
        mint_token(
            settings(),
            tenant_id=tenant,
            scopes=scopes.split(),
            account_ids=accounts,
            subject=sub,
            actor=act if act is not None else (sub if agent else None),
            ttl_seconds=ttl,
        )
    )
