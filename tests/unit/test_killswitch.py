from __future__ import annotations

import pytest

from fulfill.domain.killswitch import ALLOWED, KillSwitchDecision, evaluate_kill_switches
from fulfill.domain.models import GlobalExecutionConfig, TenantExecutionConfig

ACTION = "CREATE_INTERNAL_TASK"


def decide(
    *,
    environment_stop: bool = False,
    global_stop: bool = False,
    global_disabled: list[str] | None = None,
    tenant_enabled: bool = True,
    tenant_disabled: list[str] | None = None,
    action_type: str = ACTION,
) -> KillSwitchDecision:
    return evaluate_kill_switches(
        environment_stop=environment_stop,
        global_config=GlobalExecutionConfig(
            global_stop=global_stop, disabled_action_types=global_disabled or []
        ),
        tenant_config=TenantExecutionConfig(
            tenant_id="t1", execution_enabled=tenant_enabled, disabled_action_types=tenant_disabled or []
        ),
        action_type=action_type,
    )


def test_allowed_when_nothing_is_set() -> None:
    decision = decide()
    assert decision == ALLOWED
    assert decision.allowed is True
    assert decision.scope is None
    assert decision.reason is None


def test_allowed_when_other_action_types_are_disabled() -> None:
    assert decide(global_disabled=["FLAG_FOR_REVIEW"], tenant_disabled=["CREATE_OPPORTUNITY"]).allowed


def test_environment_stop() -> None:
    decision = decide(environment_stop=True)
    assert decision.allowed is False
    assert decision.scope == "GLOBAL_STOP"
    assert decision.reason is not None
    assert "environment" in decision.reason


def test_stored_global_stop() -> None:
    decision = decide(global_stop=True)
    assert decision.allowed is False
    assert decision.scope == "GLOBAL_STOP"
    assert decision.reason == "global execution stop is on"


def test_global_disabled_action_type() -> None:
    decision = decide(global_disabled=[ACTION])
    assert decision.allowed is False
    assert decision.scope == "GLOBAL_ACTION_TYPE"
    assert decision.reason is not None
    assert ACTION in decision.reason


def test_tenant_disabled() -> None:
    decision = decide(tenant_enabled=False)
    assert decision.allowed is False
    assert decision.scope == "TENANT"


def test_tenant_action_type() -> None:
    decision = decide(tenant_disabled=[ACTION])
    assert decision.allowed is False
    assert decision.scope == "TENANT_ACTION_TYPE"
    assert decision.reason is not None
    assert ACTION in decision.reason


def test_action_type_match_is_exact() -> None:
    assert decide(global_disabled=[ACTION.lower()], tenant_disabled=[ACTION + "_X"]).allowed


@pytest.mark.parametrize(
    ("switches", "scope", "reason_fragment"),
    [
        (
            {
                "environment_stop": True,
                "global_stop": True,
                "global_disabled": [ACTION],
                "tenant_enabled": False,
                "tenant_disabled": [ACTION],
            },
            "GLOBAL_STOP",
            "environment",
        ),
        (
            {
                "global_stop": True,
                "global_disabled": [ACTION],
                "tenant_enabled": False,
                "tenant_disabled": [ACTION],
            },
            "GLOBAL_STOP",
            "is on",
        ),
        (
            {"global_disabled": [ACTION], "tenant_enabled": False, "tenant_disabled": [ACTION]},
            "GLOBAL_ACTION_TYPE",
            "globally",
        ),
        ({"tenant_enabled": False, "tenant_disabled": [ACTION]}, "TENANT", "disabled for this tenant"),
        ({"tenant_disabled": [ACTION]}, "TENANT_ACTION_TYPE", "disabled for this tenant"),
    ],
)
def test_precedence(switches: dict[str, object], scope: str, reason_fragment: str) -> None:
    decision = decide(**switches)  # type: ignore[arg-type]
    assert decision.allowed is False
    assert decision.scope == scope
    assert decision.reason is not None
    assert reason_fragment in decision.reason
