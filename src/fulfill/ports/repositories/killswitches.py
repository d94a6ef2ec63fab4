"""Stored kill switches: one global row and one row per tenant: the repository port (``store/killswitches.py`` implements it over SQL)."""

from __future__ import annotations

from typing import Protocol

from fulfill.domain.killswitch import KillSwitchScope, StoredSwitches, SwitchSettings
from fulfill.domain.models import GlobalExecutionConfig, TenantExecutionConfig
from fulfill.domain.records import StoredGlobalConfig, StoredTenantConfig, TenantSwitchSummary


class KillSwitchesRepository(Protocol):
    def get_switches(self, scope: KillSwitchScope, *, for_update: bool = ...) -> StoredSwitches:
        """A scope's switches (missing row: nothing stopped, revision 0); ``for_update`` locks the
        row for a read-modify-write in this transaction (creating it, with the defaults, when it
        does not exist yet)."""
        ...

    def put_switches(self, scope: KillSwitchScope, settings: SwitchSettings, *, now: str) -> StoredSwitches:
        """Replace a scope's switches atomically; returns what was stored, with its revision."""
        ...

    def get_global(self, *, for_update: bool = ...) -> StoredGlobalConfig:
        """The global switches; ``for_update`` locks the row for a read-modify-write in this
        transaction (creating it, with the defaults, when it does not exist yet)."""
        ...

    def put_global(self, config: GlobalExecutionConfig, *, now: str) -> StoredGlobalConfig:
        """Replace the global switches atomically; returns what was stored, with its revision."""
        ...

    def get_tenant(self, tenant_id: str, *, for_update: bool = ...) -> StoredTenantConfig:
        """A tenant's switches; ``for_update`` as in :func:`get_global`."""
        ...

    def put_tenant(self, config: TenantExecutionConfig, *, now: str) -> StoredTenantConfig:
        """Replace one tenant's switches atomically; returns what was stored, with its revision."""
        ...

    def get_global_and_tenant(self, tenant_id: str) -> tuple[StoredGlobalConfig, StoredTenantConfig]:
        """:func:`get_global` and :func:`get_tenant` (without a lock) in one statement."""
        ...

    def tenant_summary(self) -> TenantSwitchSummary:
        """One read of every tenant row (rows exist only for tenants whose switches were written)."""
        ...
