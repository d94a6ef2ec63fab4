"""Process logging: one line per event, with no request bodies, tokens, SQL or stack traces.

Exception messages can carry SQL, parameters or secrets (a database driver's message quotes the
statement), so failures are logged as their type and the place they were raised, never their text.
"""

from __future__ import annotations

import logging
import traceback

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


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True
    )
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


def describe_failure(exc: BaseException) -> str:
    """``TypeName at module.py:123``: enough to find the failure, nothing that could leak."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__} at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}"
