"""The API's route class: a route written as a plain function runs in a worker thread once per
request, and no more.

FastAPI runs a plain-function route in a worker thread (it may wait on the database), and then,
for a route that returns a model rather than a ``Response``, hands the response model's validation
to a worker thread a second time. Each hand-off costs CPU (measured at 60 to 70 µs in one process, on
top of which a loaded process waits for the GIL once more), and the second buys nothing: the
validation of a returned model neither blocks nor waits. A route of this class runs its function
in a worker thread itself, as an ``async`` endpoint; FastAPI then validates and serialises the
answer on the event loop. Everything else (parameters, dependencies, errors, the OpenAPI schema,
the context variables the function sees: the request's span and log context) is as before.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from fastapi.routing import APIRoute


def in_worker_thread(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` as an ``async`` endpoint that calls it in a worker thread (anyio's default
    limiter, the one FastAPI uses); an ``async`` function or a generator (a streamed answer) is
    returned as it is."""
    if not inspect.isfunction(function) or inspect.iscoroutinefunction(function):
        return function
    if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
        return function

    @functools.wraps(function)  # FastAPI reads the signature, name and docstring through __wrapped__
    async def endpoint(*args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs))

    return endpoint


class OneHopRoute(APIRoute):
    """An ``APIRoute`` whose plain-function endpoint runs in one worker thread hop per request."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, in_worker_thread(endpoint), **kwargs)
