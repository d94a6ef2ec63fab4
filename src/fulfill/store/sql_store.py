"""The store port over SQL: a unit of work is one connection in one transaction of :class:`Database`,
and each repository delegates to its table-gateway module."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from sqlalchemy import Connection

from fulfill.ports.repositories import (
    CompensationCallsRepository,
    ConnectorsRepository,
    ConsoleSessionsRepository,
    CredentialsRepository,
    DashboardRepository,
    EmailLinksRepository,
    ExecutionsRepository,
    ExternalWritesRepository,
    HeartbeatsRepository,
    IntentsRepository,
    InternalObjectsRepository,
    KillSwitchesRepository,
    LedgerRepository,
    NotificationsRepository,
    OutboxRepository,
    PoliciesRepository,
    ProbesRepository,
    RegistryRepository,
    TargetsRepository,
)
from fulfill.store.compensation_calls import SqlCompensationCallsRepository
from fulfill.store.connectors import SqlConnectorsRepository
from fulfill.store.console_sessions import SqlConsoleSessionsRepository
from fulfill.store.credentials import SqlCredentialsRepository
from fulfill.store.dashboard import SqlDashboardRepository
from fulfill.store.db import Database, is_transient_store_error
from fulfill.store.email_links import SqlEmailLinksRepository
from fulfill.store.executions import SqlExecutionsRepository
from fulfill.store.external_writes import SqlExternalWritesRepository
from fulfill.store.heartbeats import SqlHeartbeatsRepository
from fulfill.store.intents import SqlIntentsRepository
from fulfill.store.internal_objects import SqlInternalObjectsRepository
from fulfill.store.killswitches import SqlKillSwitchesRepository
from fulfill.store.ledger import SqlLedgerRepository
from fulfill.store.notifications import SqlNotificationsRepository
from fulfill.store.outbox import SqlOutboxRepository
from fulfill.store.policies import SqlPoliciesRepository
from fulfill.store.probes import SqlProbesRepository
from fulfill.store.registry import SqlRegistryRepository
from fulfill.store.targets import SqlTargetsRepository


class SqlUnitOfWork:
    """The repositories of one transaction, all over the same connection (each typed as its port,
    so that the type checker holds every adapter to its Protocol)."""

    def __init__(self, conn: Connection) -> None:
        self.connection = conn
        self.compensation_calls: CompensationCallsRepository = SqlCompensationCallsRepository(conn)
        self.connectors: ConnectorsRepository = SqlConnectorsRepository(conn)
        self.console_sessions: ConsoleSessionsRepository = SqlConsoleSessionsRepository(conn)
        self.credentials: CredentialsRepository = SqlCredentialsRepository(conn)
        self.dashboard: DashboardRepository = SqlDashboardRepository(conn)
        self.executions: ExecutionsRepository = SqlExecutionsRepository(conn)
        self.external_writes: ExternalWritesRepository = SqlExternalWritesRepository(conn)
        self.heartbeats: HeartbeatsRepository = SqlHeartbeatsRepository(conn)
        self.intents: IntentsRepository = SqlIntentsRepository(conn)
        self.internal_objects: InternalObjectsRepository = SqlInternalObjectsRepository(conn)
        self.killswitches: KillSwitchesRepository = SqlKillSwitchesRepository(conn)
        self.ledger: LedgerRepository = SqlLedgerRepository(conn)
        self.notifications: NotificationsRepository = SqlNotificationsRepository(conn)
        self.email_links: EmailLinksRepository = SqlEmailLinksRepository(conn)
        self.outbox: OutboxRepository = SqlOutboxRepository(conn)
        self.policies: PoliciesRepository = SqlPoliciesRepository(conn)
        self.probes: ProbesRepository = SqlProbesRepository(conn)
        self.registry: RegistryRepository = SqlRegistryRepository(conn)
        self.targets: TargetsRepository = SqlTargetsRepository(conn)


class SqlStore:
    """:class:`fulfill.ports.store.Store` on a :class:`Database` (SQLite or PostgreSQL)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    @contextmanager
    def read(self) -> Iterator[SqlUnitOfWork]:
        with self.database.read() as conn:
            yield SqlUnitOfWork(conn)

    @contextmanager
    def write(self) -> Iterator[SqlUnitOfWork]:
        with self.database.write() as conn:
            yield SqlUnitOfWork(conn)

    def exclusive(self, name: str) -> AbstractContextManager[bool]:
        return self.database.exclusive(name)

    def is_transient(self, exc: BaseException) -> bool:
        return is_transient_store_error(exc)
