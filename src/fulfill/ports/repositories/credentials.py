"""Stored connector credentials, secrets sealed: the repository port (``store/credentials.py`` implements it over SQL)."""

from __future__ import annotations

from typing import Any, Protocol

from fulfill.domain.records import SealedCredential


class CredentialsRepository(Protocol):
    def get(
        self, tenant_id: str, account_id: str, connector: str, *, for_update: bool = ...
    ) -> SealedCredential | None: ...

    def resolve(self, tenant_id: str, account_id: str, connector: str) -> SealedCredential | None:
        """The account's own credential, else the tenant-wide one, else None."""
        ...

    def list_for_tenant(self, tenant_id: str, connector: str | None = ...) -> list[SealedCredential]: ...

    def put(self, values: dict[str, Any], *, now: str) -> tuple[SealedCredential, bool]:
        """Create or replace one credential; True when it was created. A replacement keeps
        ``created_at`` and counts one more ``revision``."""
        ...

    def replace_secret(
        self,
        tenant_id: str,
        account_id: str,
        connector: str,
        *,
        ciphertext: str,
        key_id: str,
        secret_fields: str,
        now: str,
    ) -> bool:
        """An admin's new secrets: one more ``revision`` (cached access tokens of the old one go)."""
        ...

    def store_server_rotation(
        self,
        tenant_id: str,
        account_id: str,
        connector: str,
        *,
        ciphertext: str,
        key_id: str,
        now: str,
        lease_owner: str,
    ) -> bool:
        """The refresh token the OAuth server issued in exchange for the stored one, written by the
        holder of the refresh lease only. The ``revision`` stays: the credential is the same one."""
        ...

    def reseal(
        self, tenant_id: str, account_id: str, connector: str, *, old: str, new: str, key_id: str
    ) -> bool:
        """The same secrets sealed with another key (only if nobody changed them meanwhile)."""
        ...

    def remove(self, tenant_id: str, account_id: str, connector: str) -> bool: ...

    def count(self) -> int: ...

    def key_ids_in_use(self) -> set[str]: ...

    def all_rows(self) -> list[SealedCredential]: ...

    def take_refresh_lease(
        self, tenant_id: str, account_id: str, connector: str, *, owner: str, now: float, until: float
    ) -> bool:
        """Become the one exchanging this credential's refresh token, unless someone else holds a
        lease that has not run out."""
        ...

    def release_refresh_lease(self, tenant_id: str, account_id: str, connector: str, owner: str) -> None: ...
