"""Wall-clock time, with an offset that can be moved (operators' drills and tests use it)."""

from __future__ import annotations

import threading
import time

from fulfill.domain.time import iso_from_epoch


class SystemClock:
    def __init__(self, offset_seconds: float = 0.0) -> None:
        self._offset = offset_seconds
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self._offset

    def now_iso(self) -> str:
        return iso_from_epoch(self.now())

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds
