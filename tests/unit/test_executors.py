"""Which silent executors a live worker may take over (domain/executors.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fulfill.config import Settings
from fulfill.domain.executors import Sighting, lost, watch


def test_an_executor_is_lost_only_after_its_beat_was_watched_unchanged_for_the_bound() -> None:
    seen = watch({}, {"me": 5.0, "w1": 100.0}, me="me", now=10.0)
    assert seen == {"w1": Sighting(100.0, 10.0)}  # never itself
    assert lost(seen, now=39.0, lost_seconds=30) == []
    seen = watch(seen, {"me": 6.0, "w1": 100.0}, me="me", now=40.0)
    assert lost(seen, now=40.0, lost_seconds=30) == ["w1"]


def test_a_late_beat_starts_the_watch_again_and_a_gone_row_is_forgotten() -> None:
    seen = watch({}, {"w1": 100.0, "w2": 7.0}, me="me", now=0.0)
    seen = watch(seen, {"w1": 131.0}, me="me", now=29.0)  # w1 beat (late); w2 was taken over
    assert seen == {"w1": Sighting(131.0, 29.0)}
    assert lost(seen, now=58.0, lost_seconds=30) == []


def test_an_observer_that_forgot_what_it_saw_watches_the_whole_bound_again() -> None:
    # After an outage of the database nobody could beat; the observer starts from nothing.
    seen = watch({}, {"w1": 100.0}, me="me", now=500.0)
    assert lost(seen, now=500.0, lost_seconds=30) == []


def test_the_silence_bound_must_cover_several_beats() -> None:
    with pytest.raises(ValidationError, match="FULFILL_EXECUTOR_LOST_SECONDS"):
        Settings(heartbeat_seconds=5, executor_lost_seconds=10)
    assert Settings(heartbeat_seconds=5, executor_lost_seconds=15).executor_lost_seconds == 15
