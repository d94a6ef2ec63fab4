"""Executor heartbeats and the claim a live worker takes on a lost one: the repository port (``store/heartbeats.py`` implements it over SQL)."""

from __future__ import annotations

from typing import Protocol


class HeartbeatsRepository(Protocol):
    def beat(self, executor_id: str, *, version: str) -> float:
        """Store this executor's beat (database clock), clearing any claim on it: it is alive."""
        ...

    def all_beats(self, *, version: str) -> dict[str, float]:
        """The last beat of every executor of ``version``."""
        ...

    def claim(self, executor_id: str, *, seen_beat: float, by: str, lease_seconds: float) -> bool:
        """Compare-and-set: ``by`` takes over ``executor_id`` only if its beat is still the one ``by``
        watched (a late beat wins) and nobody else holds an unexpired claim on it."""
        ...

    def forget(self, executor_id: str, *, seen_beat: float) -> None:
        """Drop a recovered executor's row, unless it beat again meanwhile."""
        ...
