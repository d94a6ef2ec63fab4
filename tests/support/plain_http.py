"""One-off HTTP calls for tests, with the suite's timeout rather than httpx's 5 s.

httpx's module functions (``httpx.get`` …) wait 5 s for each read. A test process on two busy
cores, with both backends' passes running side by side, can go that long between two reads of a
server in the same process: a CI run once failed with a read timeout on ``/healthz``. The suite's
clients (``Harness.client``) wait 30 s; these calls do too, so a slow machine makes a test slow,
not red.
"""

from __future__ import annotations

from typing import Any

import httpx

TIMEOUT_SECONDS = 30.0


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("timeout", TIMEOUT_SECONDS)
    return httpx.request(method, url, **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    return request("GET", url, **kwargs)


def head(url: str, **kwargs: Any) -> httpx.Response:
    return request("HEAD", url, **kwargs)


def options(url: str, **kwargs: Any) -> httpx.Response:
    return request("OPTIONS", url, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return request("POST", url, **kwargs)
