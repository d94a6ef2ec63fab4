"""``fulfill ledger``: verify a tenant's ledger, checkpoint it, make a signing key. Through the
service's API when --url or FULFILL_URL is given (the tenant's ``admin`` scope), else on the
database (--db, else FULFILL_DATABASE_URL), with the public keys this shell's settings name."""

from __future__ import annotations

import base64
from typing import Annotated, Any

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from fulfill.cli.auth import bearer_token
from fulfill.cli.operators import ApiOperator, on_database
from fulfill.cli.options import DbOption, TokenOption, UrlOption
from fulfill.cli.output import console, err_console
from fulfill.domain.ledger_chain import key_id_of, public_key_b64
from fulfill.domain.scopes import Scope

commands = typer.Typer(
    help="The tamper-evident ledger: verify it, sign a checkpoint now, make a signing key. Through the "
    "service's API when --url or FULFILL_URL is given, else on the database (--db, else "
    "FULFILL_DATABASE_URL).",
    no_args_is_help=True,
)
LedgerTenant = Annotated[str, typer.Option("--tenant", envvar="FULFILL_TENANT", help="Whose ledger.")]


def _on_api(url: str | None, db: str | None) -> bool:
    return bool(url) and not db


@commands.command("verify")
def ledger_verify(
    tenant: LedgerTenant,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Check the tenant's ledger against its signed checkpoints; exit 1 when it is not intact."""
    result: dict[str, Any]
    if _on_api(url, db):
        operator = ApiOperator(url, None)
        try:
            token = bearer_token(tenant, bearer, Scope.ADMIN)
            result = operator.service.call(token, lambda api: api.ledger_verify())
        finally:
            operator.close()
    else:
        from fulfill.usecases.ledger import verify_store

        with on_database(db) as database:
            result = verify_store(database.store, database.settings, tenant)
    console.print_json(data=result)
    if not result["intact"]:
        bad = result["first_bad_entry"] or {}
        err_console.print(
            f"NOT INTACT: entry {bad.get('entry_id')} at position {bad.get('position')}: {bad.get('problem')}"
        )
        raise typer.Exit(1)


@commands.command("checkpoint")
def ledger_checkpoint(
    tenant: LedgerTenant,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Sign the entries appended since the tenant's last checkpoint (FULFILL_LEDGER_SIGNING_KEY)."""
    if _on_api(url, db):
        operator = ApiOperator(url, None)
        try:
            token = bearer_token(tenant, bearer, Scope.ADMIN)
            made = operator.service.call(token, lambda api: api.ledger_checkpoint())
        finally:
            operator.close()
    else:
        from fulfill.usecases.ledger import checkpoint_store

        with on_database(db) as database:
            checkpoint, _ = checkpoint_store(
                database.store, database.settings, tenant, now_epoch=database.clock.now()
            )
            made = checkpoint.summary()
    console.print_json(data=made)


@commands.command("new-key")
def ledger_new_key() -> None:
    """Print a new Ed25519 signing key (base64 seed) for FULFILL_LEDGER_SIGNING_KEY; its key id and
    public half go to stderr (publish the public half in FULFILL_LEDGER_PUBLIC_KEYS after a rotation)."""
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    console.print(base64.b64encode(seed).decode(), highlight=False)
    err_console.print(f"key id {key_id_of(key.public_key())}, public key {public_key_b64(key.public_key())}")
