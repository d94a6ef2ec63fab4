"""Operating a service from the command line, one interface implemented twice: through its HTTP
API (:class:`ApiOperator`, with the ``platform:admin`` or tenant ``admin`` scope), or on its
database (:class:`DatabaseOperator`, through the same use cases the API calls), so that an
emergency stop works even when the API does not. Whoever can reach the database is a platform
operator.

The commands that have both ways (kill switches, the registry, the connectors' list) take an
:class:`Operator` from :func:`operator_for`; the commands that only work on the database take a
:class:`DatabaseOperator`, which builds the service's parts with the builder functions of
``fulfill.service``, as the service does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from fulfill.cli.auth import PLATFORM_ADMIN, bearer_token
from fulfill.cli.options import settings
from fulfill.cli.output import err_console, note
from fulfill.cli.remote import Service
from fulfill.client import ApiError, FulfillClient
from fulfill.clock import SystemClock
from fulfill.config import Settings
from fulfill.domain.killswitch import GLOBAL_SCOPE, KillSwitchScope, StoredSwitches, SwitchSettings
from fulfill.domain.models import RegistryEntry
from fulfill.domain.notifications import NotificationSettings
from fulfill.domain.scopes import Scope
from fulfill.explain import CliError, explain, shown_url
from fulfill.usecases.connectors import ConnectorView
from fulfill.usecases.notifications import NotificationsView

if TYPE_CHECKING:
    from fulfill.credentials.vault import CredentialVault
    from fulfill.gateway.target_auth import EncryptedTargetSecrets
    from fulfill.ports.store import Store
    from fulfill.store.db import Database
    from fulfill.usecases.targets import TargetAdmin

# Who the ledger says changed a kill switch written straight to the database (--db).
CLI_CHANGED_BY = "fulfill-cli (database)"

SwitchChange = Callable[[SwitchSettings], SwitchSettings]


@dataclass(frozen=True)
class SwitchBoard:
    """The global switches, a tenant's when asked for, and the process-wide stop of this shell's
    environment (``FULFILL_GLOBAL_EXECUTION_STOP``; None through the API, which does not say)."""

    global_switches: StoredSwitches
    tenant_switches: StoredSwitches | None
    environment_stop: bool | None


class Operator(Protocol):
    """What an operator does the same way through the API and on the database."""

    def action_types(self) -> set[str] | None:
        """The registered action types; None when this operator may not read the registry."""
        ...

    def registry_entries(self, action_type: str | None) -> list[RegistryEntry]: ...

    def switch_board(self, tenant: str | None) -> SwitchBoard: ...

    def change_switches(self, scope: KillSwitchScope, change: SwitchChange) -> StoredSwitches:
        """Apply ``change`` to the scope's current switches; what was stored."""
        ...

    def shown(self, switches: StoredSwitches) -> dict[str, Any]:
        """Switches as this operator prints them: as the API answers them, or as stored."""
        ...

    def connectors(self) -> list[ConnectorView]:
        """Every connector and gateway target, with its limits and circuit."""
        ...

    def notifications(self, tenant: str) -> NotificationsView:
        """The tenant's notification channels, without a secret."""
        ...

    def put_notifications(self, tenant: str, channels: NotificationSettings) -> NotificationsView:
        """Replace the tenant's notification channels; what is stored, without a secret."""
        ...

    def close(self) -> None: ...


class ApiOperator:
    """Through the service's HTTP API; a refusal ends the command with the problem's line."""

    def __init__(self, url: str | None, bearer: str | None) -> None:
        self.service = Service(url)
        self.bearer = bearer
        note(f"service: {self.service.base} (its API)")

    def close(self) -> None:
        self.service.close()

    def _platform_token(self) -> str:
        return bearer_token("platform", self.bearer, PLATFORM_ADMIN)

    def _tenant_token(self, tenant: str) -> str:
        return bearer_token(tenant, self.bearer, Scope.ADMIN)

    def _token(self, scope: KillSwitchScope) -> str:
        return self._platform_token() if scope.tenant_id is None else self._tenant_token(scope.tenant_id)

    def action_types(self) -> set[str] | None:
        try:
            entries = self.service.client(self._platform_token()).registry()
        except ApiError:
            return None
        except httpx.TransportError as exc:
            raise self.service.cannot_reach(exc, "Is `fulfill serve` running there?") from None
        return {entry.action_type for entry in entries}

    def registry_entries(self, action_type: str | None) -> list[RegistryEntry]:
        return self.service.call(self._platform_token(), lambda api: api.registry(action_type))

    def _read(self, scope: KillSwitchScope) -> StoredSwitches:
        return self.service.call(self._token(scope), lambda api: _read_switches(api, scope))

    def switch_board(self, tenant: str | None) -> SwitchBoard:
        global_switches = self._read(GLOBAL_SCOPE)
        tenant_switches = self._read(KillSwitchScope.of_tenant(tenant)) if tenant else None
        return SwitchBoard(global_switches, tenant_switches, environment_stop=None)

    def change_switches(self, scope: KillSwitchScope, change: SwitchChange) -> StoredSwitches:
        token = self._token(scope)
        current = self._read(scope)
        wanted = change(current.settings)
        stored = self.service.call(token, lambda api: _write_switches(api, scope, wanted))
        # The API has no conditional PUT: a change between the GET and the PUT would be replaced.
        if stored.revision != current.revision + 1:
            err_console.print(
                "warning: the switches changed while this command ran; check them with "
                "`fulfill kill-switch show`",
                highlight=False,
            )
        return stored

    def shown(self, switches: StoredSwitches) -> dict[str, Any]:
        from fulfill.usecases.admin import KillSwitches, TenantExecution

        answer = KillSwitches if switches.scope.is_global else TenantExecution
        return answer.of(switches).model_dump(mode="json")

    def connectors(self) -> list[ConnectorView]:
        return self.service.call(self._platform_token(), lambda api: api.connectors())

    def notifications(self, tenant: str) -> NotificationsView:
        return self.service.call(self._tenant_token(tenant), lambda api: api.get_notifications())

    def put_notifications(self, tenant: str, channels: NotificationSettings) -> NotificationsView:
        return self.service.call(self._tenant_token(tenant), lambda api: api.put_notifications(channels))


def _read_switches(api: FulfillClient, scope: KillSwitchScope) -> StoredSwitches:
    if scope.tenant_id is None:
        switches = api.kill_switches()
        return StoredSwitches(scope, switches.settings(), switches.updated_at, switches.revision or 0)
    execution = api.tenant_execution(scope.tenant_id)
    return StoredSwitches(scope, execution.settings(), execution.updated_at, execution.revision or 0)


def _write_switches(api: FulfillClient, scope: KillSwitchScope, wanted: SwitchSettings) -> StoredSwitches:
    if scope.tenant_id is None:
        switches = api.put_kill_switches(wanted.fields(scope))
        return StoredSwitches(scope, switches.settings(), switches.updated_at, switches.revision or 0)
    execution = api.put_tenant_execution(scope.tenant_id, wanted.fields(scope))
    return StoredSwitches(scope, execution.settings(), execution.updated_at, execution.revision or 0)


class DatabaseOperator:
    """On the service's database, through the use cases the API calls."""

    def __init__(self, database: Database, current: Settings) -> None:
        from fulfill.store.sql_store import SqlStore

        self.database = database
        self.store: Store = SqlStore(database)
        self.settings = current
        self.clock = SystemClock()

    @classmethod
    def open(cls, db: str | None) -> DatabaseOperator:
        """On ``db``, else ``FULFILL_DATABASE_URL``: named on stderr, never created."""
        current = settings()
        return cls(open_database(db, current), current)

    def close(self) -> None:
        self.database.dispose()

    # --- what both operators do ------------------------------------------------------------

    def action_types(self) -> set[str] | None:
        return {entry.action_type for entry in self.registry_entries(None)}

    def registry_entries(self, action_type: str | None) -> list[RegistryEntry]:
        from fulfill.usecases.registry import list_versions

        return list_versions(self.store, action_type)

    def switch_board(self, tenant: str | None) -> SwitchBoard:
        from fulfill.usecases.admin import read_switches

        global_switches = read_switches(self.store, GLOBAL_SCOPE)
        tenant_switches = read_switches(self.store, KillSwitchScope.of_tenant(tenant)) if tenant else None
        return SwitchBoard(global_switches, tenant_switches, self.settings.global_execution_stop)

    def change_switches(self, scope: KillSwitchScope, change: SwitchChange) -> StoredSwitches:
        from fulfill.usecases.admin import change_switches

        return change_switches(
            self.store,
            scope,
            change,
            now=self.clock.now_iso(),
            changed_by=CLI_CHANGED_BY,
            notify=self.settings,
        )

    def shown(self, switches: StoredSwitches) -> dict[str, Any]:
        return switches.public()

    def connectors(self) -> list[ConnectorView]:
        from fulfill.service import CONNECTOR_NAMESPACES
        from fulfill.usecases.connectors import list_connectors

        # A target is a connector before any process serves it.
        targets = {target.name for target in self.target_admin().list().targets}
        return list_connectors(self.store, set(CONNECTOR_NAMESPACES) | targets)

    def notifications(self, tenant: str) -> NotificationsView:
        from fulfill.usecases.notifications import get_notifications

        return get_notifications(self.store, tenant)

    def put_notifications(self, tenant: str, channels: NotificationSettings) -> NotificationsView:
        from fulfill.usecases.notifications import put_notifications

        return put_notifications(
            self.store, self.settings, tenant, channels, now=self.clock.now_iso(), updated_by=CLI_CHANGED_BY
        )

    # --- the service's parts, built as the service builds them -----------------------------

    def credential_vault(self) -> CredentialVault:
        from fulfill.service import credential_vault

        return credential_vault(self.database, self.settings, self.clock)

    def target_secrets(self) -> EncryptedTargetSecrets:
        from fulfill.service import secret_box, target_secrets

        return target_secrets(self.database, secret_box(self.settings), self.clock)

    def target_admin(self) -> TargetAdmin:
        from fulfill.service import CONNECTOR_NAMESPACES, target_admin

        return target_admin(
            self.store,
            self.settings,
            self.target_secrets(),
            self.clock,
            reserved_namespaces=CONNECTOR_NAMESPACES,
        )


@contextmanager
def operator_for(url: str | None, db: str | None, bearer: str | None) -> Iterator[Operator]:
    """Through the API when a service URL is given (and no ``--db``), else on the database."""
    operator: Operator = ApiOperator(url, bearer) if url and not db else DatabaseOperator.open(db)
    try:
        yield operator
    finally:
        operator.close()


@contextmanager
def on_database(db: str | None = None) -> Iterator[DatabaseOperator]:
    operator = DatabaseOperator.open(db)
    try:
        yield operator
    finally:
        operator.close()


def describe_database(url: str) -> str:
    """The URL without its password, and a SQLite file's absolute path."""
    from sqlalchemy.engine import make_url

    shown = shown_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return f"{shown} ({Path(parsed.database or '').expanduser().resolve()})"
    return shown


def open_database(db: str | None, current: Settings) -> Database:
    """The database a command acts on, named on stderr; never created. A SQLite file must exist
    and every database must hold fulfill's tables."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from fulfill.store.db import Database
    from fulfill.store.tables import global_execution_config

    url = db or current.database_url
    source = (
        "--db" if db else "FULFILL_DATABASE_URL" if "FULFILL_DATABASE_URL" in os.environ else "the default"
    )
    described = describe_database(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "").expanduser().resolve() if parsed.database else None
        if path is None or not path.is_file():
            raise CliError(
                f"no database at {described} ({source}). Run this where the service runs, set "
                "FULFILL_DATABASE_URL (or --db) to the service's database, or go through its API with "
                "--url / FULFILL_URL.",
                exit_code=2,
            )
    note(f"database: {described}")
    database = Database(url)
    try:
        with database.read() as conn:
            migrated = inspect(conn).has_table(global_execution_config.name)
    except Exception as exc:
        database.dispose()
        raise CliError(explain(exc, database_url=url), exit_code=2) from None
    if not migrated:
        database.dispose()
        raise CliError(
            f"{described} holds no fulfill tables: is it the service's database? (`fulfill migrate` "
            "creates them in a new one.)",
            exit_code=2,
        )
    return database
