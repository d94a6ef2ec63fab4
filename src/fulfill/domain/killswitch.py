"""Kill-switch evaluation: global stop, globally disabled action types, tenant switches."""

from __future__ import annotations

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
