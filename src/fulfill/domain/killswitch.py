"""Kill-switch evaluation: global stop, globally disabled action types, tenant switches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from fulfill.domain.models import GlobalExecutionConfig, TenantExecutionConfig


class KillSwitchDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    allowed: bool
    scope: str | None = None  # which switch stopped it: GLOBAL_STOP, GLOBAL_ACTION_TYPE, TENANT, ...
    reason: str | None = None


ALLOWED = KillSwitchDecision(allowed=True)
# Every scope a decision can name (labels of fulfill_kill_switch_stops_total, present from start-up).
KILL_SWITCH_SCOPES = ("GLOBAL_STOP", "GLOBAL_ACTION_TYPE", "TENANT", "TENANT_ACTION_TYPE")


def evaluate_kill_switches(
    *,
    environment_stop: bool,
    global_config: GlobalExecutionConfig,
    tenant_config: TenantExecutionConfig,
    action_type: str,
) -> KillSwitchDecision:
    if environment_stop:
        return KillSwitchDecision(
            allowed=False, scope="GLOBAL_STOP", reason="global execution stop is set in the environment"
        )
    if global_config.global_stop:
        return KillSwitchDecision(allowed=False, scope="GLOBAL_STOP", reason="global execution stop is on")
    if action_type in global_config.disabled_action_types:
        return KillSwitchDecision(
            allowed=False,
            scope="GLOBAL_ACTION_TYPE",
            reason=f"action type {action_type} is disabled globally",
        )
    if not tenant_config.execution_enabled:
        return KillSwitchDecision(
            allowed=False, scope="TENANT", reason="execution is disabled for this tenant"
        )
    if action_type in tenant_config.disabled_action_types:
        return KillSwitchDecision(
            allowed=False,
            scope="TENANT_ACTION_TYPE",
            reason=f"action type {action_type} is disabled for this tenant",
        )
    return ALLOWED


# --- the stored switches, one shape for both scopes -----------------------------------------------


@dataclass(frozen=True)
class KillSwitchScope:
    """Which set of kill switches: the global one (every tenant, ``tenant_id`` None) or one
    tenant's own. Both sets hold the same two switches: a stop, and the disabled action types."""

    tenant_id: str | None = None

    @classmethod
    def of_tenant(cls, tenant_id: str) -> KillSwitchScope:
        return cls(tenant_id=tenant_id)

    @property
    def is_global(self) -> bool:
        return self.tenant_id is None

    @property
    def name(self) -> str:
        return "global" if self.tenant_id is None else "tenant"

    @property
    def stop_field(self) -> str:
        """The name the API, the CLI and the ledger give the stop: ``global_stop`` (on = stopped)
        globally, ``execution_enabled`` (off = stopped) for a tenant."""
        return "global_stop" if self.tenant_id is None else "execution_enabled"


GLOBAL_SCOPE = KillSwitchScope()


@dataclass(frozen=True)
class SwitchSettings:
    """What a set of switches says: every execution stopped, or these action types disabled."""

    stopped: bool = False
    disabled_action_types: tuple[str, ...] = ()

    def fields(self, scope: KillSwitchScope) -> dict[str, Any]:
        """The switches under their public names (``global_stop`` or ``execution_enabled``)."""
        stop = self.stopped if scope.is_global else not self.stopped
        return {scope.stop_field: stop, "disabled_action_types": list(self.disabled_action_types)}

    @classmethod
    def from_fields(cls, scope: KillSwitchScope, fields: Mapping[str, Any]) -> SwitchSettings:
        """The inverse of :meth:`fields`."""
        stop = bool(fields[scope.stop_field])
        return cls(
            stopped=stop if scope.is_global else not stop,
            disabled_action_types=tuple(fields["disabled_action_types"]),
        )


@dataclass(frozen=True)
class StoredSwitches:
    """A scope's switches as stored: ``revision`` counts the writes (0 = never written, and then
    nothing is stopped), ``updated_at`` is the last write's time (None = never)."""

    scope: KillSwitchScope
    settings: SwitchSettings = SwitchSettings()
    updated_at: str | None = None
    revision: int = 0

    def public(self) -> dict[str, Any]:
        """The shape the CLI prints: a tenant's id first, the switches, then when and which write."""
        tenant = {} if self.scope.tenant_id is None else {"tenant_id": self.scope.tenant_id}
        return {
            **tenant,
            **self.settings.fields(self.scope),
            "updated_at": self.updated_at,
            "revision": self.revision,
        }

    def global_config(self) -> GlobalExecutionConfig:
        return GlobalExecutionConfig(
            global_stop=self.settings.stopped,
            disabled_action_types=list(self.settings.disabled_action_types),
            updated_at=self.updated_at,
        )

    def tenant_config(self) -> TenantExecutionConfig:
        assert self.scope.tenant_id is not None, "the global switches are no tenant's"
        return TenantExecutionConfig(
            tenant_id=self.scope.tenant_id,
            execution_enabled=not self.settings.stopped,
            disabled_action_types=list(self.settings.disabled_action_types),
            updated_at=self.updated_at,
        )
