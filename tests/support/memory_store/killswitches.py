"""``uow.killswitches`` in memory (``fulfill.store.killswitches``): one row per scope, missing rows
mean "nothing stopped"; each write counts one more ``revision``. The global and tenant forms are
read and written through the scope's row, as the SQL module does."""

from __future__ import annotations

from fulfill.domain.killswitch import GLOBAL_SCOPE, KillSwitchScope, StoredSwitches, SwitchSettings
from fulfill.domain.models import GlobalExecutionConfig, TenantExecutionConfig
from fulfill.domain.records import StoredGlobalConfig, StoredTenantConfig, TenantSwitchSummary
from tests.support.memory_store.tables import Tables


class MemoryKillSwitchesRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def _rows(self, scope: KillSwitchScope) -> tuple[dict[str, StoredSwitches], str]:
        if scope.tenant_id is None:
            return self._t.global_switches, "global"
        return self._t.tenant_switches, scope.tenant_id

    def get_switches(self, scope: KillSwitchScope, *, for_update: bool = False) -> StoredSwitches:
        rows, key = self._rows(scope)
        stored = rows.get(key)
        return stored if stored is not None else StoredSwitches(scope=scope)

    def put_switches(self, scope: KillSwitchScope, settings: SwitchSettings, *, now: str) -> StoredSwitches:
        rows, key = self._rows(scope)
        stored = StoredSwitches(
            scope=scope,
            settings=SwitchSettings(settings.stopped, tuple(sorted(set(settings.disabled_action_types)))),
            updated_at=now,
            revision=self.get_switches(scope).revision + 1,
        )
        rows[key] = stored
        return stored

    def get_global(self, *, for_update: bool = False) -> StoredGlobalConfig:
        stored = self.get_switches(GLOBAL_SCOPE)
        return StoredGlobalConfig(**stored.global_config().model_dump(), revision=stored.revision)

    def put_global(self, config: GlobalExecutionConfig, *, now: str) -> StoredGlobalConfig:
        settings = SwitchSettings(config.global_stop, tuple(config.disabled_action_types))
        stored = self.put_switches(GLOBAL_SCOPE, settings, now=now)
        return StoredGlobalConfig(**stored.global_config().model_dump(), revision=stored.revision)

    def get_tenant(self, tenant_id: str, *, for_update: bool = False) -> StoredTenantConfig:
        stored = self.get_switches(KillSwitchScope.of_tenant(tenant_id))
        return StoredTenantConfig(**stored.tenant_config().model_dump(), revision=stored.revision)

    def put_tenant(self, config: TenantExecutionConfig, *, now: str) -> StoredTenantConfig:
        settings = SwitchSettings(not config.execution_enabled, tuple(config.disabled_action_types))
        stored = self.put_switches(KillSwitchScope.of_tenant(config.tenant_id), settings, now=now)
        return StoredTenantConfig(**stored.tenant_config().model_dump(), revision=stored.revision)

    def tenant_summary(self) -> TenantSwitchSummary:
        rows = list(self._t.tenant_switches.values())
        return TenantSwitchSummary(
            stopped_tenants=[str(row.scope.tenant_id) for row in rows if row.settings.stopped],
            disabled_action_types=sum(len(row.settings.disabled_action_types) for row in rows),
        )
