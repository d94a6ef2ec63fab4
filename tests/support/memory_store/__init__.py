"""An in-memory :class:`fulfill.ports.store.Store`: dict tables, one lock, copy-on-write transactions.

It keeps the semantics the steps and use cases rely on: an insert of an existing key returns
False and changes nothing; transitions are compare-and-set; ``write()`` commits when its block
ends and rolls back (drops every change) when it raises; writes are serialised (one writer, as
SQLite's ``BEGIN IMMEDIATE``), and a read sees the last committed state.

An outage is simulated with :meth:`MemoryStore.fail_next`: the next transactions raise
:class:`StoreUnavailable`, which :meth:`MemoryStore.is_transient` recognises.

Repositories that the steps and use cases under test never touch (connectors' flow control,
console sessions, credentials, the dashboard's queries, external writes, heartbeats) are present
but not held: their methods raise ``NotImplementedError``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

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
from fulfill.ports.store import StoreUnavailable
from fulfill.store.db import NamedLocks
from tests.support.memory_store.compensation_calls import MemoryCompensationCallsRepository
from tests.support.memory_store.connectors import MemoryConnectorsRepository
from tests.support.memory_store.console_sessions import MemoryConsoleSessionsRepository
from tests.support.memory_store.credentials import MemoryCredentialsRepository
from tests.support.memory_store.dashboard import MemoryDashboardRepository
from tests.support.memory_store.email_links import MemoryEmailLinksRepository
from tests.support.memory_store.executions import MemoryExecutionsRepository
from tests.support.memory_store.external_writes import MemoryExternalWritesRepository
from tests.support.memory_store.heartbeats import MemoryHeartbeatsRepository
from tests.support.memory_store.intents import MemoryIntentsRepository
from tests.support.memory_store.internal_objects import MemoryInternalObjectsRepository
from tests.support.memory_store.killswitches import MemoryKillSwitchesRepository
from tests.support.memory_store.ledger import MemoryLedgerRepository
from tests.support.memory_store.notifications import MemoryNotificationsRepository
from tests.support.memory_store.outbox import MemoryOutboxRepository
from tests.support.memory_store.policies import MemoryPoliciesRepository
from tests.support.memory_store.probes import MemoryProbesRepository
from tests.support.memory_store.registry import MemoryRegistryRepository
from tests.support.memory_store.tables import Tables
from tests.support.memory_store.targets import MemoryTargetsRepository

__all__ = ["MemoryStore", "MemoryUnitOfWork", "Tables"]


class MemoryUnitOfWork:
    """The repositories of one transaction, over that transaction's copy of the tables."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self.compensation_calls: CompensationCallsRepository = MemoryCompensationCallsRepository(tables)
        self.connectors: ConnectorsRepository = MemoryConnectorsRepository(tables)
        self.console_sessions: ConsoleSessionsRepository = MemoryConsoleSessionsRepository(tables)
        self.credentials: CredentialsRepository = MemoryCredentialsRepository(tables)
        self.dashboard: DashboardRepository = MemoryDashboardRepository(tables)
        self.executions: ExecutionsRepository = MemoryExecutionsRepository(tables)
        self.external_writes: ExternalWritesRepository = MemoryExternalWritesRepository(tables)
        self.heartbeats: HeartbeatsRepository = MemoryHeartbeatsRepository(tables)
        self.intents: IntentsRepository = MemoryIntentsRepository(tables)
        self.internal_objects: InternalObjectsRepository = MemoryInternalObjectsRepository(tables)
        self.killswitches: KillSwitchesRepository = MemoryKillSwitchesRepository(tables)
        self.ledger: LedgerRepository = MemoryLedgerRepository(tables)
        self.notifications: NotificationsRepository = MemoryNotificationsRepository(tables)
        self.email_links: EmailLinksRepository = MemoryEmailLinksRepository(tables)
        self.outbox: OutboxRepository = MemoryOutboxRepository(tables)
        self.policies: PoliciesRepository = MemoryPoliciesRepository(tables)
        self.probes: ProbesRepository = MemoryProbesRepository(tables)
        self.registry: RegistryRepository = MemoryRegistryRepository(tables)
        self.targets: TargetsRepository = MemoryTargetsRepository(tables)


class MemoryStore:
    def __init__(self) -> None:
        self.tables = Tables()
        self._writer = threading.RLock()
        self._exclusive = NamedLocks()
        self._failures = 0
        self.transactions = 0  # how many began (reads and writes), for tests that count them

    def fail_next(self, transactions: int = 1) -> None:
        """The next ``transactions`` transactions raise :class:`StoreUnavailable` as they begin."""
        self._failures = transactions

    def _begin(self) -> None:
        self.transactions += 1
        if self._failures > 0:
            self._failures -= 1
            raise StoreUnavailable("the in-memory store is unavailable (simulated outage)")

    def exclusive(self, name: str) -> AbstractContextManager[bool]:
        return self._exclusive.holding(name)

    @contextmanager
    def read(self) -> Iterator[MemoryUnitOfWork]:
        self._begin()
        with self._writer:
            snapshot = self.tables.copy()
        yield MemoryUnitOfWork(snapshot)

    @contextmanager
    def write(self) -> Iterator[MemoryUnitOfWork]:
        with self._writer:
            self._begin()
            working = self.tables.copy()
            yield MemoryUnitOfWork(working)
            self.tables = working  # reached only when the block did not raise: commit

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, StoreUnavailable)

    def uow(self) -> MemoryUnitOfWork:
        """The committed tables, to read or arrange directly in a test (outside any transaction)."""
        return MemoryUnitOfWork(self.tables)
