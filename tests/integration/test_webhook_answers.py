"""A webhook receiver answers as it likes: an endless body, a body or headers sent a byte at a
time. The relay takes the status code within the webhook timeout, reads at most a short body, and
never holds its thread (and the delivery's lease) for as long as the receiver chooses; the operator's
signal webhooks and a tenant's notification webhooks alike.

The receivers are real sockets on 127.0.0.1 that record how much of their answer they could send
before the relay closed the connection."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fulfill.engine.outbox_relay import OutboxRelay
from fulfill.engine.runtime import Runtime
from fulfill.engine.webhook_http import post_for_status, webhook_client
from fulfill.store import outbox
from tests.integration.test_notifications import HOOK_SECRET, _dead_letters, _put
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import HookServer, wait_for
from tests.support.relay_runtime import enqueue_signals, relay_runtime
from tests.support.salesforce import SECRETS_KEY

MiB = 1024 * 1024


class HostileReceiver:
    """Reads each POST, then sends ``head`` at once and ``tail`` in pieces of ``piece`` bytes,
    ``pause`` seconds apart; records the bytes of the answer sent before the peer went away."""

    def __init__(self, head: bytes, tail: bytes, *, piece: int, pause: float) -> None:
        self.head, self.tail, self.piece, self.pause = head, tail, piece, pause
        self.sent: list[int] = []  # per connection: bytes of the answer sent
        self.cut_short: list[bool] = []  # per connection: the peer closed before the answer ended
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += conn.recv(65536)
            sent = 0
            try:
                conn.sendall(self.head)
                sent += len(self.head)
                for start in range(0, len(self.tail), self.piece):
                    if self._stop.wait(self.pause):
                        break
                    conn.sendall(self.tail[start : start + self.piece])
                    sent += len(self.tail[start : start + self.piece])
            except OSError:
                self.sent.append(sent)
                self.cut_short.append(True)
                return
            self.sent.append(sent)
            self.cut_short.append(sent < len(self.head) + len(self.tail))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings = make_settings(tmp_path, webhook_timeout_seconds=1.0)
    with relay_runtime(settings) as runtime:
        yield runtime


def _deliver_once(runtime: Runtime, receiver: HostileReceiver) -> dict[str, object]:
    """Enqueue one signal to ``receiver``, let a relay try it once, answer its delivery row once the
    receiver has recorded its answer; the receiver is closed."""
    try:
        return _try_once(runtime, receiver)
    finally:
        receiver.close()


def _try_once(runtime: Runtime, receiver: HostileReceiver) -> dict[str, object]:
    enqueue_signals(runtime, receiver.url, "hostile")
    relay = OutboxRelay(runtime)
    try:
        relay.deliver_one(receiver.url, owner="relay-a")
    finally:
        relay.release("relay-a")
    wait_for(lambda: receiver.sent)
    with runtime.store.read() as uow:
        [row] = uow.outbox.deliveries_for("hostile")
    return row


def test_an_endless_answer_is_not_read_and_its_status_delivers(runtime: Runtime) -> None:
    """200 with a body of 256 MiB sent as fast as the socket takes it: the relay reads at most a
    short body's worth, closes the connection, and the delivery is DELIVERED."""
    size = 256 * MiB
    receiver = HostileReceiver(
        f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode(), b"x" * size, piece=MiB, pause=0
    )
    row = _deliver_once(runtime, receiver)
    assert (row["status"], row["attempts"], row["last_error"]) == (outbox.DELIVERED, 1, None)
    assert receiver.cut_short == [True]
    # What the socket buffers took before the relay closed it, far from the 256 MiB offered.
    assert receiver.sent[0] < 32 * MiB


def test_a_body_sent_a_byte_at_a_time_is_left_unread_and_its_status_delivers(runtime: Runtime) -> None:
    """200's headers at once, then a body a byte every 0.1 s (each read within the 1 s timeout;
    60 s in all): the status decides, the body is left at the deadline."""
    receiver = HostileReceiver(
        b"HTTP/1.1 200 OK\r\nContent-Length: 600\r\n\r\n", b"y" * 600, piece=1, pause=0.1
    )
    row = _deliver_once(runtime, receiver)
    assert (row["status"], row["attempts"], row["last_error"]) == (outbox.DELIVERED, 1, None)
    assert receiver.cut_short == [True]


def test_headers_sent_a_byte_at_a_time_past_the_deadline_are_a_refused_try(runtime: Runtime) -> None:
    """The status line, then a header a byte every 0.1 s: no status within the webhook timeout in
    all, so the try is refused (a timeout) and counted, and the delivery waits for its next try."""
    receiver = HostileReceiver(b"HTTP/1.1 200 OK\r\n", b"X-Slow: " + b"z" * 600, piece=1, pause=0.1)
    row = _deliver_once(runtime, receiver)
    assert (row["status"], row["attempts"]) == (outbox.PENDING, 1)
    assert row["last_error"] == "webhook unreachable: ReadTimeout"
    assert receiver.cut_short == [True]


def test_a_tenants_notification_webhook_cannot_hold_the_relay(tmp_path: Path) -> None:
    """A tenant's admin names the webhook: one that answers 200 and then an endless body gets its
    notice delivered (no dead letter) with the rest of its answer unread."""
    size = 256 * MiB
    receiver = HostileReceiver(
        f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode(), b"x" * size, piece=MiB, pause=0
    )
    harness = Harness(
        make_settings(
            tmp_path,
            secrets_key=SECRETS_KEY,
            gateway_egress_allow=["127.0.0.1"],
            outbox_max_attempts=1,
            webhook_timeout_seconds=1.0,
        )
    ).start()
    try:
        with harness.client("t1") as client:
            _put(client, {"webhooks": [{"url": receiver.url, "secret": HOOK_SECRET}]})
            harness.create_intent(client)
            wait_for(lambda: receiver.sent, timeout=30)
            wait_for(lambda: _nothing_pending(harness), timeout=30)
            assert _dead_letters(client, "t1") == []
    finally:
        harness.stop()
        receiver.close()
    assert receiver.cut_short[0] is True
    assert receiver.sent[0] < 32 * MiB


def _nothing_pending(harness: Harness) -> bool:
    with harness.service.runtime.store.read() as uow:
        return uow.outbox.pending_count() == 0


def test_the_relays_client_posts_as_many_webhooks_at_once_as_httpx_s_default_client() -> None:
    """The lanes post from up to FULFILL_OUTBOX_DESTINATION_CONCURRENCY threads per destination:
    the client lets 16 posts be answered at once (httpcore's own pool would allow 10)."""
    lock = threading.Lock()
    in_flight = [0, 0]  # now, most at once
    release = threading.Event()

    def answer(_headers: dict[str, str], _body: bytes) -> int:
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
            if in_flight[0] == 16:
                release.set()
        release.wait(timeout=3)
        with lock:
            in_flight[0] -= 1
        return 204

    receiver = HookServer(answer)
    client = webhook_client(5.0)
    statuses: list[int] = []

    def post() -> None:
        statuses.append(post_for_status(client, receiver.url, content=b"{}", headers={}))

    threads = [threading.Thread(target=post) for _ in range(16)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    finally:
        client.close()
        receiver.close()
    assert statuses == [204] * 16
    assert in_flight[1] == 16
