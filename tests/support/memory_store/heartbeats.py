"""``uow.heartbeats`` in memory: not held. The steps and use cases tested in memory do not touch
executor heartbeats; every method says so when called."""

from __future__ import annotations

_NOT_HELD = "the in-memory store does not hold executor heartbeats"


class MemoryHeartbeatsRepository:
    def __init__(self, tables: object) -> None:
        self._t = tables

    def beat(self, executor_id: str, *, version: str) -> float:
        raise NotImplementedError(_NOT_HELD)

    def all_beats(self, *, version: str) -> dict[str, float]:
        raise NotImplementedError(_NOT_HELD)

    def claim(self, executor_id: str, *, seen_beat: float, by: str, lease_seconds: float) -> bool:
        raise NotImplementedError(_NOT_HELD)

    def forget(self, executor_id: str, *, seen_beat: float) -> None:
        raise NotImplementedError(_NOT_HELD)
