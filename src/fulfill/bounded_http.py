"""HTTP exchanges with servers fulfill does not control, bounded in time and in size.

A tenant's admin names some of the servers the service talks to: a notification webhook, the
login URL of a Salesforce credential (whose token endpoint then names the ``instance_url`` of every
later call). Such a server decides how it answers. httpx's timeouts apply to each read, not to the
whole answer, so an answer sent a few bytes at a time holds the caller's thread as long as the
server likes; and an answer read in full is held in memory, whatever its size. So:

* :func:`exchange_deadline` gives the exchanges this thread makes a deadline, and
  :class:`DeadlineBackend` (a transport's network backend, or the one under it) shortens every
  connect, write, read and TLS start to what is left of it: past it, a read timeout;
* :func:`read_at_most` reads a streamed answer's body up to a limit, and :func:`bounded_request`
  makes one whole request that way, answering a response whose body is in memory. It asks for the
  body as it is (``Accept-Encoding: identity``) and refuses one encoded all the same: a compressed
  body is counted on the wire, and a few kilobytes of it can decode to gigabytes.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from fulfill.domain.egress import encoded_body

# How long a connection to a server fulfill does not control may wait idle and still be reused.
# Kept for good, an idle connection meets sooner or later a NAT or a firewall that forgot it, or a
# server closing it as a request goes out on it (5 s is the idle limit of Node.js, uvicorn and
# Apache): a write sent on it never arrives, and its caller cannot tell it from one whose answer
# was lost. Calls closer together than this share their connections.
IDLE_CONNECTION_SECONDS = 2.0

_exchange = threading.local()  # the monotonic deadline of the exchange this thread is making


class AnswerTooLarge(Exception):
    """An answer's body went past the limit it was read with, or came encoded (so that it could
    decode past any limit); the rest was left unread. ``reason`` says which, after "answered"."""

    def __init__(self, limit: int, encoding: str | None = None) -> None:
        self.limit = limit
        if encoding is None:
            self.reason = f"more than {limit} bytes"
        else:
            self.reason = (
                f"a body encoded with {encoding[:40]!r}, which could decode to more than {limit} bytes "
                "(identity was asked for)"
            )
        super().__init__(f"the server answered {self.reason}")


@contextmanager
def exchange_deadline(seconds: float) -> Iterator[None]:
    """Every exchange this thread makes inside the block ends within ``seconds`` of its start, on a
    connection whose transport puts :class:`DeadlineStream` on its connections."""
    previous: float | None = getattr(_exchange, "deadline", None)
    _exchange.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _exchange.deadline = previous


def within_deadline(timeout: float | None) -> float | None:
    """``timeout`` shortened to what is left of this thread's exchange; a timeout once none is."""
    deadline: float | None = getattr(_exchange, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the server did not answer within the exchange's deadline")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits at most what is left of the exchange."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, within_deadline(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, within_deadline(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, within_deadline(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own backend, with every wait shortened to the exchange's deadline and every
    connection a :class:`DeadlineStream`. Outside :func:`exchange_deadline` it is httpcore's."""

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


def read_at_most(response: httpx.Response, limit: int) -> bytes:
    """A streamed response's body as it came on the wire, or :class:`AnswerTooLarge` as soon as it
    goes past ``limit`` bytes, or at once when it is encoded (``Content-Encoding`` other than
    ``identity``): decoding such a body, even one network chunk of it, could hold far more than
    ``limit`` in memory before any count saw it (deflate expands up to about a thousand times)."""
    encoding = encoded_body(response.headers.get("content-encoding"))
    if encoding is not None:
        raise AnswerTooLarge(limit, encoding)
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > limit:
            raise AnswerTooLarge(limit)
    return bytes(body)


# Headers that describe the body on the wire, not the decoded body the bounded response carries.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def bounded_request(
    client: httpx.Client, method: str, url: str, *, deadline_seconds: float, max_bytes: int, **options: Any
) -> httpx.Response:
    """One request whose whole exchange, the body included, ends within ``deadline_seconds`` and
    whose body is at most ``max_bytes`` and not encoded (else :class:`AnswerTooLarge`, the
    connection closed; the request asks for ``identity``, so a server that encodes anyway is not
    one to decode for). The answer is a response with its body in memory; httpx's own errors are
    raised as they are. ``client``'s transport must connect through :class:`DeadlineBackend` for
    the deadline to hold."""
    asked = httpx.Headers(options.pop("headers", None))
    asked["Accept-Encoding"] = "identity"
    with (
        exchange_deadline(deadline_seconds),
        client.stream(method, url, headers=asked, **options) as streamed,
    ):
        body = read_at_most(streamed, max_bytes)
    headers = [
        (name, value) for name, value in streamed.headers.multi_items() if name.lower() not in _WIRE_HEADERS
    ]
    return httpx.Response(streamed.status_code, headers=headers, content=body, request=streamed.request)
