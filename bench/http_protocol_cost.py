"""CPU per request of the HTTP/1.1 protocol ``fulfill serve`` reads requests with, against uvicorn's
own, with nothing else in the measure.

    python -m bench.http_protocol_cost --requests 20000 --rounds 15

Each protocol is fed the same keep-alive request (a ``POST`` with a 600-byte bearer token and a
90-byte body, as a client of the API sends) ``--requests`` times over one connection, in memory (no
socket), on uvloop; a trivial ASGI app answers each. The figure is this process's CPU per request,
the median over rounds; the two protocols take turns, the order swapped every round. The difference
is what bounding a request's head (``FULFILL_MAX_HEADER_BYTES``,
``FULFILL_REQUEST_HEADER_TIMEOUT_SECONDS``) adds to a request: a search for the head's end in each
read and a timer armed and cancelled. The API's own cost per request (``bench.api_request_cost``)
is a thousand times larger, so a difference this small cannot be read there.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bench.common import emit
from fulfill.api.problems import problem_body
from fulfill.http_server import bounded_http_protocol

REQUEST = (
    b"POST /intents HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n"
    b"Connection: keep-alive\r\nUser-Agent: python-httpx/0.28.1\r\nAuthorization: Bearer "
    + b"e" * 600
    + b"\r\nContent-Type: application/json\r\nContent-Length: 90\r\n\r\n"
    + b"x" * 90
)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


class _Transport(asyncio.Transport):
    """What the protocol writes to, counted instead of sent."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False
        self.answered = 0  # answers of 200 written

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if bytes(data[:12]) == b"HTTP/1.1 200":
            self.answered += 1

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def cpu_us_per_request(protocol_class: type[asyncio.Protocol], requests: int) -> float:
    """This process's CPU per request, in microseconds, for ``requests`` answered over one connection."""
    config = uvicorn.Config(_app, log_level="warning", access_log=False)
    config.load()
    state = ServerState()
    protocol: Any = protocol_class(config=config, server_state=state, app_state={})  # type: ignore[call-arg]
    transport = _Transport()
    protocol.connection_made(transport)
    started = time.process_time()
    for _ in range(requests):
        protocol.data_received(REQUEST)
        while state.tasks:  # the app's task answers the request
            await asyncio.sleep(0)
    spent = time.process_time() - started
    if transport.closing or transport.answered != requests:
        raise RuntimeError(f"{transport.answered} answers written for {requests} requests")
    protocol.connection_lost(None)
    return spent / requests * 1e6


async def _run(requests: int, rounds: int) -> dict[str, Any]:
    protocols: dict[str, type[asyncio.Protocol]] = {
        "uvicorn": HttpToolsProtocol,
        "bounded": bounded_http_protocol(32_768, 10.0, problem_body),
    }
    figures: dict[str, list[float]] = {name: [] for name in protocols}
    for round_index in range(rounds):
        names = list(protocols) if round_index % 2 == 0 else list(protocols)[::-1]
        for name in names:
            figures[name].append(await cpu_us_per_request(protocols[name], requests))
    medians = {name: round(statistics.median(values), 2) for name, values in figures.items()}
    return {
        "requests_per_round": requests,
        "rounds": rounds,
        "cpu_us_per_request": medians,
        "cpu_us_per_request_rounds": {
            name: [round(v, 2) for v in values] for name, values in figures.items()
        },
        "added_us_per_request": round(medians["bounded"] - medians["uvicorn"], 2),
    }


def run(requests: int = 20_000, rounds: int = 15) -> dict[str, Any]:
    return uvloop.run(_run(requests, rounds))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000, help="requests per protocol and round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    emit(run(args.requests, args.rounds), args.json)


if __name__ == "__main__":
    main()
