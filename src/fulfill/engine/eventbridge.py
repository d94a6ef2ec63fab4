"""The EventBridge sink of the outbox: signals leave as the reference's ``SIGNAL_CREATED`` events.

The reference's RecordOutcome publishes one PutEvents entry per execution signal (reference spec
§10.2): ``Source`` ``cc-native.perception``, ``DetailType`` ``SIGNAL_CREATED`` and ``Detail`` the
JSON envelope ``{eventType, source: "perception", payload: {signalId, signalType, accountId},
traceId, tenantId, ts}``, serialized compactly in that key order. It emits no other execution
event on the bus. This module builds the same entry from the outbox message and puts it with
boto3; the relay calls :meth:`EventBridgePublisher.publish` for every delivery whose destination
is ``eventbridge:<bus>``.

The service's own ``APPROVAL_ESCALATED`` event (an approval window ended and a second approver
group was asked; ``domain/escalation.py``) goes on the same bus with ``Source`` ``fulfill``,
``DetailType`` ``APPROVAL_ESCALATED`` and the outbox message as its ``Detail``.

A delivery is refused, and retried by the relay with its backoff, when PutEvents raises (a client
error such as a missing bus or denied access, a network error, missing credentials) or answers
with ``FailedEntryCount > 0``. botocore's own retries are off: the outbox is the one retry layer,
and a put never outlives the relay's lease. What is recorded or logged about a failure is the
error's code or type only, never a message, header or credential.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fulfill.config import EVENTBRIDGE_DESTINATION_PREFIX, Settings, event_bus_region
from fulfill.domain.escalation import ESCALATION_TOPIC
from fulfill.domain.escalation import EVENT_SOURCE as ESCALATION_SOURCE
from fulfill.engine.botocore_idle import drop_idle_connections

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

log = logging.getLogger(__name__)

SIGNAL_TOPIC = "SIGNAL_CREATED"
SIGNAL_SOURCE = "cc-native.perception"  # the reference's createEventSource("perception")
SIGNAL_ENVELOPE_SOURCE = "perception"


class EventBridgeNotConfigured(ValueError):
    """The bus is configured but no client can be made for it (no region anywhere)."""


def bus_of(destination: str) -> str | None:
    """The bus an outbox destination names, or None when it is not an EventBridge destination."""
    if destination.startswith(EVENTBRIDGE_DESTINATION_PREFIX):
        return destination[len(EVENTBRIDGE_DESTINATION_PREFIX) :]
    return None


def escalation_entry(message: dict[str, Any], bus: str) -> PutEventsRequestEntryTypeDef:
    """The PutEvents entry of an ``APPROVAL_ESCALATED`` outbox message: ``Source`` ``fulfill``,
    ``DetailType`` ``APPROVAL_ESCALATED``, and the message itself (``domain/escalation.py``) as
    the detail."""
    return {
        "Source": ESCALATION_SOURCE,
        "DetailType": ESCALATION_TOPIC,
        "Detail": json.dumps(message, separators=(",", ":"), ensure_ascii=False),
        "EventBusName": bus,
    }


def signal_entry(message: dict[str, Any], bus: str) -> PutEventsRequestEntryTypeDef:
    """The reference's PutEvents entry for a ``SIGNAL_CREATED`` outbox message."""
    detail = {
        "eventType": SIGNAL_TOPIC,
        "source": SIGNAL_ENVELOPE_SOURCE,
        "payload": {
            "signalId": message["payload"]["signalId"],
            "signalType": message["payload"]["signalType"],
            "accountId": message["payload"]["accountId"],
        },
        "traceId": message["traceId"],
        "tenantId": message["tenantId"],
        "ts": message["ts"],
    }
    return {
        "Source": SIGNAL_SOURCE,
        "DetailType": SIGNAL_TOPIC,
        # As JSON.stringify writes it: no spaces, non-ASCII characters as they are.
        "Detail": json.dumps(detail, separators=(",", ":"), ensure_ascii=False),
        "EventBusName": bus,
    }


# The event each outbox topic becomes on a bus.
_ENTRIES: dict[str, Callable[[dict[str, Any], str], PutEventsRequestEntryTypeDef]] = {
    SIGNAL_TOPIC: signal_entry,
    ESCALATION_TOPIC: escalation_entry,
}


class EventBridgePublisher:
    """Puts outbox messages on EventBridge buses; one boto3 client per region, made on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clients: dict[str | None, EventBridgeClient] = {}
        self._lock = threading.Lock()
        if settings.eventbridge_bus:
            self.client_for(settings.eventbridge_bus)  # a missing region stops the start, not a put

    def _region_for(self, bus: str) -> str | None:
        return self._settings.eventbridge_region or event_bus_region(bus) or None

    def client_for(self, bus: str) -> EventBridgeClient:
        region = self._region_for(bus)
        with self._lock:
            client = self._clients.get(region)
            if client is not None:
                return client
            import boto3
            from botocore.config import Config
            from botocore.exceptions import NoRegionError

            timeout = self._settings.eventbridge_timeout_seconds
            config = Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"mode": "standard", "total_max_attempts": 1},
            )
            try:
                client = boto3.session.Session().client(
                    "events",
                    region_name=region,
                    endpoint_url=self._settings.eventbridge_endpoint_url or None,
                    config=config,
                )
                drop_idle_connections(client)
            except NoRegionError:
                raise EventBridgeNotConfigured(
                    "EventBridge needs a region: set FULFILL_EVENTBRIDGE_REGION, give "
                    "FULFILL_EVENTBRIDGE_BUS as an ARN, or configure AWS_REGION"
                ) from None
            self._clients[region] = client
            return client

    def publish(self, topic: str, message: dict[str, Any], bus: str) -> str | None:
        """None when the bus accepted the message's event, else why it did not (no secrets)."""
        from botocore.exceptions import BotoCoreError, ClientError

        entry_of = _ENTRIES.get(topic)
        if entry_of is None:
            return f"no EventBridge event is defined for topic {topic}"
        try:
            client = self.client_for(bus)
            response = client.put_events(Entries=[entry_of(message, bus)])
        except EventBridgeNotConfigured:
            return "EventBridge has no region configured"
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "unknown"))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            return f"EventBridge refused PutEvents: {code} (HTTP {status})"
        except BotoCoreError as exc:
            return f"EventBridge unreachable: {type(exc).__name__}"
        if response.get("FailedEntryCount", 0) > 0:
            entries = response.get("Entries") or [{}]
            return f"EventBridge failed the entry: {entries[0].get('ErrorCode', 'unknown')}"
        return None

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
