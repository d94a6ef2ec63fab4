"""The versioned action-type registry: the repository port (``store/registry.py`` implements it over SQL)."""

from __future__ import annotations

from typing import Protocol

from fulfill.domain.models import RegistryEntry


class RegistryRepository(Protocol):
    def get_entry(self, action_type: str, registry_version: int) -> RegistryEntry | None: ...

    def latest_version(self, action_type: str) -> int | None:
        """The highest version, deprecated ones included (``latest`` is never the newest timestamp)."""
        ...

    def latest_active_entry(self, action_type: str) -> RegistryEntry | None: ...

    def list_entries(self, action_type: str | None = ...) -> list[RegistryEntry]: ...

    def insert_version(self, entry: RegistryEntry) -> bool:
        """Insert exactly this version; False when the version number is already taken."""
        ...

    def mark_deprecated(self, entry: RegistryEntry) -> None: ...
