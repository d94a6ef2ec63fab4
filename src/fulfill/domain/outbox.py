"""What the outbox relay decides: which lane a destination is on, when a refused delivery is tried
again, when it is given up (dead letter), and how long a failing destination rests.

Pure functions; the relay (``engine/outbox_relay.py``) applies them.
"""

from __future__ import annotations

from dataclasses import dataclass

from fulfill.domain.notifications import parse_destination

# This service's own destinations: they start workflows (reruns, compensations) or take an
# ACTION_APPROVED in, and never wait behind an external destination.
ENGINE_DESTINATION = "engine"
INTAKE_DESTINATION = "intake"
ENGINE_DESTINATIONS = frozenset({ENGINE_DESTINATION, INTAKE_DESTINATION})
EVENTBRIDGE_PREFIX = "eventbridge:"

# Bounded label values for metrics: what kind of destination a delivery goes to. A tenant's
# notification channels (domain/notifications.py) are "slack", "email" and "notify_webhook".
DESTINATION_KINDS = ("engine", "webhook", "eventbridge", "slack", "email", "notify_webhook")


def destination_kind(destination: str) -> str:
    if destination in ENGINE_DESTINATIONS:
        return "engine"
    if destination.startswith(EVENTBRIDGE_PREFIX):
        return "eventbridge"
    channel = parse_destination(destination)
    if channel is not None:
        return channel.kind
    return "webhook"


def backoff_seconds(failures: int, *, base: float, cap: float) -> float:
    """base * 2^(failures-1), at most ``cap``: the wait after the ``failures``-th refusal in a row."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * (2 ** min(failures - 1, 62))))


@dataclass(frozen=True)
class AfterRefusal:
    """What follows a refused delivery: another try after ``delay_seconds``, or the dead letter."""

    dead_letter: bool
    delay_seconds: float = 0.0


def after_refusal(attempts: int, *, max_attempts: int, base: float, cap: float) -> AfterRefusal:
    """``attempts``: the tries made so far, the refused one included."""
    if attempts >= max_attempts:
        return AfterRefusal(dead_letter=True)
    return AfterRefusal(dead_letter=False, delay_seconds=backoff_seconds(attempts, base=base, cap=cap))
