"""What keeps a stopped service's app alive in a process that builds many of them.

FastAPI classifies each endpoint and dependency callable (coroutine? generator?) once and keeps
the answer in bounded ``lru_cache``\\ s of 4,096 entries keyed by the callable itself. Some of
those callables are closures over their app (``fastapi_offline``'s documentation pages), so the
caches keep the last dozen or so apps alive, each with its stopped service: its database
engines, DBOS's state and every object a test left in it. A test process that starts a service
per module then carries about two million objects more than it needs, which every full garbage
collection walks (two of them at the end of each pytest worker, by pytest itself).
"""

from __future__ import annotations

from fastapi.dependencies import models

_CACHES = ("_is_coroutine_callable_cached", "_is_gen_callable_cached", "_is_async_gen_callable_cached")


def forget_built_apps() -> int:
    """Clear FastAPI's callable caches; the number of caches cleared (0 once FastAPI drops them)."""
    cleared = 0
    for name in _CACHES:
        cache = getattr(models, name, None)
        if cache is not None and hasattr(cache, "cache_clear"):
            cache.cache_clear()
            cleared += 1
    return cleared
