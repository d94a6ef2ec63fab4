"""The service's HTTP API as the client commands use it: a refusal or an unreachable service
ends the command in one line on stderr."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import httpx
import typer

from fulfill.cli.auth import token_source
from fulfill.cli.options import settings
from fulfill.cli.output import err_console, error_line, options
from fulfill.client import ApiError, FulfillClient, default_limits
from fulfill.config import Settings
from fulfill.explain import CliError, network_reason, problem_line

T = TypeVar("T")


def local_service_url(current: Settings) -> str:
    """Where ``fulfill serve`` with these settings is reached from this machine."""
    host = current.host
    if host in ("0.0.0.0", ""):  # noqa: S104 - naming the wildcard address, not binding it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{current.port}"


class Service:
    """The service a command talks to: ``--url`` / ``FULFILL_URL``, else where ``fulfill serve``
    listens with this shell's settings; and where that address came from, for the messages."""

    def __init__(self, url: str | None) -> None:
        if url:
            self.base = url.rstrip("/")
            self.source = "--url / FULFILL_URL"
        else:
            self.base = local_service_url(settings())
            self.source = "FULFILL_HOST / FULFILL_PORT; set --url or FULFILL_URL for another service"
        self._http = httpx.Client(timeout=30.0, limits=default_limits())

    def client(self, token: str) -> FulfillClient:
        return FulfillClient(self.base, token, http=self._http)

    def close(self) -> None:
        self._http.close()

    def cannot_reach(self, exc: httpx.TransportError, advice: str) -> CliError:
        return CliError(
            f"cannot reach the service at {self.base} (from {self.source}): {network_reason(exc)}. {advice}",
            exit_code=2,
        )

    def call(self, token: str, call: Callable[[FulfillClient], T]) -> T:
        """``call`` with a client holding ``token``. A problem answer ends the command in one line
        on stderr naming its status, code and detail (exit 1); ``fulfill --debug …`` also prints
        the whole body."""
        try:
            return call(self.client(token))
        except httpx.TransportError as exc:
            raise self.cannot_reach(exc, "Is `fulfill serve` running there?") from None
        except ApiError as error:
            raise self._refused(error, token) from None

    def _refused(self, error: ApiError, token: str) -> Exception:
        if error.response.content and not error.is_json:
            return CliError(
                f"{error.method} {error.url} answered {error.status} with something that is not "
                "JSON: is that URL a fulfill service?"
            )
        if error.status < 400:
            return CliError(
                f"{error.method} {error.url} answered {error.status} with JSON that is not this "
                f"route's answer ({error.reason}): is that URL a fulfill service?"
            )
        if options.debug:
            err_console.print_json(data=error.response.json() if error.response.content else None)
        line = problem_line(error.response)
        if error.status in (401, 403):
            line += f" (the token came from {token_source(token)})"
        error_line(line)
        return typer.Exit(1)
