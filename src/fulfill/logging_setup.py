"""Process logging: one line per event, no request bodies, no tokens."""

from __future__ import annotations

import logging

_NOISY = ("httpx", "httpx2", "httpcore", "httpcore2", "mcp", "dbos", "uvicorn.access", "alembic")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True
    )
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
