"""HTTP/1.1 over a raw socket, for the tests of what a client library never sends: half a head or a
body, bytes spread over seconds, several requests in one write."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

Answer = tuple[int, dict[str, str], Any]

INTENT = json.dumps(
    {"action_type": "CREATE_INTERNAL_TASK", "account_id": "acc-1", "parameters": {"title": "x"}}
).encode()


def connect(url: str) -> socket.socket:
    """A connection to the server at ``url`` (``http://127.0.0.1:PORT``)."""
    return socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=30)


def post_intents_head(length: int, *, token: str | None = None, extra: str = "") -> bytes:
    """The head of ``POST /intents`` with a JSON body of ``length`` bytes; ``extra`` header lines."""
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST /intents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{authorization}"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def send_parts(connection: socket.socket, parts: list[bytes], pause: float) -> None:
    """Each part, ``pause`` seconds apart; stops quietly once the server has closed."""
    for index, part in enumerate(parts):
        if index:
            time.sleep(pause)
        try:
            connection.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            return  # the server answered and closed: the rest is not wanted


def read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the socket's 30 s pass)."""
    answer = b""
    try:
        while chunk := connection.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass  # what arrived before the reset is the answer
    return answer


def read_one(connection: socket.socket) -> bytes:
    """One whole answer (its head and the body its ``Content-Length`` announces), the connection
    left open."""
    raw = b""
    while b"\r\n\r\n" not in raw or len(raw.partition(b"\r\n\r\n")[2]) < _content_length(raw):
        chunk = connection.recv(65536)
        assert chunk, f"closed before a whole answer: {raw!r}"
        raw += chunk
    return raw


def answers(raw: bytes) -> list[Answer]:
    """The answers in ``raw``, in order: status, headers (names in lower case) and JSON body."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", len(rest)))
        body, raw = rest[:length], rest[length:]
        found.append((int(lines[0].split()[1]), headers, json.loads(body) if body else None))
    return found


def one_answer(raw: bytes) -> Answer:
    (answer,) = answers(raw)
    return answer


def _content_length(raw: bytes) -> int:
    for line in raw.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0
