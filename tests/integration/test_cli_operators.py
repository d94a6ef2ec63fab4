"""The command line's two operators do the same thing: what one of them changes, the other reads
back identically (through the API, or on the database the service uses)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from fulfill.cli import app
from fulfill.cli.app import HELP_ORDER
from fulfill.cli.operators import ApiOperator, DatabaseOperator, Operator
from fulfill.domain.killswitch import GLOBAL_SCOPE, KillSwitchScope
from tests.support.harness import TEST_SECRET, Harness


@pytest.fixture
def operators(shared: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Operator, Operator]]:
    monkeypatch.setenv("FULFILL_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("FULFILL_DATABASE_URL", shared.settings.database_url)
    through_api, on_database = ApiOperator(shared.url, None), DatabaseOperator.open(None)
    yield through_api, on_database
    through_api.close()
    on_database.close()


def test_a_change_through_either_operator_reads_back_the_same_through_both(
    operators: tuple[Operator, Operator],
) -> None:
    through_api, on_database = operators
    tenant = KillSwitchScope.of_tenant("t-operators")
    stopped = through_api.change_switches(tenant, lambda current: replace(current, stopped=True))
    assert stopped.settings.stopped is True
    assert on_database.switch_board("t-operators").tenant_switches == stopped

    disabled = on_database.change_switches(
        GLOBAL_SCOPE, lambda current: replace(current, disabled_action_types=("CREATE_INTERNAL_NOTE",))
    )
    try:
        from_api = through_api.switch_board("t-operators")
        assert from_api.global_switches == disabled
        assert from_api.tenant_switches == stopped
        assert from_api.environment_stop is None  # the API does not say
        assert on_database.switch_board(None).environment_stop is False
    finally:
        on_database.change_switches(GLOBAL_SCOPE, lambda current: replace(current, disabled_action_types=()))
        through_api.change_switches(tenant, lambda current: replace(current, stopped=False))
    assert (
        through_api.switch_board("t-operators").tenant_switches
        == on_database.switch_board("t-operators").tenant_switches
    )


def test_each_operator_prints_switches_as_it_always_has(operators: tuple[Operator, Operator]) -> None:
    through_api, on_database = operators
    stored = on_database.switch_board("t-shown").tenant_switches
    assert stored is not None
    assert list(through_api.shown(stored)) == [
        "execution_enabled",
        "disabled_action_types",
        "revision",
        "updated_at",
    ]
    assert list(on_database.shown(stored)) == [
        "tenant_id",
        "execution_enabled",
        "disabled_action_types",
        "updated_at",
        "revision",
    ]


def test_registry_and_connectors_are_the_same_through_both(operators: tuple[Operator, Operator]) -> None:
    through_api, on_database = operators
    assert through_api.registry_entries(None) == on_database.registry_entries(None)
    assert through_api.action_types() == on_database.action_types()
    assert {view.name for view in through_api.connectors()} == {
        view.name for view in on_database.connectors()
    }


def test_the_help_lists_the_commands_in_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    listed = CliRunner().invoke(app, ["--help"]).stdout
    positions = [listed.index(f"│ {name} ") for name in HELP_ORDER]
    assert positions == sorted(positions)
