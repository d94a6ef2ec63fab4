"""The outbox relay's decisions: lanes, backoff, dead letters."""

from __future__ import annotations

import pytest

from fulfill.domain.outbox import after_refusal, backoff_seconds, destination_kind


@pytest.mark.parametrize(
    ("destination", "kind"),
    [
        ("engine", "engine"),
        ("intake", "engine"),
        ("eventbridge:arn:aws:events:eu-west-1:123456789012:event-bus/b", "eventbridge"),
        ("https://hooks.example.com/x", "webhook"),
    ],
)
def test_every_destination_has_a_kind(destination: str, kind: str) -> None:
    assert destination_kind(destination) == kind


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_seconds(n, base=1.0, cap=10.0) for n in range(6)] == [0.0, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert backoff_seconds(10_000, base=1.0, cap=300.0) == 300.0  # no overflow after many refusals


def test_the_last_allowed_try_ends_in_the_dead_letter() -> None:
    assert after_refusal(1, max_attempts=3, base=1.0, cap=300.0).delay_seconds == 1.0
    assert not after_refusal(2, max_attempts=3, base=1.0, cap=300.0).dead_letter
    assert after_refusal(3, max_attempts=3, base=1.0, cap=300.0).dead_letter
    assert after_refusal(1, max_attempts=1, base=1.0, cap=300.0).dead_letter
