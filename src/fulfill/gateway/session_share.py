"""What the in-memory gateway's MCP sessions of one process share: the tool listing and the
compiled output-schema validators.

The in-memory gateway (:mod:`fulfill.gateway.inprocess`) keeps one MCP session per calling
thread's event loop. Left to itself, each session lists the tools (``tools/list``, which builds
every tool's model in the gateway server) and compiles the output-schema validator of each tool
it calls: once per thread, so a worker with 128 executor threads paid it 128 times. Here one
process's sessions of one gateway server share both:

* **The listing**, through the MCP client's own response cache: every session's ``Client`` has a
  :class:`~mcp.client.caching.CacheConfig` whose store is this process's (:class:`ListingStore`,
  safe across threads), with a fixed server identity and partition, so a session that needs the
  listing is served the one another session fetched, at most
  :data:`~fulfill.gateway.server.TOOL_LISTING_TTL_SECONDS` old (the ``ttlMs`` the gateway server
  gives its ``tools/list``: without it the client keeps nothing). One
  listing is fetched at a time per process (:meth:`SharedToolListing.ensure_listed`); the sessions
  waiting for it are then served from the store. A session takes the listing again whenever the
  store holds a newer one than it took (a generation counted by the store's writes) or its own is
  older than the time-to-live, so every session follows the newest listing any of them fetched.
  A call naming a tool the session's listing does not hold still has the MCP client list the tools
  again for that session, as it always did; an answer that does not fit the output schema of the
  session's listing is checked again against a listing fetched then (as the HTTP client does), so
  a schema changed since the listing was taken decides, never a stale one.
* **The compiled validators**, keyed by the output schema's canonical JSON (sorted keys, as the
  MCP client compares schemas): a validator is only ever used for the schema it was compiled
  from, so a tool whose output schema changed (an internal tool registered again, a re-listing
  that shows another schema) is checked against the new one, whatever another session compiled
  before. The MCP client keeps these per session in private fields; :func:`share_validators`
  is the one place that reaches into them (pinned by tests that fail when the client changes
  shape), and leaves a session unshared, as before, when the client's shape is not the one
  expected.

This concerns the in-memory gateway only: the HTTP client (:class:`fulfill.gateway.client.McpToolGateway`)
already keeps one listing and one set of validators for all its calls. Nothing here comes from
a gateway target: the gateway server lists every target's tools with its own success schema.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mcp import Client
from mcp.client.caching import CacheConfig, CacheEntry, CacheKey, CacheMode
from mcp.client.session import ClientSession
from mcp.types import CallToolResult

from fulfill.gateway.server import TOOL_LISTING_TTL_SECONDS

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

log = logging.getLogger(__name__)

# The most distinct output schemas kept compiled: the gateway's own tools' and the one every
# target's tool answers with; a bound all the same, so nothing can grow it without end.
MAX_VALIDATORS = 256

# The partition of the shared store's entries: every call through the in-memory gateway is the
# engine's own, and the gateway lists the same tools whatever the token.
_PARTITION = "fulfill-engine"


class ListingStore:
    """The response-cache store of one in-memory gateway's sessions (``ResponseCacheStore``).

    Shared by sessions on different threads' event loops, so every operation holds a lock (the
    MCP client's own in-memory store is for one event loop). ``generation`` counts the writes:
    a session that took the listing before the last write takes it again."""

    def __init__(self) -> None:
        self._entries: dict[CacheKey, CacheEntry] = {}
        self._lock = threading.Lock()
        self.generation = 0

    async def get(self, key: CacheKey) -> CacheEntry | None:
        with self._lock:
            return self._entries.get(key)

    async def set(self, key: CacheKey, entry: CacheEntry) -> None:
        with self._lock:
            self._entries[key] = entry
            self.generation += 1

    async def delete(self, key: CacheKey) -> None:
        with self._lock:
            self._entries.pop(key, None)

    async def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class SharedValidators:
    """Compiled output-schema validators by the schema's canonical JSON, for every session."""

    def __init__(self) -> None:
        self._by_schema: dict[str, Validator] = {}
        self._lock = threading.Lock()
        self.compiled = 0  # validators compiled here (for tests and measurements)

    def get_or_compile(
        self, name: str, schema: dict[str, Any], compile_: Callable[[str, dict[str, Any]], Validator]
    ) -> Validator:
        """The validator of ``schema``, compiled by ``compile_`` (the MCP client's own, which
        raises ``RuntimeError`` for an invalid schema: never kept) the first time it is asked for."""
        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            validator = self._by_schema.get(key)
            if validator is None:
                validator = compile_(name, schema)
                if len(self._by_schema) >= MAX_VALIDATORS:
                    self._by_schema.clear()
                self._by_schema[key] = validator
                self.compiled += 1
        return validator


class SharedToolListing:
    """One in-memory gateway's listing and validators, shared by all its sessions."""

    def __init__(
        self, *, ttl_seconds: float = TOOL_LISTING_TTL_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = ListingStore()
        self.validators = SharedValidators()
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self.cache = CacheConfig(
            store=self.store,
            partition=_PARTITION,
            # One identity per gateway: two gateway servers in one process never share entries.
            target_id=f"fulfill-gateway-in-memory:{uuid.uuid4().hex}",
            default_ttl_ms=int(ttl_seconds * 1000),
            clock=clock,
        )
        self._lock = threading.Lock()
        self._flight: concurrent.futures.Future[None] | None = None

    def client(self, server: Any) -> Client:
        """A new session's client, its listing served from the shared store."""
        return Client(server, cache=self.cache)

    async def ensure_listed(self, session: SessionListing, client: Client) -> None:
        """The session holds the newest listing (fetched at most the time-to-live ago)."""
        if session.generation == self.store.generation and self._clock() < session.expires_at:
            return
        with self._lock:
            flight = self._flight
            leading = flight is None or flight.done()
            if leading:
                flight = self._flight = concurrent.futures.Future()
        assert flight is not None
        if not leading:
            # Another session is fetching the listing: wait for it, then be served it.
            await asyncio.shield(asyncio.wrap_future(flight))
        try:
            await self._take(session, client, "use")  # served from the store when fresh
        finally:
            if leading:
                flight.set_result(None)

    async def fetch_now(self, session: SessionListing, client: Client) -> None:
        """Fetch the listing for this session now, and keep it for the others."""
        await self._take(session, client, "refresh")

    async def _take(self, session: SessionListing, client: Client, mode: CacheMode) -> None:
        generation, now = self.store.generation, self._clock()
        await client.list_tools(cache_mode=mode)  # the session absorbs it (the client's own path)
        session.generation, session.expires_at = generation, now + self._ttl_seconds


class SessionListing:
    """Which listing one session took: the store's generation then, and until when it is fresh."""

    def __init__(self) -> None:
        self.generation = -1
        self.expires_at = 0.0


def install(shared: SharedToolListing, client: Client, listing: SessionListing) -> None:
    """Make a newly opened session one of ``shared``'s: its validators shared, and an answer that
    does not fit the output schema of the listing it holds checked again against a listing
    fetched now (so a schema changed since it took its listing is the one that decides, as the
    HTTP client does)."""
    session = client.session
    share_validators(session, shared.validators)
    validate = session.validate_tool_result

    async def checked_against_a_fresh_listing(name: str, result: CallToolResult) -> None:
        try:
            await validate(name, result)
        except RuntimeError:
            await shared.fetch_now(listing, client)
            await validate(name, result)

    # ``ClientSession.call_tool`` checks every answer with ``self.validate_tool_result``.
    setattr(session, "validate_tool_result", checked_against_a_fresh_listing)  # noqa: B010


def share_validators(session: ClientSession, shared: SharedValidators) -> bool:
    """Have ``session`` take its compiled output-schema validators from ``shared``.

    The MCP client (mcp 2.3) compiles them in ``ClientSession._output_schema_validator(name,
    schema)`` and keeps them by tool name in ``_tool_output_validators``, from which
    ``_absorb_tool_listing`` evicts a tool's validator when a listing shows another schema for
    it. That stays as it is: this session's method is replaced by one that looks in the session's
    own map first (kept true by the client's eviction), then in ``shared`` by the schema itself,
    and compiles with the client's own method only when neither has it. False (the session left
    as it is) when the client is not of that shape."""
    compile_ = getattr(session, "_output_schema_validator", None)
    if not callable(compile_) or not isinstance(getattr(session, "_tool_output_validators", None), dict):
        log.warning("the MCP client's session is not of the expected shape: validators not shared")
        return False

    def validator(name: str, output_schema: dict[str, Any]) -> Validator:
        own: dict[str, Validator] = session._tool_output_validators  # rebound by each listing
        found = own.get(name)
        if found is None:
            found = own[name] = shared.get_or_compile(name, output_schema, compile_)
        return found

    setattr(session, "_output_schema_validator", validator)  # noqa: B010 - an instance's method
    return True
