"""How a ``fulfill serve`` process runs Python's cyclic garbage collector.

Most of what a request or an execution allocates is freed by reference counting the moment it is
done with. The collector only has to find cycles, but at Python's defaults it runs a young
collection every 700 container allocations and keeps re-examining everything that survived one:
in a burst it ran all the time, and with many executions in flight (64 tool calls held open) each
run walked their live objects again. The service then spent about a sixth of its busy time, and a
quarter while holding calls, in the collector (docs/PERFORMANCE.md, "The garbage collector").

So a serving process collects its youngest generation every :data:`YOUNG_THRESHOLD` allocations
instead (``FULFILL_GC_YOUNG_THRESHOLD``), and once it is ready it moves everything built at
start-up (modules, models, routes, compiled schemas, pools) out of the collector's view
(``gc.freeze``): those live as long as the process, and a full collection no longer walks them.
Cycles are still collected, only later; what start-up left as garbage is collected first.

The threshold trades CPU for pauses: at 10,000 the collector does less in all, but in fewer and
longer pieces (about 23 ms of CPU each where 700 takes 1 to 5 ms), which an execution that meets one
waits out. Under load the saving wins; one execution at a time on an idle service, the pauses
showed in the slowest executions (docs/OPERATIONS.md, "The garbage collector"). So while the
process is all but idle, :class:`IdleCollector` runs the collection that the allocations would
soon trigger anyway, in the gap, where no execution waits for it; under load it stays out of the
way and the threshold governs.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import Counter
from collections.abc import Callable

# Young collections every 10,000 net container allocations instead of 700; the older generations
# keep their default ratios (every 10 young, every 10 middle) over that.
YOUNG_THRESHOLD = 10_000


def tune(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Collect the youngest generation every ``young_threshold`` net container allocations
    (``FULFILL_GC_YOUNG_THRESHOLD``); the older generations keep their ratios over it."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)


def freeze_start_up() -> int:
    """Collect what start-up left behind, then keep every object alive now out of later
    collections; answers how many objects that froze."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


# A process that used less than this share of one core over the last look is idle enough to
# collect in (an idle PostgreSQL worker's queue polls take about 8 %; one execution at a time, a
# look that holds one is well above).
IDLE_CPU_SHARE = 0.15
IDLE_LOOK_SECONDS = 0.05
# A young generation under this share of its threshold is not worth a collection of its own yet.
IDLE_YOUNG_SHARE = 0.1


def idle_generation(
    counts: tuple[int, int, int], thresholds: tuple[int, int, int], cpu_share: float
) -> int | None:
    """The generation to collect now, given the collector's counts and thresholds and the share
    of one core the process used since the last look; None to leave it to the allocations.

    Only the young and middle generations: the oldest one's collections are rare, and Python
    holds them back until enough has survived to be worth it, which a forced one would not."""
    if cpu_share >= IDLE_CPU_SHARE:
        return None
    young, middle, _ = counts
    if middle >= thresholds[1]:
        return 1
    if young >= thresholds[0] * IDLE_YOUNG_SHARE:
        return 0
    return None


class IdleCollector:
    """A thread that looks every ``look_seconds`` at the process's CPU (``cpu_seconds``: all its
    threads') and, when it was all but idle, runs the collection :func:`idle_generation` names."""

    def __init__(
        self, look_seconds: float = IDLE_LOOK_SECONDS, cpu_seconds: Callable[[], float] = time.process_time
    ) -> None:
        self._look_seconds = look_seconds
        self._cpu_seconds = cpu_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fulfill-gc-idle", daemon=True)
        self.collections: Counter[int] = Counter()

    def start(self) -> IdleCollector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        wall, cpu = time.monotonic(), self._cpu_seconds()
        while not self._stopped.wait(self._look_seconds):
            now_wall, now_cpu = time.monotonic(), self._cpu_seconds()
            share = (now_cpu - cpu) / max(now_wall - wall, 1e-9)
            generation = idle_generation(gc.get_count(), gc.get_threshold(), share)
            if generation is not None:
                gc.collect(generation)
                self.collections[generation] += 1
            # The look starts after the collection, so that its own CPU does not count as work.
            wall, cpu = time.monotonic(), self._cpu_seconds()
