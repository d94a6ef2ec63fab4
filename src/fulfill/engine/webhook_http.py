"""The outbox relay's HTTP client for webhooks: the signal webhooks an operator configures and the
notification webhooks a tenant's admin configures. A delivery needs one thing from a receiver, its
status code, and needs it within the webhook timeout.

A receiver decides how it answers, and a tenant's webhook is any server its admin names. Read in
full, an answer of any size would be held in the relay's memory. An answer sent a few bytes at a
time, each within httpx's timeout (which applies to every read, not to the whole answer), would hold
the relay's thread as long as the receiver liked: past the delivery's lease, so that another relay
would send it again, into the same trap. So:

* of an answer's body at most ``BODY_READ_BYTES`` are read, and only so that the connection can
  serve the next delivery; a longer body, or one still arriving at the deadline, is left unread
  and the connection closed (:func:`post_for_status`). The status decides either way;
* the whole exchange (connecting, sending, the status line and the headers) ends within the
  deadline it is given, whatever each read brings (:class:`DeadlineBackend`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpcore
import httpx

from fulfill.bounded_http import DeadlineStream, exchange_deadline, within_deadline

# Enough for any acknowledgement ("ok", a small JSON document); the rest is never read.
BODY_READ_BYTES = 64 * 1024


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own backend, with every wait shortened to the exchange's deadline."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host,
            port,
            timeout=within_deadline(timeout),
            local_address=local_address,
            socket_options=socket_options,
        )
        return DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, timeout=within_deadline(timeout), socket_options=socket_options
        )
        return DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# httpx's own defaults, which the relay's client had before it had this transport: httpcore's
# (10 connections, kept forever) would hold the lanes' threads back and reuse connections a
# receiver may have closed.
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport (the same TLS authorities, from ``SSL_CERT_FILE``/``SSL_CERT_DIR`` or the
    system's, and httpx's default limits), on :class:`DeadlineBackend`."""

    def __init__(self) -> None:
        super().__init__(limits=LIMITS)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=LIMITS.max_connections,
            max_keepalive_connections=LIMITS.max_keepalive_connections,
            keepalive_expiry=LIMITS.keepalive_expiry,
            network_backend=DeadlineBackend(),
        )


def webhook_client(timeout_seconds: float) -> httpx.Client:
    """The relay's client: ``timeout_seconds`` per read, and the transport that keeps each
    exchange within the deadline :func:`post_for_status` gives it."""
    return httpx.Client(transport=DeadlineTransport(), timeout=timeout_seconds)


def post_for_status(
    client: httpx.Client, url: str, *, content: bytes, headers: Mapping[str, str], deadline_seconds: float
) -> int:
    """POST ``content`` and answer the receiver's status code, which must arrive within
    ``deadline_seconds`` in all (else httpx's timeout is raised, as any other error of httpx's).
    What follows it decides nothing: a body short enough is read within the same deadline so that
    the connection can be used again, any other is left unread."""
    with (
        exchange_deadline(deadline_seconds),
        client.stream("POST", url, content=content, headers=headers) as response,
    ):
        _read_short_body(response)
        return response.status_code


def _read_short_body(response: httpx.Response) -> None:
    """Read the body if it is at most BODY_READ_BYTES and arrives in time; otherwise stop (closing
    the response then closes the connection rather than returning it to the pool)."""
    read = 0
    try:
        for chunk in response.iter_raw():
            read += len(chunk)
            if read > BODY_READ_BYTES:
                return
    except httpx.HTTPError:
        return
