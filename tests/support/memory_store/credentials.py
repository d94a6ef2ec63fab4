"""``uow.credentials`` in memory: not held. The steps and use cases tested in memory do not touch
connector credentials; every method says so when called."""

from __future__ import annotations

from typing import Any

from fulfill.domain.records import SealedCredential

_NOT_HELD = "the in-memory store does not hold connector credentials"


class MemoryCredentialsRepository:
    def __init__(self, tables: object) -> None:
        self._t = tables

    def get(
        self, tenant_id: str, account_id: str, connector: str, *, for_update: bool = ...
    ) -> SealedCredential | None:
        raise NotImplementedError(_NOT_HELD)

    def resolve(self, tenant_id: str, account_id: str, connector: str) -> SealedCredential | None:
        raise NotImplementedError(_NOT_HELD)

    def list_for_tenant(self, tenant_id: str, connector: str | None = ...) -> list[SealedCredential]:
        raise NotImplementedError(_NOT_HELD)

    def put(self, values: dict[str, Any], *, now: str) -> tuple[SealedCredential, bool]:
        raise NotImplementedError(_NOT_HELD)

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
        raise NotImplementedError(_NOT_HELD)

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
        raise NotImplementedError(_NOT_HELD)

    def reseal(
        self, tenant_id: str, account_id: str, connector: str, *, old: str, new: str, key_id: str
    ) -> bool:
        raise NotImplementedError(_NOT_HELD)

    def remove(self, tenant_id: str, account_id: str, connector: str) -> bool:
        raise NotImplementedError(_NOT_HELD)

    def count(self) -> int:
        raise NotImplementedError(_NOT_HELD)

    def key_ids_in_use(self) -> set[str]:
        raise NotImplementedError(_NOT_HELD)

    def all_rows(self) -> list[SealedCredential]:
        raise NotImplementedError(_NOT_HELD)

    def take_refresh_lease(
        self, tenant_id: str, account_id: str, connector: str, *, owner: str, now: float, until: float
    ) -> bool:
        raise NotImplementedError(_NOT_HELD)

    def release_refresh_lease(self, tenant_id: str, account_id: str, connector: str, owner: str) -> None:
        raise NotImplementedError(_NOT_HELD)
