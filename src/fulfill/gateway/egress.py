"""Connections to gateway targets: resolve, check every address, connect to a checked address.

The HTTP client the gateway uses for targets (MCP calls and OAuth token requests) connects
through :class:`PinnedNetworkBackend`. For every new connection it resolves the host itself,
refuses the connection when any address the name resolves to is not allowed
(``domain/egress.py``), and then opens the TCP connection to one of the addresses it checked, by
address. The request keeps its URL, so the ``Host`` header and TLS (SNI and certificate
verification) still use the host name. A DNS answer that changes between the check and the
connection (DNS rebinding) cannot send a request anywhere the check did not allow, because the
connection goes to the address that was checked, and a later connection is checked again.

:class:`CallTracker` notes whether any byte was written while a tool call was being sent: what
separates "refused before it left" (safe to retry) from "sent, answer lost" (outcome unknown).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import httpcore2
import httpx2

from fulfill.domain.egress import (
    EgressAllowList,
    EgressRefused,
    addresses_refusal,
    encoded_body,
    literal_address,
)
from fulfill.tls import httpx2_context

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (``getaddrinfo``, in a worker thread)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def checked_addresses(host: str, port: int, allow: EgressAllowList, resolver: Resolver) -> list[str]:
    """Resolve ``host`` and check every address. Raises :class:`EgressRefused` when any address
    is not allowed, and ``OSError`` when the name does not resolve."""
    literal = literal_address(host)
    addresses = [str(literal)] if literal is not None else await resolver(host, port)
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    reason = addresses_refusal(host, addresses, allow)
    if reason is not None:
        raise EgressRefused(reason)
    return addresses


@dataclass
class CallTracker:
    """Set ``calling`` right before a tool call is sent; ``sent`` then tells whether any of its
    bytes were written to a connection (so the remote may have received it)."""

    calling: bool = False
    sent: bool = False


class _TrackedStream(httpcore2.AsyncNetworkStream):
    def __init__(self, inner: httpcore2.AsyncNetworkStream, tracker: CallTracker | None) -> None:
        self._inner = inner
        self._tracker = tracker

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer and self._tracker is not None and self._tracker.calling:
            self._tracker.sent = True  # before the write: a partial write may have arrived
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.AsyncNetworkStream:
        inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _TrackedStream(inner, self._tracker)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class PinnedNetworkBackend(httpcore2.AsyncNetworkBackend):
    """Connects only to addresses it resolved and checked itself (see the module docstring)."""

    def __init__(
        self,
        allow: EgressAllowList,
        resolver: Resolver,
        tracker: CallTracker | None = None,
        *,
        inner: httpcore2.AsyncNetworkBackend | None = None,
    ) -> None:
        self._allow = allow
        self._resolver = resolver
        self._tracker = tracker
        self._inner = inner or httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await checked_addresses(host, port, self._allow, self._resolver)
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError:
            raise httpcore2.ConnectError(f"{host} could not be resolved") from None
        last: Exception | None = None
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last = exc
                continue
            return _TrackedStream(stream, self._tracker)
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        raise EgressRefused("targets are reached over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class AnswerTooLarge(Exception):
    """A target answered more bytes than one exchange may read (or an encoded body, which could
    expand past any limit once decoded)."""


@dataclass
class ResponseBudget:
    """How many body bytes the responses of one exchange may still bring, shared by all of them
    (the JSON answers, the SSE streams, the session's GET stream). ``exceeded`` stays set once a
    response went over, so that a failure the MCP client reports in its own words (an SSE stream
    it gave up on) can still be told apart."""

    limit: int
    used: int = 0
    exceeded: str | None = None

    def take(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            self.exceeded = f"more than {self.limit} bytes"
            raise AnswerTooLarge(self.exceeded)


class _CappedStream(httpx2.AsyncByteStream):
    """A response body counted chunk by chunk as it arrives: past the budget it stops reading
    and closes the connection, so no more than the limit (plus one network chunk) is ever held."""

    def __init__(self, inner: httpx2.AsyncByteStream, budget: ResponseBudget) -> None:
        self._inner = inner
        self._budget = budget

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._budget.take(len(chunk))
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class PinnedTransport(httpx2.AsyncHTTPTransport):
    """An httpx2 transport whose connections go through :class:`PinnedNetworkBackend`, with no
    proxy (environment proxies would connect somewhere the check never saw).

    With a ``budget``, every response body is counted against it while it streams (see
    :class:`_CappedStream`), and a body with a ``Content-Encoding`` is refused: the client asks
    for ``identity``, and a compressed answer would be decoded past the count."""

    def __init__(
        self,
        allow: EgressAllowList,
        resolver: Resolver,
        tracker: CallTracker | None = None,
        budget: ResponseBudget | None = None,
    ) -> None:
        super().__init__(verify=httpx2_context(), trust_env=False)
        self._budget = budget
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2_context(),
            max_connections=4,
            max_keepalive_connections=4,
            network_backend=PinnedNetworkBackend(allow, resolver, tracker),
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await super().handle_async_request(request)
        if self._budget is None:
            return response
        encoding = encoded_body(response.headers.get("content-encoding"))
        if encoding is not None:
            await response.aclose()
            self._budget.exceeded = f"a body encoded with {encoding[:40]!r}"
            raise AnswerTooLarge(self._budget.exceeded)
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = _CappedStream(response.stream, self._budget)
        return response


def pinned_client(
    allow: EgressAllowList,
    resolver: Resolver,
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
    tracker: CallTracker | None = None,
    event_hooks: dict[str, list[Callable[..., Any]]] | None = None,
    budget: ResponseBudget | None = None,
) -> httpx2.AsyncClient:
    """A client for one exchange with a target; close it (``async with``) when done. With a
    ``budget``, the exchange's responses together may bring at most its limit of bytes."""
    if budget is not None:
        headers = {**(headers or {}), "Accept-Encoding": "identity"}
    return httpx2.AsyncClient(
        transport=PinnedTransport(allow, resolver, tracker, budget),
        headers=headers,
        timeout=httpx2.Timeout(timeout),
        trust_env=False,
        follow_redirects=False,
        event_hooks=event_hooks or {},
    )
