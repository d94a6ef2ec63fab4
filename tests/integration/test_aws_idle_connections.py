"""The AWS clients (EventBridge's puts, the ledger's export to S3) reuse a connection while it is
fresh and never once it has been idle past :data:`fulfill.bounded_http.IDLE_CONNECTION_SECONDS`,
as the service's HTTP clients do (``test_egress_idle_connections.py``).

botocore's connection pool keeps an idle connection for good. A put sent on one that a NAT or a
firewall forgot meanwhile never arrives: with botocore's retries off (the outbox is the one retry
layer), the delivery fails a try after its read timeout and waits for its next one; the export,
whose client retries, loses a read timeout on each call after a quiet spell. Here moto's server,
behind a front that keeps connections open as AWS does, sits behind a relay on 127.0.0.1 that
forgets a connection as soon as it has been idle a little longer than that limit, and drops what
is sent on it afterwards, unanswered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fulfill.bounded_http import IDLE_CONNECTION_SECONDS
from fulfill.engine.eventbridge import SIGNAL_TOPIC, EventBridgePublisher
from fulfill.engine.ledger_s3_export import S3LedgerExporter
from tests.support.eventbridge import REGION, KeepAliveFront, LocalEventBridge, use_test_credentials
from tests.support.harness import make_settings
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.backend_free  # moto's server and the clients: no database

# How long a connection may stay idle before the relay forgets it: just past the clients' limit.
FORGETS_AFTER = IDLE_CONNECTION_SECONDS + 0.25
BUS = "cc-native-events"
BUCKET = "fulfill-ledger-archive"


@pytest.fixture(scope="module")
def local_aws() -> Iterator[LocalEventBridge]:
    server = LocalEventBridge()
    yield server
    server.close()


@pytest.fixture
def relay(local_aws: LocalEventBridge, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[TcpProxy]:
    use_test_credentials(monkeypatch, tmp_path)
    local_aws.reset()
    local_aws.create_bus(BUS)
    local_aws.client("s3").create_bucket(Bucket=BUCKET)
    host, port = local_aws.url.removeprefix("http://").rsplit(":", 1)
    front = KeepAliveFront(host, int(port))
    running = TcpProxy("127.0.0.1", front.port, forget_idle_after=FORGETS_AFTER)
    try:
        yield running
    finally:
        running.close()
        front.close()


def _publisher(relay: TcpProxy, tmp_path: Path) -> EventBridgePublisher:
    settings = make_settings(
        tmp_path,
        eventbridge_bus=BUS,
        eventbridge_region=REGION,
        eventbridge_endpoint_url=f"http://127.0.0.1:{relay.port}",
        eventbridge_timeout_seconds=1.0,
    )
    return EventBridgePublisher(settings)


def _exporter(relay: TcpProxy, tmp_path: Path) -> S3LedgerExporter:
    settings = make_settings(
        tmp_path,
        ledger_export_s3_url=f"s3://{BUCKET}/ledger/v1",
        ledger_export_s3_region=REGION,
        ledger_export_s3_endpoint_url=f"http://127.0.0.1:{relay.port}",
        ledger_export_s3_timeout_seconds=1.0,
    )
    return S3LedgerExporter(settings)


def _put(publisher: EventBridgePublisher, n: int) -> str | None:
    """Put signal ``sig-<n>`` on the bus: None once the bus accepted it, else why not."""
    message = {
        "payload": {"signalId": f"sig-{n}", "signalType": "ACTION_EXECUTED", "accountId": "acc-1"},
        "traceId": f"trace-{n}",
        "tenantId": "t1",
        "ts": "2026-12-07T00:00:00.000Z",
    }
    return publisher.publish(SIGNAL_TOPIC, message, BUS)


def test_eventbridge_puts_close_together_share_a_connection(relay: TcpProxy, tmp_path: Path) -> None:
    publisher = _publisher(relay, tmp_path)
    try:
        for n in range(3):
            assert _put(publisher, n) is None
            time.sleep(IDLE_CONNECTION_SECONDS / 4)
    finally:
        publisher.close()
    assert relay.accepted == 1


def test_an_eventbridge_put_after_an_idle_spell_goes_out_on_a_new_connection(
    relay: TcpProxy, tmp_path: Path, local_aws: LocalEventBridge
) -> None:
    publisher = _publisher(relay, tmp_path)
    try:
        assert _put(publisher, 1) is None
        time.sleep(FORGETS_AFTER + 0.5)  # the relay has forgotten that connection by now
        # Kept past the limit, the put would have failed: "EventBridge unreachable: ReadTimeoutError".
        assert _put(publisher, 2) is None
    finally:
        publisher.close()
    assert relay.dropped_sends == 0
    assert relay.accepted == 2
    assert sorted(event["detail"]["payload"]["signalId"] for event in local_aws.received(BUS)) == [
        "sig-1",
        "sig-2",
    ]


def test_s3_reads_after_an_idle_spell_go_out_on_a_new_connection(relay: TcpProxy, tmp_path: Path) -> None:
    exporter = _exporter(relay, tmp_path)
    assert exporter.marker("t1") is None
    assert exporter.marker("t2") is None  # close together: the same connection
    assert relay.accepted == 1
    time.sleep(FORGETS_AFTER + 0.5)
    # Kept past the limit, the read would have been sent on the forgotten connection (which the
    # relay counts as a dropped send), waited out its 1 s read timeout and been retried on a new one.
    assert exporter.marker("t3") is None
    assert relay.dropped_sends == 0
    assert relay.accepted == 2


def test_calls_in_flight_on_other_threads_keep_the_connections_they_use(
    relay: TcpProxy, tmp_path: Path
) -> None:
    """Puts from several threads at once after an idle spell: each gets an answer, and none is sent
    on a connection the relay forgot."""
    publisher = _publisher(relay, tmp_path)
    try:
        assert _put(publisher, 0) is None
        time.sleep(FORGETS_AFTER + 0.5)
        answers: list[Any] = []

        def put(n: int) -> None:
            answers.append(_put(publisher, n))

        threads = [threading.Thread(target=put, args=(n,)) for n in range(1, 7)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        publisher.close()
    assert answers == [None] * 6
    assert relay.dropped_sends == 0
