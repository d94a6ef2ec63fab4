"""``fulfill ledger``: verify a tenant's ledger, checkpoint it, make a signing key. Through the
service's API when --url or FULFILL_URL is given (the tenant's ``admin`` scope), else on the
database (--db, else FULFILL_DATABASE_URL), with the public keys this shell's settings name."""

from __future__ import annotations

import base64
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from fulfill.cli.auth import bearer_token
from fulfill.cli.operators import ApiOperator, on_database
from fulfill.cli.options import DbOption, TokenOption, UrlOption, settings
from fulfill.cli.output import console, err_console
from fulfill.domain.ledger_chain import key_id_of, public_key_b64
from fulfill.domain.scopes import Scope
from fulfill.explain import CliError

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
    tenant: Annotated[
        str | None, typer.Option("--tenant", envvar="FULFILL_TENANT", help="Whose ledger (not with --file).")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Verify this export (JSON Lines) offline, with the public keys only."),
    ] = None,
    keys: Annotated[
        Path | None,
        typer.Option(
            "--keys",
            help="With --file: a fulfill-ledger-keys.json document (default: the keys of this shell's "
            "FULFILL_LEDGER_SIGNING_KEY and FULFILL_LEDGER_PUBLIC_KEYS).",
        ),
    ] = None,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Check a ledger against its signed checkpoints; exit 1 when it is not intact."""
    result: dict[str, Any]
    if file is not None:
        result = _verify_file(file, keys)
    elif tenant is None:
        raise typer.BadParameter("name the tenant (--tenant) or an export (--file)", param_hint="--tenant")
    elif _on_api(url, db):
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


def _verify_file(file: Path, keys: Path | None) -> dict[str, Any]:
    from fulfill.domain.ledger_chain import ExportError, LedgerKeyError, keys_from_document, verify_export
    from fulfill.usecases.ledger import public_keys

    try:
        published = keys_from_document(json.loads(keys.read_text(encoding="utf-8"))) if keys else None
        with file.open(encoding="utf-8") as handle:
            lines = (json.loads(line) for line in handle if line.strip())
            return verify_export(lines, published if published is not None else public_keys(settings()))
    except OSError as exc:
        raise CliError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except (json.JSONDecodeError, ExportError, LedgerKeyError, KeyError) as exc:
        raise CliError(f"not a ledger export or keys document: {exc}") from None


@commands.command("export")
def ledger_export(
    tenant: LedgerTenant,
    since: Annotated[int, typer.Option(help="The last position already exported (0: from the start).")] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", help="Append the records to this file (default: stdout).")
    ] = None,
    url: UrlOption = None,
    db: DbOption = None,
    bearer: TokenOption = None,
) -> None:
    """Export whole signed checkpoints after --since, with their entries, as JSON Lines; the next
    export's --since goes to stderr."""
    if _on_api(url, db):
        operator = ApiOperator(url, None)
        try:
            token = bearer_token(tenant, bearer, Scope.ADMIN)
            text = operator.service.call(token, lambda api: api.ledger_export(since))
        finally:
            operator.close()
        last = _write(out, (json.loads(line) for line in text.splitlines() if line.strip()), since)
    else:
        from fulfill.usecases.ledger import iter_export

        with on_database(db) as database:
            last = _write(out, iter_export(database.store, tenant, since), since)
    err_console.print(f"next export: --since {last}")


def _write(out: Path | None, lines: Iterator[dict[str, Any]], since: int) -> int:
    """Write the records as they come; the last checkpoint's last position (or ``since``)."""
    last = since
    with contextlib.ExitStack() as stack:
        handle: IO[str] = sys.stdout if out is None else stack.enter_context(out.open("a", encoding="utf-8"))
        for line in lines:
            handle.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
            if line["kind"] == "checkpoint":
                last = max(last, int(line["last_position"]))
    return last


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
