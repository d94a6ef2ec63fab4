"""Connections to systems fulfill does not control (a connector's, the outbox relay's webhooks) are
reused while fresh and never once idle past :data:`fulfill.bounded_http.IDLE_CONNECTION_SECONDS`.

A connection kept idle for good meets, sooner or later, a NAT or a firewall that forgot it, or a
server closing it at the moment a request goes out on it. A write sent that way never arrives, and
the connector cannot tell it from one whose answer was lost: the call ends in a timeout, and only
a retry finds out whether it wrote. Here the local Salesforce server, and a webhook receiver, sit
behind a relay on 127.0.0.1 that forgets a connection as soon as it has been idle a little longer
than that limit (the most forgetful NAT the limit still serves), and drops what is sent on it
afterwards, unanswered.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from fulfill.bounded_http import IDLE_CONNECTION_SECONDS
from fulfill.engine.webhook_http import post_for_status, webhook_client
from tests.support.salesforce import Rig, answer, salesforce_rig
from tests.support.serving import serve_in_thread
from tests.support.tcp_proxy import TcpProxy

# How long a connection may stay idle before the relay forgets it: just past the connector's limit.
FORGETS_AFTER = IDLE_CONNECTION_SECONDS + 0.25


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Rig, TcpProxy]]:
    with salesforce_rig(tmp_path) as running:
        relay = TcpProxy("127.0.0.1", _port(running), forget_idle_after=FORGETS_AFTER)
        # The token endpoint names its own address as the instance: the relay's, for every call.
        running.use_client_credentials(login_url=f"http://127.0.0.1:{relay.port}")
        try:
            yield running, relay
        finally:
            relay.close()


def _port(rig: Rig) -> int:
    return int(rig.server.url.rsplit(":", 1)[1])


def _create(rig: Rig, name: str) -> tuple[bool, dict[str, object]]:
    return answer(rig.connector.create_task(title=f"Call {name}", **rig.bindings(name)))


def test_calls_close_together_share_one_connection(rig: tuple[Rig, TcpProxy]) -> None:
    salesforce, relay = rig
    for name in ("a", "b", "c"):
        ok, payload = _create(salesforce, name)
        assert ok, payload
        time.sleep(IDLE_CONNECTION_SECONDS / 4)
    assert relay.accepted == 1  # the token request and the three writes, on one connection


def test_a_write_after_an_idle_spell_goes_out_on_a_new_connection(rig: tuple[Rig, TcpProxy]) -> None:
    salesforce, relay = rig
    ok, payload = _create(salesforce, "first")
    assert ok, payload
    time.sleep(FORGETS_AFTER + 0.5)  # the relay has forgotten that connection by now
    ok, payload = _create(salesforce, "second")
    assert ok, payload  # kept past the limit, it would have failed SALESFORCE_TIMEOUT
    assert relay.dropped_sends == 0
    assert relay.accepted == 2
    assert len([t for t in salesforce.dev.records("Task") if t.get("Subject") == "Call second"]) == 1


def test_the_relay_does_forget_an_idle_connection(rig: tuple[Rig, TcpProxy]) -> None:
    """The stand-in itself: what a connection kept idle past the relay's limit meets (the way
    the connector's calls went before they dropped idle connections)."""
    _salesforce, relay = rig
    with httpx.Client(timeout=1.0) as http:  # httpx's own pool keeps idle connections 5 s
        url = f"http://127.0.0.1:{relay.port}/services/oauth2/token"
        assert http.post(url, data={}).status_code == 400
        time.sleep(FORGETS_AFTER + 0.5)
        with pytest.raises(httpx.ReadTimeout):
            http.post(url, data={})
    assert relay.dropped_sends == 1
    assert relay.accepted == 1


# --- webhooks --------------------------------------------------------------------------------------


class _KeepAlive(BaseHTTPRequestHandler):
    """A receiver that keeps its connections open between requests (HTTP/1.1) and answers 204."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[TcpProxy]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    server.daemon_threads = True
    serve_in_thread(server)
    relay = TcpProxy("127.0.0.1", server.server_address[1], forget_idle_after=FORGETS_AFTER)
    try:
        yield relay
    finally:
        relay.close()
        server.shutdown()
        server.server_close()


@pytest.mark.backend_free  # a receiver and the relay's client: no database
def test_webhooks_close_together_share_a_connection_and_one_after_an_idle_spell_gets_a_new_one(
    receiver: TcpProxy,
) -> None:
    url = f"http://127.0.0.1:{receiver.port}/hook"
    with webhook_client(1.0) as client:
        assert [post_for_status(client, url, content=b"{}", headers={}) for _ in range(3)] == [204] * 3
        assert receiver.accepted == 1
        time.sleep(FORGETS_AFTER + 0.5)
        # Kept past the limit, this post would have timed out: a failed try, delivered late.
        assert post_for_status(client, url, content=b"{}", headers={}) == 204
    assert receiver.dropped_sends == 0
    assert receiver.accepted == 2
