"""The PutEvents entry of a signal, byte for byte as the reference's EventPublisher builds it."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from fulfill.config import Settings
from fulfill.engine.eventbridge import (
    EventBridgeNotConfigured,
    EventBridgePublisher,
    bus_of,
    signal_entry,
)


def message(**overrides: Any) -> dict[str, Any]:
    return {
        "eventType": "SIGNAL_CREATED",
        "source": "fulfill",
        "payload": {
            "signalId": "exec-ai_1-acc-ü-ACTION_FAILED",
            "signalType": "ACTION_FAILED",
            "accountId": "acc-ü",
        },
        "traceId": "exec-trace-1",
        "tenantId": "t1",
        "ts": "2026-01-02T03:04:05.678Z",
        "signal": {"signalId": "exec-ai_1-acc-ü-ACTION_FAILED", "metadata": {"confidence": 1.0}},
        **overrides,
    }


def test_signal_entry_is_the_reference_envelope() -> None:
    entry = signal_entry(message(), "cc-native-events")
    assert entry == {
        "Source": "cc-native.perception",
        "DetailType": "SIGNAL_CREATED",
        "Detail": (
            '{"eventType":"SIGNAL_CREATED","source":"perception",'
            '"payload":{"signalId":"exec-ai_1-acc-ü-ACTION_FAILED","signalType":"ACTION_FAILED",'
            '"accountId":"acc-ü"},"traceId":"exec-trace-1","tenantId":"t1",'
            '"ts":"2026-01-02T03:04:05.678Z"}'
        ),
        "EventBusName": "cc-native-events",
    }
    assert "signal" not in json.loads(entry["Detail"])  # the webhook body's extra member stays there


def test_bus_of_destination() -> None:
    assert bus_of("eventbridge:cc-native-events") == "cc-native-events"
    arn = "arn:aws:events:us-east-1:123456789012:event-bus/b"
    assert bus_of(f"eventbridge:{arn}") == arn
    assert bus_of("https://hooks.example/eventbridge:x") is None
    assert bus_of("intake") is None


@pytest.fixture
def no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNITTEST00000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unit-secret")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("no_aws_environment")
def test_a_bus_without_any_region_stops_the_start() -> None:
    with pytest.raises(EventBridgeNotConfigured, match="FULFILL_EVENTBRIDGE_REGION"):
        EventBridgePublisher(Settings(eventbridge_bus="cc-native-events"))
    EventBridgePublisher(Settings())  # no bus: nothing to check


@pytest.mark.usefixtures("no_aws_environment")
def test_the_region_comes_from_the_setting_else_the_arn() -> None:
    arn = "arn:aws:events:eu-west-1:123456789012:event-bus/b"
    publisher = EventBridgePublisher(Settings(eventbridge_bus=arn))
    assert publisher.client_for(arn).meta.region_name == "eu-west-1"
    publisher.close()
    publisher = EventBridgePublisher(Settings(eventbridge_bus="b", eventbridge_region="ap-south-1"))
    assert publisher.client_for("b").meta.region_name == "ap-south-1"
    publisher.close()


@pytest.mark.usefixtures("no_aws_environment")
def test_an_unreachable_endpoint_is_a_failed_delivery_without_botocore_retries() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    publisher = EventBridgePublisher(
        Settings(
            eventbridge_bus="b",
            eventbridge_region="us-east-1",
            eventbridge_endpoint_url=f"http://127.0.0.1:{port}",
        )
    )
    try:
        assert publisher.client_for("b").meta.config.retries == {"mode": "standard", "total_max_attempts": 1}
        assert publisher.publish("SIGNAL_CREATED", message(), "b") == (
            "EventBridge unreachable: EndpointConnectionError"
        )
        assert (
            publisher.publish("COMPENSATION", {}, "b")
            == "no EventBridge event is defined for topic COMPENSATION"
        )
    finally:
        publisher.close()
