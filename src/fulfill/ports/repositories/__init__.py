"""One repository port per table-gateway module of ``fulfill.store``."""

from __future__ import annotations

from fulfill.ports.repositories.compensation_calls import CompensationCallsRepository
from fulfill.ports.repositories.connectors import ConnectorsRepository
from fulfill.ports.repositories.console_sessions import ConsoleSessionsRepository
from fulfill.ports.repositories.credentials import CredentialsRepository
from fulfill.ports.repositories.dashboard import DashboardRepository
from fulfill.ports.repositories.email_links import EmailLinksRepository
from fulfill.ports.repositories.executions import ExecutionsRepository
from fulfill.ports.repositories.external_writes import ExternalWritesRepository
from fulfill.ports.repositories.heartbeats import HeartbeatsRepository
from fulfill.ports.repositories.intents import IntentsRepository
from fulfill.ports.repositories.internal_objects import InternalObjectsRepository
from fulfill.ports.repositories.killswitches import KillSwitchesRepository
from fulfill.ports.repositories.ledger import LedgerRepository
from fulfill.ports.repositories.notifications import NotificationsRepository
from fulfill.ports.repositories.outbox import OutboxRepository
from fulfill.ports.repositories.policies import PoliciesRepository
from fulfill.ports.repositories.probes import ProbesRepository
from fulfill.ports.repositories.registry import RegistryRepository
from fulfill.ports.repositories.targets import TargetsRepository

__all__ = [
    "CompensationCallsRepository",
    "ConnectorsRepository",
    "ConsoleSessionsRepository",
    "CredentialsRepository",
    "DashboardRepository",
    "EmailLinksRepository",
    "ExecutionsRepository",
    "ExternalWritesRepository",
    "HeartbeatsRepository",
    "IntentsRepository",
    "InternalObjectsRepository",
    "KillSwitchesRepository",
    "LedgerRepository",
    "NotificationsRepository",
    "OutboxRepository",
    "PoliciesRepository",
    "ProbesRepository",
    "RegistryRepository",
    "TargetsRepository",
]
