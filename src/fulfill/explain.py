"""One line for a person at a terminal: what went wrong, and what to do about it.

The command line and ``fulfill serve`` print these instead of tracebacks (``--debug`` shows the
traceback). Database URLs are shown without their password, and a password is masked wherever it
appears in a message.
"""

from __future__ import annotations

import errno
import re
from typing import Any

import httpx
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

_MAX = 300
_ERRNO_PREFIX = re.compile(r"^\[Errno -?\d+\]\s*")


class CliError(Exception):
    """A failure already explained in one line; ``exit_code`` 2 means configuration or reachability."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


_PROBLEM_HINTS = {
    "TOKEN_SIGNATURE_INVALID": "the service signs tokens with another FULFILL_JWT_SECRET than this "
    "shell's: set the same secret here, or pass a token with --token",
    "TOKEN_ISSUER_NOT_ACCEPTED": "the token's issuer is not the service's FULFILL_JWT_ISSUER",
    "TOKEN_AUDIENCE_NOT_ACCEPTED": "the token's audience is not the service's FULFILL_JWT_AUDIENCE",
    "TOKEN_EXPIRED": "get a new token (fulfill token --tenant T)",
}


def problem_hint(problem: object) -> str | None:
    """What to do about a problem answer of the API that a first-time user meets, if anything."""
    if not isinstance(problem, dict):
        return None
    code = problem.get("code")
    if code == "INVALID_PARAMETERS" and "must be of type" in str(problem.get("detail", "")):
        return "--param key=value sends a string; key:=JSON sends a number, boolean, list or object"
    return _PROBLEM_HINTS.get(code) if isinstance(code, str) else None


def _first_error(problem: dict[str, Any]) -> str:
    """``: body/decision: Input should be …`` (and how many more) for a body the schema refused."""
    errors = problem.get("errors")
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return ""
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f": {first.get('path', '')}: {first.get('message', '')}{more}"


def problem_line(response: httpx.Response) -> str:
    """``POST /intents answered 401 (TOKEN_SIGNATURE_INVALID: token signature invalid)``, and a hint."""
    try:
        problem = response.json()
    except ValueError:
        problem = None
    what = f"{response.request.method} {response.request.url.path} answered {response.status_code}"
    if isinstance(problem, dict) and problem.get("detail"):
        what += f" ({problem.get('code', 'ERROR')}: {problem['detail']}{_first_error(problem)})"
    hint = problem_hint(problem)
    return f"{what}; {hint}" if hint else what


def shown_url(database_url: str) -> str:
    """A database URL as it may be printed: no password."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an unparseable URL)"


def explain(exc: BaseException, *, database_url: str | None = None) -> str:
    if isinstance(exc, CliError):
        return exc.message
    if isinstance(exc, ValidationError):
        return "configuration: " + "; ".join(_setting_problem(error) for error in exc.errors())
    if isinstance(exc, httpx.TransportError):
        where = f" {exc.request.url}" if _has_request(exc) else ""
        return f"cannot reach{where}: {network_reason(exc)}"
    if isinstance(exc, DBAPIError | SQLAlchemyError):
        return _redact(_database_problem(exc, database_url), database_url)
    if isinstance(exc, OSError):
        return _redact(_os_problem(exc), database_url)
    from fulfill.credentials.vault import ConfigurationError

    if isinstance(exc, ConfigurationError):  # written for a person, with the way out: all of it
        return _redact(str(exc), database_url)
    first = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return _redact(text[:_MAX], database_url)


def network_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    text = _ERRNO_PREFIX.sub("", str(exc).strip()) or type(exc).__name__
    if text[:1].isupper() and text[1:2].islower():  # "Connection refused" → "connection refused"
        text = text[0].lower() + text[1:]
    return text


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018 - raises RuntimeError when the error carries no request
    except RuntimeError:
        return False
    return True


def _setting_problem(error: object) -> str:
    assert isinstance(error, dict)
    location = [str(part) for part in error.get("loc", ())]
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if not location:
        return message
    return f"FULFILL_{location[0].upper()}: {message}"


def _database_problem(exc: BaseException, database_url: str | None) -> str:
    where = f"the database {shown_url(database_url)}" if database_url else "the database"
    original = getattr(exc, "orig", None) or exc
    first = (str(original).strip().splitlines() or [type(original).__name__])[0]
    fix = " Check FULFILL_DATABASE_URL, and that the database server runs." if _is_connection(first) else ""
    return f"{where} cannot be used: {first[:_MAX]}.{fix}"


def _is_connection(message: str) -> bool:
    lowered = message.lower()
    return any(
        fragment in lowered
        for fragment in ("connection", "could not connect", "unable to open", "does not exist", "password")
    )


def _os_problem(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the address is already in use"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason}: {exc.filename}" if exc.filename else reason


def _redact(text: str, database_url: str | None) -> str:
    if not database_url:
        return text
    try:
        password = make_url(database_url).password
    except ArgumentError:
        return text
    if password:
        text = text.replace(str(password), "***")
    return text
