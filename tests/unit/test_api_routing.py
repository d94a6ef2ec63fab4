"""The API's route class: a plain-function route runs in a worker thread, once per request."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import Annotated, Any

import anyio.to_thread
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from fulfill.api import admin, credentials, events, executions, intents, ledger, notifications, policies
from fulfill.api.routing import OneHopRoute, in_worker_thread

_REQUEST_MARK: contextvars.ContextVar[str] = contextvars.ContextVar("request_mark", default="unset")


class Answer(BaseModel):
    thread: str
    mark: str


async def _mark() -> None:
    _REQUEST_MARK.set("set on the loop")


def _app(route_class: type[APIRoute], loop_thread: list[str]) -> FastAPI:
    router = APIRouter(route_class=route_class)

    @router.post("/answer", status_code=201, response_model=Answer)
    def answer(response: Response, _marked: Annotated[None, Depends(_mark)]) -> Answer:
        """Which thread answered, and what the request's context says there."""
        response.headers["X-Seen"] = "yes"
        return Answer(thread=threading.current_thread().name, mark=_REQUEST_MARK.get())

    @router.get("/boom", response_model=Answer)
    def boom() -> Answer:
        raise RuntimeError("boom")

    app = FastAPI()
    app.include_router(router)
    loop_thread.append(threading.current_thread().name)
    return app


def _counting_hops(monkeypatch: pytest.MonkeyPatch) -> list[Callable[..., Any]]:
    hops: list[Callable[..., Any]] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        hops.append(function)
        return await run_sync(function, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    return hops


def _send(app: FastAPI, method: str, path: str) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path)

    return asyncio.run(send())


def test_a_plain_function_route_runs_in_one_worker_thread_hop(monkeypatch: pytest.MonkeyPatch) -> None:
    loop_thread: list[str] = []
    hops = _counting_hops(monkeypatch)
    response = _send(_app(OneHopRoute, loop_thread), "POST", "/answer")
    assert response.status_code == 201, response.text
    assert response.headers["X-Seen"] == "yes"
    body = response.json()
    assert body["thread"] != loop_thread[0]  # the function ran off the event loop...
    assert body["mark"] == "set on the loop"  # ...seeing the request's context variables
    assert len(hops) == 1  # and the answer's validation did not go to a thread again


def test_fastapis_own_route_hands_a_returned_model_to_a_thread_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the route class saves: FastAPI's plain route takes two hops for the same request."""
    hops = _counting_hops(monkeypatch)
    response = _send(_app(APIRoute, []), "POST", "/answer")
    assert response.status_code == 201, response.text
    assert len(hops) == 2


def test_an_error_in_the_worker_thread_reaches_the_app_as_before() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        _send(_app(OneHopRoute, []), "GET", "/boom")


def test_the_route_keeps_the_functions_name_docstring_and_parameters() -> None:
    app = _app(OneHopRoute, [])
    operation = app.openapi()["paths"]["/answer"]["post"]
    assert operation["operationId"] == "answer_answer_post"
    assert operation["description"] == "Which thread answered, and what the request's context says there."
    assert operation["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Answer"
    }


def test_async_functions_and_generators_are_left_as_they_are() -> None:
    async def coroutine() -> None:
        return None

    def generator() -> Any:
        yield b""

    assert in_worker_thread(coroutine) is coroutine
    assert in_worker_thread(generator) is generator


@pytest.mark.parametrize(
    "module", [admin, credentials, events, executions, intents, ledger, notifications, policies]
)
def test_every_api_router_uses_the_route_class(module: Any) -> None:
    routes = [route for route in module.router.routes if isinstance(route, APIRoute)]
    assert routes
    assert all(isinstance(route, OneHopRoute) for route in routes)
