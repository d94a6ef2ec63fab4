"""Process logging: one line per event, with no request bodies, tokens, SQL or stack traces.

Exception messages can carry SQL, parameters or secrets (a database driver's message quotes the
statement), so failures are logged as their type and the place they were raised, never their text.

Two formats (``FULFILL_LOG_FORMAT``): ``text`` (the default), one human-readable line per event,
and ``json``, one JSON object per line with ``ts``, ``level``, ``logger``, ``message`` and, when
known, the execution it belongs to (``action_intent_id``, ``tenant_id``, ``account_id``,
``trace_id``, ``step``), taken from the :func:`log_context` in effect where the event was logged;
``trace_id`` is otherwise the active OpenTelemetry span's (``fulfill.tracing``), so a request's
lines carry its trace id too.

Whatever the format, every handler redacts what looks like a credential (bearer tokens, JWTs,
``Authorization`` headers, ``token=…``/``"password": "…"`` pairs, AWS secret keys) and the
configured secrets, in the message and in exception text, replacing them with ``[REDACTED]``.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Final, Literal, TextIO, TypeVar

from opentelemetry import trace
from opentelemetry.trace.span import format_trace_id

_NOISY = (
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "mcp",
    "dbos",
    "uvicorn.access",
    "alembic",
    "boto3",
    "botocore",  # its debug lines carry request headers (signatures)
    "urllib3",
)

LogFormat = Literal["text", "json"]
REDACTED: Final = "[REDACTED]"
# The fields a log context may carry, in the order they are shown.
CONTEXT_FIELDS: Final = ("action_intent_id", "tenant_id", "account_id", "trace_id", "step")
# A configured secret shorter than this is not searched for (it would blank out ordinary words).
MIN_SECRET_LENGTH: Final = 4
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_context: ContextVar[Mapping[str, str] | None] = ContextVar("fulfill_log_context", default=None)
_configured = False

A = TypeVar("A")
R = TypeVar("R")


# --- Log context ---------------------------------------------------------------------------------


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Within this block (this thread or task and what it starts), log events carry ``fields``.

    Nested blocks add to (or override) the outer fields; ``None`` values are left out. Only the
    fields of :data:`CONTEXT_FIELDS` appear in JSON lines and text lines.
    """
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context fields: {', '.join(sorted(unknown))}")
    merged = {**(_context.get() or {}), **{k: str(v) for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_log_context() -> dict[str, str]:
    """The fields of the :func:`log_context` in effect; ``trace_id``, when no block set it, is
    the active span's (so every line logged while serving a request or running a step has one)."""
    fields = dict(_context.get() or {})
    if "trace_id" not in fields:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            fields["trace_id"] = format_trace_id(span_context.trace_id)
    return fields


def execution_log_context(step: str, context: object) -> dict[str, object]:
    """The log context of one step of an execution (``context``: an ``ExecutionContext``)."""
    fields: dict[str, object] = {name: getattr(context, name, None) for name in CONTEXT_FIELDS[:-1]}
    fields["step"] = step
    return fields


# --- Redaction -----------------------------------------------------------------------------------

# Header-like names whose whole value is a credential.
_HEADER = re.compile(
    r"(?i)(?<![A-Za-z0-9_-])((?:proxy-)?authorization|x-amz-security-token|x-api-key|cookie|set-cookie)"
    r"""(["']?\s*[:=]\s*["']?)([^"'\r\n]+)"""
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/]{8,}=*")
# A JWT (JWS compact form): base64url header, payload and signature; the header is JSON, so it
# starts with "eyJ" ('{"').
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_SECRET_KEY = (
    r"[A-Za-z0-9_.-]*(?:token|secret|password|passwd|api[_-]?key|private[_-]?key|secret[_-]?access[_-]?key)"  # noqa: S105
)
# "key": "value" (JSON) and 'key': 'value' (a Python dict's repr).
_QUOTED_PAIR = re.compile(
    r"""(?i)(?P<q>["'])(?P<key>""" + _SECRET_KEY + r""")(?P=q)(?P<sep>\s*:\s*)(?P<vq>["'])"""
    r"""(?P<value>(?:\\.|(?!(?P=vq)).)*)(?P=vq)"""
)
# key=value, key = "value", key='value'
_PLAIN_PAIR = re.compile(
    r"(?i)(?<![A-Za-z0-9_.-])(?P<key>" + _SECRET_KEY + r")(?P<sep>\s*=\s*)"
    r"""(?P<value>"[^"]*"|'[^']*'|[^\s&,;"'}\])]+)"""
)
# An AWS secret access key: 40 characters of base64 (not a 40-digit hex digest such as a SHA-1).
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])")
_HEX = re.compile(r"[0-9a-fA-F]{40}")


def _aws_secret(match: re.Match[str]) -> str:
    text = match.group(0)
    if _HEX.fullmatch(text) or not (re.search(r"[A-Z]", text) and re.search(r"[a-z0-9/+]", text)):
        return text
    return REDACTED


class Redactor:
    """Replaces credentials, and the given secret values, with ``[REDACTED]``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._secrets = re.compile("|".join(re.escape(s) for s in values)) if values else None

    def __call__(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        text = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
        text = _JWT.sub(REDACTED, text)
        text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
        text = _QUOTED_PAIR.sub(
            lambda m: f"{m['q']}{m['key']}{m['q']}{m['sep']}{m['vq']}{REDACTED}{m['vq']}", text
        )
        text = _PLAIN_PAIR.sub(lambda m: f"{m['key']}{m['sep']}{REDACTED}", text)
        return _AWS_SECRET.sub(_aws_secret, text)


class RedactionFilter(logging.Filter):
    """A handler filter: redacts the record's message and exception text, and notes its context.

    The record is changed in place (its message is formatted once, here), so every handler that
    sees it afterwards sees the redacted text.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "log_context"):
            record.log_context = current_log_context()
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the formatter's to report
            return True
        record.msg, record.args = self.redactor(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True


def _context_of(record: logging.LogRecord) -> dict[str, str]:
    context = getattr(record, "log_context", None)
    fields = dict(context) if isinstance(context, Mapping) else current_log_context()
    for name in CONTEXT_FIELDS:  # extra={"action_intent_id": ...} wins
        value = getattr(record, name, None)
        if value is not None:
            fields[name] = str(value)
    return {name: fields[name] for name in CONTEXT_FIELDS if name in fields}


class TextFormatter(logging.Formatter):
    """``time LEVEL logger message [field=value …]`` (the context fields, when known), redacted."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(_TEXT_FORMAT)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        line = self.redactor(super().format(record))
        context = _context_of(record)
        if context:
            suffix = self.redactor(" ".join(f"{k}={v}" for k, v in context.items()))
            head, newline, rest = line.partition("\n")
            line = f"{head} [{suffix}]{newline}{rest}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the context fields, exc."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry: dict[str, object] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redactor(record.getMessage()),
        }
        entry.update(_context_of(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = self.redactor(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.redactor(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def build_handler(
    log_format: LogFormat = "text", secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """A stream handler (stderr by default) in ``log_format`` that redacts ``secrets``."""
    handler: logging.Handler = logging.StreamHandler(stream)
    redactor = Redactor(secrets)
    handler.addFilter(RedactionFilter(redactor))
    formatter = JsonFormatter(redactor) if log_format == "json" else TextFormatter(redactor)
    handler.setFormatter(formatter)
    return handler


def configure_logging(level: str, *, log_format: LogFormat = "text", secrets: Iterable[str] = ()) -> None:
    """Root logging for the process: one handler on stderr, redacting, in ``log_format``."""
    global _configured  # the process's logging is configured once, here
    if log_format not in ("text", "json"):
        raise ValueError(f"unknown log format {log_format!r} (text or json)")
    logging.basicConfig(level=level.upper(), handlers=[build_handler(log_format, secrets)], force=True)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    _configured = True


def logging_configured() -> bool:
    """Whether :func:`configure_logging` set up this process's logging (servers then use it)."""
    return _configured


def describe_failure(exc: BaseException) -> str:
    """``TypeName at module.py:123``: enough to find the failure, nothing that could leak."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__} at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}"
