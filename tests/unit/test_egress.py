"""Egress rules for gateway targets, and the connection that goes only to a checked address."""

from __future__ import annotations

import gzip
import ipaddress
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import httpcore2
import pytest

from fulfill.connectors.egress import pinned_sync_client
from fulfill.domain.egress import (
    EgressAllowList,
    EgressRefused,
    InvalidTargetUrl,
    address_refusal,
    destination_refusal,
    encoded_body,
    parse_target_url,
)
from fulfill.gateway.egress import (
    AnswerTooLarge,
    CallTracker,
    PinnedNetworkBackend,
    ResponseBudget,
    checked_addresses,
    pinned_client,
)
from tests.support.serving import serve_in_thread


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "special-purpose"),  # carrier-grade NAT
        ("::ffff:127.0.0.1", "loopback (IPv4-mapped)"),
        ("::ffff:10.0.0.1", "private (IPv4-mapped)"),
        ("2002:7f00:1::", "loopback (6to4)"),
        ("64:ff9b::a00:1", "private (NAT64)"),
        ("2001::1", "Teredo tunnel"),
        ("::127.0.0.1", "reserved"),
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
    ],
)
def test_only_public_addresses_are_destinations(address: str, reason: str | None) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == reason


def test_the_allow_list_names_hosts_wildcards_addresses_and_networks() -> None:
    allow = EgressAllowList.parse(
        [" 127.0.0.1 ", "10.0.0.0/8", "tickets.internal", "*.corp.example", "", "[::1]"]
    )
    assert allow.allows_address(ipaddress.ip_address("127.0.0.1"))
    assert allow.allows_address(ipaddress.ip_address("::ffff:127.0.0.1"))  # mapped form too
    assert allow.allows_address(ipaddress.ip_address("10.9.8.7"))
    assert allow.allows_address(ipaddress.ip_address("::1"))
    assert not allow.allows_address(ipaddress.ip_address("127.0.0.2"))
    assert allow.allows_host("tickets.internal")
    assert allow.allows_host("TICKETS.internal.")
    assert allow.allows_host("a.b.corp.example")
    assert not allow.allows_host("corp.example")
    assert not allow.allows_host("evilcorp.example")
    for bad in ("not a host", "http://x", "*.", "10.0.0.0/99"):
        with pytest.raises(ValueError, match="not a"):
            EgressAllowList.parse([bad])


def test_destination_refusal_names_the_host_the_address_and_the_setting() -> None:
    loopback = ipaddress.ip_address("127.0.0.1")
    reason = destination_refusal("api.example", loopback, EgressAllowList())
    assert reason is not None
    assert "api.example" in reason
    assert "loopback" in reason
    assert "127.0.0.1" in reason
    assert "FULFILL_GATEWAY_EGRESS_ALLOW" in reason
    assert destination_refusal("api.example", loopback, EgressAllowList.parse(["api.example"])) is None
    assert destination_refusal("api.example", ipaddress.ip_address("8.8.8.8"), EgressAllowList()) is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/mcp",
        "file:///etc/passwd",
        "gopher://example.com",
        "javascript:alert(1)",
        "example.com/mcp",
        "http://user:pw@example.com/mcp",
        "http://token@example.com/mcp",
        "http:///mcp",
        "http://example.com:99999/mcp",
        "http://exa mple.com/mcp",
        "http://example.com/mcp#frag",
        "http://127.1/mcp",  # a numeric shorthand resolvers read as 127.0.0.1
        "http://2130706433/mcp",
        "http://-bad-.example/mcp",
        "",
        "http://" + "a" * 3000 + ".com",
    ],
)
def test_target_urls_must_be_plain_http_or_https(url: str) -> None:
    with pytest.raises(InvalidTargetUrl):
        parse_target_url(url)


def test_target_urls_are_parsed_with_their_default_ports() -> None:
    assert parse_target_url("https://Tickets.Example.com/mcp").host == "tickets.example.com"
    assert parse_target_url("https://tickets.example.com/mcp").port == 443
    assert parse_target_url("http://tickets.example.com/mcp").port == 80
    v6 = parse_target_url("http://[2606:4700::1]:8080/mcp")
    assert (v6.host, v6.port) == ("2606:4700::1", 8080)


# --- resolution and pinning ------------------------------------------------------------------------


class FakeResolver:
    """Answers each lookup of a name with the next list of addresses (the last one repeats)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_every_resolved_address_is_checked() -> None:
    allow = EgressAllowList()
    mixed = FakeResolver(["93.184.216.34", "10.0.0.5"])
    with pytest.raises(EgressRefused, match=r"private address \(10\.0\.0\.5\)"):
        anyio.run(checked_addresses, "tickets.example", 443, allow, mixed)
    public = FakeResolver(["93.184.216.34", "2606:4700::1"])
    assert anyio.run(checked_addresses, "tickets.example", 443, allow, public) == [
        "93.184.216.34",
        "2606:4700::1",
    ]
    with pytest.raises(OSError, match="no address"):
        anyio.run(checked_addresses, "tickets.example", 443, allow, FakeResolver([]))
    # An address literal is checked as it is, without a lookup.
    never = FakeResolver(["93.184.216.34"])
    with pytest.raises(EgressRefused, match="loopback"):
        anyio.run(checked_addresses, "127.0.0.1", 80, allow, never)
    assert never.lookups == []


class RecordingBackend(httpcore2.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.connected: list[tuple[str, int]] = []

    async def connect_tcp(
        self, host: str, port: int, *args: Any, **kwargs: Any
    ) -> httpcore2.AsyncNetworkStream:
        self.connected.append((host, port))
        raise httpcore2.ConnectError("recorded only")


def test_a_connection_goes_to_the_checked_address_and_a_rebound_name_is_refused() -> None:
    """DNS rebinding: the name resolves to an allowed address at registration, then to a private
    one. Each connection resolves again, checks, and connects by address: the second one never
    reaches the network."""
    allow = EgressAllowList.parse(["93.184.216.0/24"])
    resolver = FakeResolver(["93.184.216.34"], ["93.184.216.34"], ["192.168.7.7"])
    inner = RecordingBackend()
    backend = PinnedNetworkBackend(allow, resolver, inner=inner)

    assert anyio.run(checked_addresses, "tickets.example", 443, allow, resolver) == ["93.184.216.34"]
    with pytest.raises(httpcore2.ConnectError, match="recorded only"):
        anyio.run(lambda: backend.connect_tcp("tickets.example", 443, timeout=5))
    assert inner.connected == [("93.184.216.34", 443)]  # by address, the one that was checked
    with pytest.raises(EgressRefused, match=r"192\.168\.7\.7"):
        anyio.run(lambda: backend.connect_tcp("tickets.example", 443, timeout=5))
    assert inner.connected == [("93.184.216.34", 443)]  # nothing further was connected
    assert resolver.lookups == ["tickets.example"] * 3


class _Recorder(BaseHTTPRequestHandler):
    hosts: list[str] = []

    def log_message(self, *_args: Any) -> None:
        pass

    def do_GET(self) -> None:
        type(self).hosts.append(self.headers.get("Host", ""))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def local_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.hosts = []
    serve_in_thread(server)
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_the_pinned_client_keeps_the_host_name_in_the_request_and_rechecks_each_connection(
    local_server: int,
) -> None:
    allow = EgressAllowList.parse(["127.0.0.1"])
    resolver = FakeResolver(["127.0.0.1"], ["10.0.0.7"])  # rebound after the first connection
    tracker = CallTracker()

    async def two_connections() -> tuple[int, BaseException | None]:
        async with pinned_client(allow, resolver, timeout=5, tracker=tracker) as http:
            tracker.calling = True
            first = await http.get(f"http://tickets.test:{local_server}/")
        try:
            async with pinned_client(allow, resolver, timeout=5) as http:
                await http.get(f"http://tickets.test:{local_server}/")
        except EgressRefused as exc:
            return first.status_code, exc
        return first.status_code, None

    status, refused = anyio.run(two_connections)
    assert status == 200
    assert _Recorder.hosts == [f"tickets.test:{local_server}"]  # the Host header is the name
    assert isinstance(refused, EgressRefused)
    assert "10.0.0.7" in str(refused)
    assert tracker.sent is True


def test_nothing_is_marked_sent_when_the_connection_is_refused() -> None:
    tracker = CallTracker(calling=True)

    async def refused() -> None:
        async with pinned_client(
            EgressAllowList(), FakeResolver(["127.0.0.1"]), timeout=5, tracker=tracker
        ) as http:
            await http.post("http://tickets.test/mcp", content=b"{}")

    with pytest.raises(EgressRefused):
        anyio.run(refused)
    assert tracker.sent is False


class _Flood(BaseHTTPRequestHandler):
    """Answers ``/big`` with 50 MB (chunk by chunk, noting how much it could send), ``/gzip`` with a
    gzip-encoded body, anything else with 2 bytes; notes each request's Accept-Encoding."""

    sent = 0
    encodings: list[str] = []

    def log_message(self, *_args: Any) -> None:
        pass

    def do_GET(self) -> None:
        type(self).encodings.append(self.headers.get("Accept-Encoding", ""))
        if self.path == "/gzip":
            body = gzip.compress(b"{}" * 1000)
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        size = 50 * 1024 * 1024 if self.path == "/big" else 2
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        chunk = b"x" * min(size, 64 * 1024)
        try:
            while type(self).sent < size:
                self.wfile.write(chunk)
                type(self).sent += len(chunk)
        except OSError:
            pass  # the client stopped reading and closed the connection


@pytest.fixture
def flood_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flood)
    _Flood.sent, _Flood.encodings = 0, []
    serve_in_thread(server)
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_a_budgeted_client_stops_reading_past_its_limit_and_refuses_encoded_bodies(
    flood_server: int,
) -> None:
    budget = ResponseBudget(limit=256 * 1024)
    small = ResponseBudget(limit=256 * 1024)
    assert anyio.run(lambda: _fetch_with(flood_server, "/", small)) is None
    assert small.used == 2
    too_large = anyio.run(lambda: _fetch_with(flood_server, "/big", budget))
    assert isinstance(too_large, AnswerTooLarge)
    assert budget.exceeded == f"more than {256 * 1024} bytes"
    assert budget.used <= 256 * 1024 + 128 * 1024  # the limit, plus at most one network read
    assert _Flood.sent < 50 * 1024 * 1024  # it stopped reading: the rest was never sent
    encoded = ResponseBudget(limit=256 * 1024)
    refused = anyio.run(lambda: _fetch_with(flood_server, "/gzip", encoded))
    assert isinstance(refused, AnswerTooLarge)
    assert encoded.exceeded == "a body encoded with 'gzip'"
    assert set(_Flood.encodings) == {"identity"}


async def _fetch_with(port: int, path: str, budget: ResponseBudget) -> BaseException | None:
    allow = EgressAllowList.parse(["127.0.0.1"])
    async with pinned_client(allow, FakeResolver(["127.0.0.1"]), timeout=10, budget=budget) as http:
        try:
            await http.get(f"http://127.0.0.1:{port}{path}")
        except AnswerTooLarge as exc:
            return exc
    return None


def test_the_connector_client_connects_to_the_checked_address_only() -> None:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serve_in_thread(server)
    port = server.server_address[1]
    answers = {"crm.example": ["127.0.0.1"], "rebound.example": ["127.0.0.1", "10.0.0.5"]}
    allow = EgressAllowList.parse(["127.0.0.1"])
    try:
        with pinned_sync_client(allow, timeout=5, resolver=lambda host, _port: answers[host]) as client:
            assert client.get(f"http://crm.example:{port}/x").status_code == 204
            assert seen == [f"crm.example:{port}"]  # the request keeps its host name
            with pytest.raises(EgressRefused, match=r"private address \(10\.0\.0\.5\)"):
                client.get(f"http://rebound.example:{port}/x")
        with (
            pinned_sync_client(EgressAllowList.parse([]), timeout=5) as client,
            pytest.raises(EgressRefused, match="loopback"),
        ):
            client.get(f"http://127.0.0.1:{port}/x")
        assert len(seen) == 1
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("header", "encoding"),
    [
        (None, None),
        ("", None),
        ("identity", None),
        (" Identity ", None),
        ("gzip", "gzip"),
        ("GZIP, br", "gzip, br"),
    ],
)
def test_an_answer_body_is_encoded_unless_it_is_identity(header: str | None, encoding: str | None) -> None:
    assert encoded_body(header) == encoding
