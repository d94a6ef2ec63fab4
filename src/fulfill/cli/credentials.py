"""``fulfill credentials``: connector credentials on the database, sealed with
``FULFILL_SECRETS_KEY``; secrets are read from files or a hidden prompt, never printed."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from fulfill.cli.operators import on_database
from fulfill.cli.options import settings
from fulfill.cli.output import console

if TYPE_CHECKING:
    from fulfill.credentials.vault import CredentialVault

T = TypeVar("T")

commands = typer.Typer(
    help="Connector credentials, encrypted with FULFILL_SECRETS_KEY (secrets are never printed).",
    no_args_is_help=True,
)


def _on_vault(call: Callable[[CredentialVault], T]) -> T:
    """``call`` with the credential vault of the database; a refusal ends the command in one line."""
    from fulfill.usecases.errors import UseCaseError

    with on_database() as operator:
        try:
            return call(operator.credential_vault())
        except UseCaseError as exc:
            console.print(f"[red]{exc.message}[/red]")
            raise typer.Exit(1) from None


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


ConnectorArgument = Annotated[str, typer.Argument(help="The connector, e.g. salesforce.")]
AccountOption = Annotated[
    str | None, typer.Option("--account", help="An account's own credential; omit for the tenant-wide one.")
]
CredentialTenant = Annotated[str, typer.Option("--tenant", help="Tenant id.")]


@commands.command("set")
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
    stored, created = _on_vault(
        lambda vault: credentials.put_credential(
            vault, tenant, connector, account, parsed, login_policy=settings().salesforce_login_policy
        )
    )
    console.print(f"{'created' if created else 'replaced'}:")
    console.print_json(data=stored.model_dump())


@commands.command("list")
def credentials_list(tenant: CredentialTenant) -> None:
    """The tenant's credentials (metadata only)."""
    from fulfill.usecases import credentials

    listed = _on_vault(lambda vault: credentials.list_credentials(vault, tenant))
    console.print_json(data={"credentials": [item.model_dump() for item in listed]})


@commands.command("rotate")
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
    stored = _on_vault(
        lambda vault: credentials.rotate_credential(vault, tenant, connector, account, rotation)
    )
    console.print_json(data=stored.model_dump())


@commands.command("delete")
def credentials_delete(
    connector: ConnectorArgument, tenant: CredentialTenant, account: AccountOption = None
) -> None:
    """Delete a credential."""
    from fulfill.usecases import credentials

    _on_vault(lambda vault: credentials.delete_credential(vault, tenant, connector, account))
    console.print("deleted")


@commands.command("new-key")
def credentials_new_key() -> None:
    """Print a new random FULFILL_SECRETS_KEY."""
    from fulfill.credentials.crypto import new_key

    typer.echo(new_key())


@commands.command("rekey")
def credentials_rekey() -> None:
    """Re-encrypt every stored secret (connector credentials, gateway target secrets, the
    notification channels' secrets) with the first key of FULFILL_SECRETS_KEY (after a key
    rotation: new key first, old key after it; drop the old one once this has run)."""
    from fulfill.credentials.crypto import SecretsKeyError
    from fulfill.usecases.notifications import rekey_secrets

    with on_database() as operator:
        try:
            changed = operator.credential_vault().rekey()
            targets = operator.target_secrets().rekey()
            channels = rekey_secrets(operator.store, operator.settings)
        except SecretsKeyError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
    console.print(f"{changed} credential(s) and {targets} gateway target secret(s) re-encrypted")
    console.print(f"{channels} notification channel secret(s) re-encrypted")
