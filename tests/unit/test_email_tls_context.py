"""The context email goes out with: built once per set of trusted authorities, and built again
when ``SSL_CERT_FILE`` names another file or the file it names changes (a CA rotated in place),
so that caching it never keeps trusting what an operator took away."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from fulfill.engine.notify import tls_context
from tests.support.tls import ServerCertificate, server_certificate


def _authority(directory: Path, name: str) -> ServerCertificate:
    directory.mkdir()
    return server_certificate(directory, name)


def _authorities(context: ssl.SSLContext) -> set[str]:
    return {
        value
        for cert in context.get_ca_certs()
        for rdn in cert["subject"]
        for key, value in rdn
        if key == "commonName"
    }


def test_one_context_per_set_of_authorities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = _authority(tmp_path / "a", "first"), _authority(tmp_path / "b", "second")
    monkeypatch.setenv("SSL_CERT_FILE", str(first.ca_file))
    context = tls_context()
    assert tls_context() is context  # built once, not per message
    assert "fulfill test authority first" in _authorities(context)
    assert context.verify_mode == ssl.CERT_REQUIRED  # never loosened by the cache
    assert context.check_hostname

    monkeypatch.setenv("SSL_CERT_FILE", str(second.ca_file))
    other = tls_context()
    assert other is not context
    assert "fulfill test authority second" in _authorities(other)
    assert "fulfill test authority first" not in _authorities(other)

    # The same path, its content replaced: the next message reads the new authority.
    first.ca_file.write_bytes(second.ca_file.read_bytes())
    stat = first.ca_file.stat()
    os.utime(first.ca_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    monkeypatch.setenv("SSL_CERT_FILE", str(first.ca_file))
    rotated = tls_context()
    assert rotated is not context
    assert _authorities(rotated) >= {"fulfill test authority second"}
    assert "fulfill test authority first" not in _authorities(rotated)
