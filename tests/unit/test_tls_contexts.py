"""The TLS contexts of outbound connections (``fulfill.tls``): each kind built once per set of
trusted authorities, and built again when ``SSL_CERT_FILE`` names another file or the file it
names changes (a CA rotated in place), so that sharing one never keeps trusting what an operator
took away; and the clients that make connections (email, the Salesforce connector, the outbox's
webhooks, the gateway's client, its calls to remote targets) build none of their own."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from fulfill.connectors.egress import pinned_sync_client
from fulfill.domain.egress import EgressAllowList
from fulfill.engine.webhook_http import webhook_client
from fulfill.gateway.client import ConnectionPools
from fulfill.gateway.egress import PinnedTransport
from fulfill.tls import email_context, httpx2_context, httpx_context
from tests.support.tls import ServerCertificate, server_certificate

KINDS = [email_context, httpx_context, httpx2_context]


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


@pytest.mark.parametrize("context_of", KINDS, ids=lambda kind: kind.__name__)
def test_one_context_per_set_of_authorities(
    context_of: Callable[[], ssl.SSLContext], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _authority(tmp_path / "a", "first"), _authority(tmp_path / "b", "second")
    monkeypatch.setenv("SSL_CERT_FILE", str(first.ca_file))
    context = context_of()
    assert context_of() is context  # built once, not per connection
    assert "fulfill test authority first" in _authorities(context)
    assert context.verify_mode == ssl.CERT_REQUIRED  # never loosened by the cache
    assert context.check_hostname

    monkeypatch.setenv("SSL_CERT_FILE", str(second.ca_file))
    other = context_of()
    assert other is not context
    assert "fulfill test authority second" in _authorities(other)
    assert "fulfill test authority first" not in _authorities(other)

    # The same path, its content replaced: the next client reads the new authority.
    first.ca_file.write_bytes(second.ca_file.read_bytes())
    stat = first.ca_file.stat()
    os.utime(first.ca_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    monkeypatch.setenv("SSL_CERT_FILE", str(first.ca_file))
    rotated = context_of()
    assert rotated is not context
    assert _authorities(rotated) >= {"fulfill test authority second"}
    assert "fulfill test authority first" not in _authorities(rotated)


def test_the_kinds_keep_their_libraries_default_authorities(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    import certifi

    certifi_bundle = ssl.create_default_context(cafile=certifi.where())
    # httpx trusts certifi's bundle unless told otherwise, as it did before the contexts were shared.
    assert len(httpx_context().get_ca_certs()) == len(certifi_bundle.get_ca_certs())
    assert email_context() is not httpx_context()
    assert httpx_context() is not httpx2_context()


@pytest.fixture
def contexts_built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every set of authorities loaded into a context from here on (what building one costs)."""
    built: list[str] = []
    load, default_paths = ssl.SSLContext.load_verify_locations, ssl.SSLContext.set_default_verify_paths

    def counted_load(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        built.append("load_verify_locations")
        load(self, *args, **kwargs)  # type: ignore[arg-type]

    def counted_default(self: ssl.SSLContext) -> None:
        built.append("set_default_verify_paths")
        default_paths(self)

    for context_of in KINDS:
        context_of()  # the shared ones, built before counting
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted_load)
    monkeypatch.setattr(ssl.SSLContext, "set_default_verify_paths", counted_default)
    return built


def test_clients_build_no_context_of_their_own(contexts_built: list[str]) -> None:
    with pinned_sync_client(EgressAllowList(), timeout=5), webhook_client(5):
        pass
    pools = ConnectionPools(64)  # a worker's gateway client at the default concurrency: 8 pools
    transport = PinnedTransport(EgressAllowList(), resolver=_no_resolver)
    asyncio.run(pools.aclose())
    asyncio.run(transport.aclose())
    assert contexts_built == []


async def _no_resolver(host: str, port: int) -> list[str]:
    raise AssertionError("nothing is resolved while building a client")
