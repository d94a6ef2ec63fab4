"""The targets this process's gateway serves: a snapshot of the stored targets, kept current.

Every process (api, workers; several on PostgreSQL) reads the same ``gateway_targets`` table.
Each change there bumps one revision number (``gateway_catalog``); a process checks it at most
every ``FULFILL_GATEWAY_TARGETS_REFRESH_SECONDS`` when its tools are looked up, at once after an
admin change made in this process, and whenever a call names a tool it does not know, and
reloads the targets when it moved. No restart is needed for a change to apply.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from fulfill.domain.schemas import DEFAULT_PATTERN_TIMEOUT_SECONDS, UntrustedSchema
from fulfill.domain.targets import RemoteToolSpec, TargetAuthType, namespace_of
from fulfill.gateway.remote import TargetEndpoint
from fulfill.gateway.target_auth import TargetSecrets
from fulfill.logging_setup import describe_failure
from fulfill.store import targets as store
from fulfill.store.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogTool:
    spec: RemoteToolSpec
    endpoint: TargetEndpoint
    validator: UntrustedSchema = field(repr=False, compare=False)


@dataclass(frozen=True)
class CatalogSnapshot:
    revision: int = -1
    endpoints: dict[str, TargetEndpoint] = field(default_factory=dict)
    tools: dict[str, CatalogTool] = field(default_factory=dict)


class TargetCatalog:
    def __init__(
        self,
        db: Database,
        secrets: TargetSecrets,
        *,
        refresh_seconds: float,
        pattern_timeout: float = DEFAULT_PATTERN_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._pattern_timeout = pattern_timeout
        self._secrets = secrets
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot = CatalogSnapshot()
        self._checked_at: float | None = None

    # --- reading ---------------------------------------------------------------------------

    def snapshot(self) -> CatalogSnapshot:
        """The current targets, checked against the stored revision when that is due."""
        return self.refresh() if self._due() else self._snapshot

    async def current(self) -> CatalogSnapshot:
        """:meth:`snapshot` for async callers: the database is read in a worker thread."""
        if not self._due():
            return self._snapshot
        return await anyio.to_thread.run_sync(self.refresh)

    def tool(self, name: str) -> CatalogTool | None:
        """The remote tool ``name``; an unknown name makes this check the stored revision now."""
        found = self.snapshot().tools.get(name)
        if found is None:
            found = self.refresh(force=True).tools.get(name)
        return found

    async def find(self, name: str) -> CatalogTool | None:
        """The remote tool ``name``; an unknown name makes this check the stored revision now (a
        target added or synced by another process a moment ago is found, not refused)."""
        found = (await self.current()).tools.get(name)
        if found is None:
            snapshot = await anyio.to_thread.run_sync(lambda: self.refresh(force=True))
            found = snapshot.tools.get(name)
        return found

    def is_remote(self, tool_name: str) -> bool:
        return namespace_of(tool_name) in self.snapshot().endpoints

    def needs_confirmation(self, tool_name: str) -> bool:
        """True for a tool of a target that does not deduplicate: a call to it whose answer is
        lost must not be sent again (its outcome is unknown until a person checks)."""
        endpoint = self.snapshot().endpoints.get(namespace_of(tool_name))
        return endpoint is not None and not endpoint.deduplicates

    # --- keeping current -----------------------------------------------------------------------

    def changed(self) -> None:
        """A target was changed in this process: reload now."""
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> CatalogSnapshot:
        with self._lock:
            if not force and not self._due():
                return self._snapshot
            try:
                with self._db.read() as conn:
                    revision = store.catalog_revision(conn)
                    stored = store.list_targets(conn) if revision != self._snapshot.revision else None
                if stored is not None:
                    self._snapshot = self._build(revision, stored)
            except Exception as exc:
                # Keep serving what was loaded; the next check tries again.
                log.warning("gateway targets could not be reloaded: %s", describe_failure(exc))
            self._checked_at = self._clock()
            return self._snapshot

    def _due(self) -> bool:
        return self._checked_at is None or self._clock() - self._checked_at >= self._refresh_seconds

    def _build(self, revision: int, stored: list[Any]) -> CatalogSnapshot:
        endpoints: dict[str, TargetEndpoint] = {}
        tools: dict[str, CatalogTool] = {}
        for target in stored:
            secret = self._secrets.get(target.name) if target.auth.type is not TargetAuthType.NONE else None
            endpoint = TargetEndpoint(
                name=target.name,
                url=target.url,
                auth=target.auth,
                deduplicates=target.deduplicates,
                secret=secret,
                lookup_tool=target.lookup_tool,
            )
            endpoints[target.name] = endpoint
            for spec in target.tools:
                validator = UntrustedSchema(spec.input_schema, pattern_timeout=self._pattern_timeout)
                tools[spec.name] = CatalogTool(spec=spec, endpoint=endpoint, validator=validator)
        return CatalogSnapshot(revision=revision, endpoints=endpoints, tools=tools)


class GatewayToolSchemas(Mapping[str, dict[str, Any]]):
    """Input schema of every tool the gateway serves, by name: the in-process connectors' tools
    and every target's tools, as this process currently knows them."""

    def __init__(self, internal: dict[str, dict[str, Any]], catalog: TargetCatalog | None) -> None:
        self._internal = internal
        self._catalog = catalog

    @property
    def internal_namespaces(self) -> frozenset[str]:
        return frozenset(namespace_of(name) for name in self._internal)

    def __getitem__(self, name: str) -> dict[str, Any]:
        if name in self._internal:
            return self._internal[name]
        found = self._catalog.tool(name) if self._catalog is not None else None
        if found is None:
            raise KeyError(name)
        return found.spec.input_schema

    def __iter__(self) -> Iterator[str]:
        yield from self._internal
        if self._catalog is not None:
            yield from self._catalog.snapshot().tools

    def __len__(self) -> int:
        remote = len(self._catalog.snapshot().tools) if self._catalog is not None else 0
        return len(self._internal) + remote
