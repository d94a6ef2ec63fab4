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

from collections.abc import Mapping

import httpcore
import httpx

from fulfill.bounded_http import IDLE_CONNECTION_SECONDS, DeadlineBackend, exchange_deadline
from fulfill.tls import httpx_context

# Enough for any acknowledgement ("ok", a small JSON document); the rest is never read.
BODY_READ_BYTES = 64 * 1024


# httpx's own bounds, which the relay's client had before it had this transport (httpcore's, 10
# connections, would hold the lanes' threads back), with idle connections dropped after
# IDLE_CONNECTION_SECONDS: httpcore's pool would keep them for good, httpx's for 5 s, as long as
# many receivers keep theirs.
LIMITS = httpx.Limits(
    max_connections=100, max_keepalive_connections=20, keepalive_expiry=IDLE_CONNECTION_SECONDS
)


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport (the same TLS authorities, from ``SSL_CERT_FILE``/``SSL_CERT_DIR`` or the
    system's, and httpx's default limits), on :class:`DeadlineBackend`."""

    def __init__(self) -> None:
        super().__init__(verify=httpx_context(), limits=LIMITS)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx_context(),
            max_connections=LIMITS.max_connections,
            max_keepalive_connections=LIMITS.max_keepalive_connections,
            keepalive_expiry=LIMITS.keepalive_expiry,
            network_backend=DeadlineBackend(),
        )


def webhook_client(timeout_seconds: float) -> httpx.Client:
    """The relay's client: ``timeout_seconds`` for each exchange :func:`post_for_status` makes, in
    all, through the transport that keeps it within that deadline."""
    return httpx.Client(transport=DeadlineTransport(), timeout=timeout_seconds)


def post_for_status(client: httpx.Client, url: str, *, content: bytes, headers: Mapping[str, str]) -> int:
    """POST ``content`` and answer the receiver's status code, which must arrive within the
    client's timeout in all, the one :func:`webhook_client` was given (else httpx's timeout is
    raised, as any other error of httpx's). What follows it decides nothing: a body short enough
    is read within the same deadline so that the connection can be used again, any other is left
    unread."""
    deadline_seconds = client.timeout.read
    if deadline_seconds is None:
        raise ValueError("a webhook client needs a timeout: build it with webhook_client()")
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
