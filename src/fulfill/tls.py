"""The TLS contexts of fulfill's outbound connections, each built once per set of trusted
authorities and shared by every client that trusts the same ones.

Building a context reads and parses every certificate it trusts: about 30 ms of CPU and 0.8 to 1 MiB
resident each. Each client used to build its own, and an httpx transport given a connection pool
of its own built two (one for the pool it replaces), so an idle service held five, and a worker
with ``FULFILL_GATEWAY_URL`` one more per pool of its gateway client. A context is only read
while connections are made (they do not change it), which is what makes sharing it safe.

Which authorities each kind trusts is what its library chose, and stays so:

* :func:`email_context`: ``ssl.create_default_context()``, OpenSSL's default paths (email);
* :func:`httpx_context`: ``httpx.create_ssl_context()``, ``SSL_CERT_FILE`` or ``SSL_CERT_DIR``
  when set, else certifi's bundle (the Salesforce connector, the outbox's webhook deliveries);
* :func:`httpx2_context`: ``httpx2.create_ssl_context()``, ``SSL_CERT_FILE`` or ``SSL_CERT_DIR``
  when set, else OpenSSL's compiled-in authorities (the gateway's client, its calls to remote MCP
  targets).

Each is built again when those settings, or the file or directory they name, change (a CA rotated
in place), so that sharing never keeps trusting what an operator took away; a client built after
the change gets the new one.
"""

from __future__ import annotations

import functools
import os
import ssl
from typing import Literal

_Kind = Literal["email", "httpx", "httpx2"]


def email_context() -> ssl.SSLContext:
    return _context("email", *_authorities())


def httpx_context() -> ssl.SSLContext:
    return _context("httpx", *_authorities())


def httpx2_context() -> ssl.SSLContext:
    return _context("httpx2", *_authorities())


def _authorities() -> tuple[str, int, str, int]:
    """The file and directory of authorities in force (``SSL_CERT_FILE``/``SSL_CERT_DIR``, or
    OpenSSL's own), each with its modification time."""
    paths = ssl.get_default_verify_paths()
    cafile, capath = paths.cafile or paths.openssl_cafile, paths.capath or paths.openssl_capath
    return cafile, _modified(cafile), capath, _modified(capath)


def _modified(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


@functools.lru_cache(maxsize=8)
def _context(
    kind: _Kind, cafile: str, cafile_modified: int, capath: str, capath_modified: int
) -> ssl.SSLContext:
    # The arguments after the kind are the cache's key only: each library reads the same settings.
    if kind == "email":
        return ssl.create_default_context()
    if kind == "httpx":
        import httpx

        return httpx.create_ssl_context()
    import httpx2

    return httpx2.create_ssl_context()
