"""Lost executors: which silent workers a live one may take over.

Every worker stores its beat (by the database clock) every ``FULFILL_HEARTBEAT_SECONDS``. An
observer does not compare a beat with any clock: it remembers when it first saw each executor's
current beat (by its own monotonic clock), and calls an executor lost once it has watched that
same beat for ``FULFILL_EXECUTOR_LOST_SECONDS``. Clock skew between hosts therefore plays no part,
and neither does an outage of the database: nobody can beat during one, but nobody can watch
either, and an observer that could not read the beats forgets what it saw and starts again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Sighting:
    beat: float  # the executor's last beat, as stored
    since: float  # the observer's monotonic time when it first saw this beat


def watch(
    previous: Mapping[str, Sighting], beats: Mapping[str, float], *, me: str, now: float
) -> dict[str, Sighting]:
    """What the observer ``me`` has seen once it has read ``beats`` at ``now``: an executor whose
    beat is unchanged keeps its first sighting, a new beat starts a new one, a row gone is forgotten."""
    seen: dict[str, Sighting] = {}
    for executor, beat in beats.items():
        if executor == me:
            continue
        before = previous.get(executor)
        seen[executor] = before if before is not None and before.beat == beat else Sighting(beat, now)
    return seen


def lost(seen: Mapping[str, Sighting], *, now: float, lost_seconds: float) -> list[str]:
    """The executors watched silent for at least ``lost_seconds``, in a stable order."""
    return sorted(executor for executor, sighting in seen.items() if now - sighting.since >= lost_seconds)
