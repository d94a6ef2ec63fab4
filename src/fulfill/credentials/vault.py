"""The one place that seals and opens connector secrets.

Admins write credentials through the API or the CLI (``usecases/credentials.py``), connectors read
them (``credentials/oauth.py``); both go through a :class:`CredentialVault`, which encrypts with
the ``FULFILL_SECRETS_KEY`` box and binds every ciphertext to its row. A read for display
(:meth:`metadata`) never opens the secrets at all.
"""

from __future__ import annotations

import json

from pydantic import SecretStr

from fulfill.credentials.crypto import SecretBox, SecretsKeyError
from fulfill.domain.credentials import (
    SECRET_FIELDS,
    TENANT_WIDE,
    ClientCredentialsInput,
    CredentialMetadata,
    CredentialType,
    JwtBearerInput,
    RefreshTokenInput,
    StoredCredential,
)
from fulfill.domain.ports import Clock
from fulfill.domain.records import SealedCredential
from fulfill.store import credentials as store
from fulfill.store.db import Database


class ConfigurationError(RuntimeError):
    """The service cannot start as configured (the message says what to set)."""


def _associated_data(tenant_id: str, account_id: str, connector: str) -> bytes:
    return json.dumps(["fulfill-credential", tenant_id, account_id, connector]).encode()


def metadata(row: SealedCredential) -> CredentialMetadata:
    credential_type = CredentialType(row.credential_type)
    return CredentialMetadata(
        connector=row.connector,
        account_id=row.account_id or None,
        type=credential_type,
        client_id=row.client_id,
        username=row.username,
        login_url=row.login_url,
        audience=row.audience,
        secret_fields=[name for name in row.secret_fields.split(",") if name],
        created_at=row.created_at,
        updated_at=row.updated_at,
        rotated_at=row.rotated_at,
        refresh_token_rotated_at=row.refresh_token_rotated_at,
        revision=row.revision,
    )


class CredentialVault:
    def __init__(self, db: Database, box: SecretBox, clock: Clock) -> None:
        self._db = db
        self._box = box
        self._clock = clock

    @property
    def configured(self) -> bool:
        return self._box.configured

    @property
    def box(self) -> SecretBox:
        return self._box

    # --- admin writes -----------------------------------------------------------------------

    def put(
        self,
        tenant_id: str,
        account_id: str | None,
        connector: str,
        body: ClientCredentialsInput | JwtBearerInput | RefreshTokenInput,
    ) -> tuple[CredentialMetadata, bool]:
        account = account_id or TENANT_WIDE
        secrets = {
            name: secret.get_secret_value()
            for name in SECRET_FIELDS[body.type]
            if (secret := getattr(body, name, None)) is not None
        }
        values = {
            "tenant_id": tenant_id,
            "account_id": account,
            "connector": connector,
            "credential_type": body.type.value,
            "client_id": body.client_id,
            "username": getattr(body, "username", None),
            "login_url": body.login_url,
            "audience": getattr(body, "audience", None),
            **self._seal(tenant_id, account, connector, secrets),
        }
        with self._db.write() as conn:
            row, created = store.put(conn, values, now=self._clock.now_iso())
        return metadata(row), created

    def rotate(
        self, tenant_id: str, account_id: str | None, connector: str, new_secrets: dict[str, str]
    ) -> CredentialMetadata | None:
        """Replace some secrets of a stored credential; None when there is none. Raises
        ValueError when the fields are not the credential type's."""
        account = account_id or TENANT_WIDE
        with self._db.write() as conn:
            row = store.get(conn, tenant_id, account, connector, for_update=True)
            if row is None:
                return None
            credential_type = CredentialType(row.credential_type)
            allowed = SECRET_FIELDS[credential_type]
            unexpected = sorted(set(new_secrets) - set(allowed))
            if unexpected or not new_secrets:
                raise ValueError(
                    f"a {credential_type.value} credential rotates {' and/or '.join(allowed)}"
                    + (f", not {', '.join(unexpected)}" if unexpected else "")
                )
            secrets = {**self._open(row), **new_secrets}
            sealed = self._seal(tenant_id, account, connector, secrets)
            store.replace_secret(
                conn,
                tenant_id,
                account,
                connector,
                ciphertext=sealed["secret_ciphertext"],
                key_id=sealed["key_id"],
                secret_fields=sealed["secret_fields"],
                now=self._clock.now_iso(),
            )
            updated = store.get(conn, tenant_id, account, connector)
        assert updated is not None
        return metadata(updated)

    def delete(self, tenant_id: str, account_id: str | None, connector: str) -> bool:
        with self._db.write() as conn:
            return store.remove(conn, tenant_id, account_id or TENANT_WIDE, connector)

    def list(self, tenant_id: str, connector: str | None = None) -> list[CredentialMetadata]:
        with self._db.read() as conn:
            return [metadata(row) for row in store.list_for_tenant(conn, tenant_id, connector)]

    def rekey(self) -> int:
        """Seal every stored secret with the first configured key; returns how many changed."""
        changed = 0
        with self._db.read() as conn:
            rows = store.all_rows(conn)
        for row in rows:
            if row.key_id == self._box.primary_key_id:
                continue
            secrets = self._open(row)
            sealed = self._seal(row.tenant_id, row.account_id, row.connector, secrets)
            with self._db.write() as conn:
                if store.reseal(
                    conn,
                    row.tenant_id,
                    row.account_id,
                    row.connector,
                    old=row.secret_ciphertext,
                    new=sealed["secret_ciphertext"],
                    key_id=sealed["key_id"],
                ):
                    changed += 1
        return changed

    # --- connector reads ----------------------------------------------------------------------

    def locate(self, tenant_id: str, account_id: str, connector: str) -> tuple[str, int] | None:
        """Which stored credential applies to an account (its account key and revision), without
        opening any secret; None when there is none."""
        with self._db.read() as conn:
            row = store.resolve(conn, tenant_id, account_id, connector)
        return (row.account_id, row.revision) if row is not None else None

    def open(self, tenant_id: str, account_key: str, connector: str) -> StoredCredential | None:
        """One stored credential (``account_key`` as :meth:`locate` returned it), secrets opened."""
        with self._db.read() as conn:
            row = store.get(conn, tenant_id, account_key, connector)
        if row is None:
            return None
        return StoredCredential(
            tenant_id=row.tenant_id,
            account_id=row.account_id,
            connector=row.connector,
            type=CredentialType(row.credential_type),
            client_id=row.client_id,
            username=row.username,
            login_url=row.login_url,
            audience=row.audience,
            secrets={name: SecretStr(value) for name, value in self._open(row).items()},
            revision=row.revision,
        )

    def take_refresh_lease(self, credential: StoredCredential, owner: str, seconds: float) -> bool:
        now = self._clock.now()
        with self._db.write() as conn:
            return store.take_refresh_lease(
                conn,
                credential.tenant_id,
                credential.account_id,
                credential.connector,
                owner=owner,
                now=now,
                until=now + seconds,
            )

    def release_refresh_lease(self, credential: StoredCredential, owner: str) -> None:
        with self._db.write() as conn:
            store.release_refresh_lease(
                conn, credential.tenant_id, credential.account_id, credential.connector, owner
            )

    def store_rotated_refresh_token(
        self, credential: StoredCredential, refresh_token: str, owner: str
    ) -> bool:
        secrets = {name: value.get_secret_value() for name, value in credential.secrets.items()}
        secrets["refresh_token"] = refresh_token
        sealed = self._seal(credential.tenant_id, credential.account_id, credential.connector, secrets)
        with self._db.write() as conn:
            return store.store_server_rotation(
                conn,
                credential.tenant_id,
                credential.account_id,
                credential.connector,
                ciphertext=sealed["secret_ciphertext"],
                key_id=sealed["key_id"],
                now=self._clock.now_iso(),
                lease_owner=owner,
            )

    # --- sealing ------------------------------------------------------------------------------

    def _seal(
        self, tenant_id: str, account_id: str, connector: str, secrets: dict[str, str]
    ) -> dict[str, str]:
        plaintext = json.dumps(secrets, sort_keys=True).encode()
        ciphertext = self._box.seal(plaintext, _associated_data(tenant_id, account_id, connector))
        # Which fields are sealed is kept in clear, so that reads never need to open anything.
        return {
            "secret_ciphertext": ciphertext,
            "key_id": self._box.primary_key_id,
            "secret_fields": ",".join(sorted(secrets)),
        }

    def _open(self, row: SealedCredential) -> dict[str, str]:
        plaintext = self._box.open(
            row.secret_ciphertext, _associated_data(row.tenant_id, row.account_id, row.connector)
        )
        value = json.loads(plaintext)
        if not isinstance(value, dict):
            raise SecretsKeyError("a stored secret is not in a known format")
        return {str(k): str(v) for k, v in value.items()}


def check_secrets_key(db: Database, box: SecretBox) -> None:
    """At start-up: credentials are stored, so FULFILL_SECRETS_KEY must be set and hold every key
    they were sealed with. Never a plaintext fallback."""
    with db.read() as conn:
        if store.count(conn) == 0:
            return
        rows = store.all_rows(conn)
    unreadable = [row for row in rows if row.key_id not in box.key_ids]
    if not box.configured:
        raise ConfigurationError(
            "connector credentials are stored in the database but FULFILL_SECRETS_KEY is not set: "
            "set it to the key they were encrypted with (fulfill never reads them as plaintext)"
            + _way_out(unreadable)
        )
    missing = sorted({str(row.key_id) for row in unreadable})
    if missing:
        raise ConfigurationError(
            f"connector credentials were encrypted with key(s) {', '.join(missing)}, which "
            "FULFILL_SECRETS_KEY does not hold: add the old key after the new one, then run "
            "`fulfill credentials rekey`" + _way_out(unreadable)
        )


def _way_out(unreadable: list[SealedCredential]) -> str:
    """How to start again without the old key: the credentials it sealed are lost, so they are
    deleted (the commands work without the key) and stored again."""
    commands = [
        f"fulfill credentials delete {row.connector} --tenant {row.tenant_id}"
        + (f" --account {row.account_id}" if row.account_id else "")
        for row in unreadable[:_SHOWN]
    ]
    more = (
        f" (and {len(unreadable) - _SHOWN} more: `fulfill credentials list --tenant …`)"
        if len(unreadable) > _SHOWN
        else ""
    )
    return (
        ". Old key lost? Those credentials cannot be read without it: delete them with `"
        + "`, `".join(commands)
        + f"`{more}, then store them again with `fulfill credentials set`"
    )


_SHOWN = 3  # commands named in a start-up error; the rest are counted
