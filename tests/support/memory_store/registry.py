"""``uow.registry`` in memory (``fulfill.store.registry``): immutable versions."""

from __future__ import annotations

from fulfill.domain.models import RegistryEntry
from tests.support.memory_store.tables import Tables

MAX_VERSION = 2**31 - 1


class MemoryRegistryRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def get_entry(self, action_type: str, registry_version: int) -> RegistryEntry | None:
        if not 1 <= registry_version <= MAX_VERSION:
            return None
        return self._t.registry.get((action_type, registry_version))

    def latest_version(self, action_type: str) -> int | None:
        versions = [version for (kind, version) in self._t.registry if kind == action_type]
        return max(versions) if versions else None

    def latest_active_entry(self, action_type: str) -> RegistryEntry | None:
        active = [
            e for (kind, _), e in self._t.registry.items() if kind == action_type and e.deprecated_at is None
        ]
        return max(active, key=lambda entry: entry.registry_version) if active else None

    def list_entries(self, action_type: str | None = None) -> list[RegistryEntry]:
        return [
            entry
            for key, entry in sorted(self._t.registry.items())
            if action_type is None or key[0] == action_type
        ]

    def insert_version(self, entry: RegistryEntry) -> bool:
        key = (entry.action_type, entry.registry_version)
        if key in self._t.registry:
            return False
        self._t.registry[key] = entry
        return True

    def mark_deprecated(self, entry: RegistryEntry) -> None:
        key = (entry.action_type, entry.registry_version)
        if key in self._t.registry:
            self._t.registry[key] = entry
