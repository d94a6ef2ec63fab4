"""``uow.killswitches`` in memory (``fulfill.store.killswitches``): missing rows mean "enabled";
each write counts one more ``revision``."""

from __future__ import annotations

from fulfill.domain.killswitch import KillSwitchScope, StoredSwitches, SwitchSettings
from fulfill.domain.models import GlobalExecutionConfig, TenantExecutionConfig
from fulfill.domain.records import StoredGlobalConfig, StoredTenantConfig, TenantSwitchSummary
from tests.support.memory_store.tables import Tables


class MemoryKillSwitchesRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def get_switches(self, scope: KillSwitchScope, *, for_update: bool = False) -> StoredSwitches:
        if scope.tenant_id is None:
            found = self.get_global()
            settings = SwitchSettings(found.global_stop, tuple(found.disabled_action_types))
            return StoredSwitches(scope, settings, updated_at=found.updated_at, revision=found.revision)
        tenant = self.get_tenant(scope.tenant_id)
        settings = SwitchSettings(not tenant.execution_enabled, tuple(tenant.disabled_action_types))
        return StoredSwitches(scope, settings, updated_at=tenant.updated_at, revision=tenant.revision)

    def put_switches(self, scope: KillSwitchScope, settings: SwitchSettings, *, now: str) -> StoredSwitches:
        types = list(settings.disabled_action_types)
        if scope.tenant_id is None:
            self.put_global(
                GlobalExecutionConfig(global_stop=settings.stopped, disabled_action_types=types), now=now
            )
        else:
            config = TenantExecutionConfig(
                tenant_id=scope.tenant_id, execution_enabled=not settings.stopped, disabled_action_types=types
            )
            self.put_tenant(config, now=now)
        return self.get_switches(scope)

    def get_global(self, *, for_update: bool = False) -> StoredGlobalConfig:
        stored: StoredGlobalConfig | None = self._t.global_switches.get("global")
        return stored if stored is not None else StoredGlobalConfig()

    def put_global(self, config: GlobalExecutionConfig, *, now: str) -> StoredGlobalConfig:
        stored = StoredGlobalConfig(
            global_stop=config.global_stop,
            disabled_action_types=sorted(set(config.disabled_action_types)),
            updated_at=now,
            revision=self.get_global().revision + 1,
        )
        self._t.global_switches["global"] = stored
        return stored

    def get_tenant(self, tenant_id: str, *, for_update: bool = False) -> StoredTenantConfig:
        stored: StoredTenantConfig | None = self._t.tenant_switches.get(tenant_id)
        return stored if stored is not None else StoredTenantConfig(tenant_id=tenant_id)

    def get_global_and_tenant(self, tenant_id: str) -> tuple[StoredGlobalConfig, StoredTenantConfig]:
        return self.get_global(), self.get_tenant(tenant_id)

    def put_tenant(self, config: TenantExecutionConfig, *, now: str) -> StoredTenantConfig:
        stored = StoredTenantConfig(
            tenant_id=config.tenant_id,
            execution_enabled=config.execution_enabled,
            disabled_action_types=sorted(set(config.disabled_action_types)),
            updated_at=now,
            revision=self.get_tenant(config.tenant_id).revision + 1,
        )
        self._t.tenant_switches[config.tenant_id] = stored
        return stored

    def tenant_summary(self) -> TenantSwitchSummary:
        rows: list[StoredTenantConfig] = list(self._t.tenant_switches.values())
        return TenantSwitchSummary(
            stopped_tenants=[row.tenant_id for row in rows if not row.execution_enabled],
            disabled_action_types=sum(len(row.disabled_action_types) for row in rows),
        )
