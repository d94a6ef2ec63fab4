"""Connections a connector makes to an external system: resolve, check every address, connect to
a checked address, under the same rules as gateway targets (``domain/egress.py``,
``FULFILL_GATEWAY_EGRESS_ALLOW``).

A tenant's admin chooses where its Salesforce credential logs in (``login_url``), and the token
endpoint chooses the ``instance_url`` every later call goes to. Without this check either could
point the service at a loopback, private or cloud-metadata address. The check runs for every new
connection and the connection goes to the address that was checked (see ``gateway/egress.py`` for
why that defeats DNS rebinding); the request keeps its URL, so TLS still verifies the host name.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

from fulfill.bounded_http import IDLE_CONNECTION_SECONDS, DeadlineBackend
from fulfill.domain.egress import EgressAllowList, EgressRefused, addresses_refusal, literal_address
from fulfill.tls import httpx_context

SyncResolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (``getaddrinfo``)."""
    addresses: list[str] = []
    for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class PinnedSyncBackend(httpcore.NetworkBackend):
    """Connects only to addresses it resolved and checked itself; each connection keeps within the
    deadline of the exchange it serves (``fulfill.bounded_http``), when one is given."""

    def __init__(self, allow: EgressAllowList, resolver: SyncResolver) -> None:
        self._allow = allow
        self._resolver = resolver
        self._inner = DeadlineBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        literal = literal_address(host)
        try:
            addresses = [str(literal)] if literal is not None else self._resolver(host, port)
        except OSError:
            raise httpcore.ConnectError(f"{host} could not be resolved") from None
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        reason = addresses_refusal(host, addresses, self._allow)
        if reason is not None:
            raise EgressRefused(reason)
        last: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise EgressRefused("external systems are reached over TCP only")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# A connector's calls in flight at once, each on its own connection: as many as the gateway's
# threads (gateway/server.GATEWAY_THREADS), so that the pool never bounds them (httpx's default,
# 100, did); the connections idle between calls kept open for the next ones, for at most
# IDLE_CONNECTION_SECONDS (httpcore's pool alone would keep them for good).
MAX_CONNECTIONS = 1024
MAX_KEEPALIVE_CONNECTIONS = 100


class PinnedSyncTransport(httpx.HTTPTransport):
    """An httpx transport whose connections go through :class:`PinnedSyncBackend`, with no proxy
    (an environment proxy would connect somewhere the check never saw)."""

    def __init__(self, allow: EgressAllowList, resolver: SyncResolver) -> None:
        super().__init__(verify=httpx_context(), trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx_context(),
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS,
            keepalive_expiry=IDLE_CONNECTION_SECONDS,
            network_backend=PinnedSyncBackend(allow, resolver),
        )


def pinned_sync_client(
    allow: EgressAllowList, *, timeout: float, resolver: SyncResolver = system_resolver
) -> httpx.Client:
    """A client for a connector's calls; egress refusals raise :class:`EgressRefused` unwrapped."""
    return httpx.Client(
        transport=PinnedSyncTransport(allow, resolver),
        timeout=httpx.Timeout(timeout),
        trust_env=False,
        follow_redirects=False,
    )
