"""Serving a test's stand-in HTTP server (``socketserver``/``http.server``) from a thread.

``serve_forever`` looks for a ``shutdown()`` once per ``poll_interval``, 0.5 s by default, so
every stand-in stopped at a test's end waited a quarter of a second on average before
``shutdown()`` returned. The suite stops hundreds of them; here they look every 20 ms.
"""

from __future__ import annotations

import socketserver
import threading

POLL_SECONDS = 0.02


def serve_in_thread(server: socketserver.BaseServer, *, name: str | None = None) -> threading.Thread:
    """Start serving ``server`` in a daemon thread; ``server.shutdown()`` stops it within 20 ms."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_SECONDS}, name=name, daemon=True
    )
    thread.start()
    return thread
