"""The store port: a unit of work (one transaction) with one repository per stored concept.

    with store.write() as uow:
        if uow.executions.insert_outcome(outcome):
            uow.executions.append_ledger(entry)

``write()`` is one write transaction: on SQLite it takes the write lock up front (``BEGIN
IMMEDIATE``), so a read-then-write never fails to upgrade; it commits when the block ends and
rolls back when it raises. ``read()`` runs alongside the writer: on SQLite one read transaction
(one snapshot); on PostgreSQL each statement on its own, with its own snapshot as READ COMMITTED
would give it inside a transaction, without the round trips of one; a read that needs one
snapshot for several statements asks for it (``uow.ledger.snapshot()``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

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


class StoreUnavailable(Exception):
    """The store could not be reached for now (a lock timeout, a dropped connection, a failover, no
    connection free in time): worth retrying. An adapter may raise it; :meth:`Store.is_transient`
    also recognises the adapter's own errors of that kind."""


class UnitOfWork(Protocol):
    """One transaction; each attribute is the repository of the ``fulfill.store`` module of that name."""

    @property
    def compensation_calls(self) -> CompensationCallsRepository: ...
    @property
    def connectors(self) -> ConnectorsRepository: ...
    @property
    def console_sessions(self) -> ConsoleSessionsRepository: ...
    @property
    def credentials(self) -> CredentialsRepository: ...
    @property
    def dashboard(self) -> DashboardRepository: ...
    @property
    def executions(self) -> ExecutionsRepository: ...
    @property
    def external_writes(self) -> ExternalWritesRepository: ...
    @property
    def heartbeats(self) -> HeartbeatsRepository: ...
    @property
    def intents(self) -> IntentsRepository: ...
    @property
    def internal_objects(self) -> InternalObjectsRepository: ...
    @property
    def killswitches(self) -> KillSwitchesRepository: ...
    @property
    def ledger(self) -> LedgerRepository: ...
    @property
    def notifications(self) -> NotificationsRepository: ...
    @property
    def email_links(self) -> EmailLinksRepository: ...
    @property
    def outbox(self) -> OutboxRepository: ...
    @property
    def policies(self) -> PoliciesRepository: ...
    @property
    def probes(self) -> ProbesRepository: ...
    @property
    def registry(self) -> RegistryRepository: ...
    @property
    def targets(self) -> TargetsRepository: ...


class Store(Protocol):
    def read(self) -> AbstractContextManager[UnitOfWork]:
        """A read (see the module's docstring: one transaction on SQLite, none on PostgreSQL)."""
        ...

    def write(self) -> AbstractContextManager[UnitOfWork]:
        """One write transaction: committed when the block ends, rolled back when it raises."""
        ...

    def exclusive(self, name: str) -> AbstractContextManager[bool]:
        """Whether the caller alone holds ``name`` until the block ends, among every process that
        shares the store; answers at once (False: another holds it). For work that two processes
        may both start but only one should do at a time."""
        ...

    def is_transient(self, exc: BaseException) -> bool:
        """True for a failure worth retrying: :class:`StoreUnavailable`, or the adapter's own
        errors of that kind (a lock timeout, a dropped connection, a failover, a pool timeout)."""
        ...
