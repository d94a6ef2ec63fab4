"""Notification email over TLS, against ``aiosmtpd`` on 127.0.0.1 with a certificate made in the
test: ``smtps://`` (TLS from the first byte) and ``smtp://…?starttls=true``. The sender trusts
the test's authority through the standard ``SSL_CERT_FILE`` and never turns verification off: a
server whose certificate does not verify gets nothing (the delivery is refused, retried and
dead-lettered with the reason, and goes out once the authority is trusted and it is
redelivered), and a server that does not offer STARTTLS gets nothing in clear."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from fulfill.clock import SystemClock
from fulfill.domain.notifications import ChannelDestination, Notice, NoticeKind
from fulfill.engine.notify import NoticeSender
from fulfill.store.sql_store import SqlStore
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import wait_for
from tests.support.salesforce import SECRETS_KEY
from tests.support.smtp_server import Received, SmtpServer
from tests.support.tls import ServerCertificate, server_certificate

MAX_ATTEMPTS = 3


class World:
    def __init__(self, harness: Harness, smtp: SmtpServer, trusted: ServerCertificate, other: Path) -> None:
        self.harness = harness
        self.smtp = smtp
        self.trusted = trusted  # the authority that signed the server's certificate
        self.other_authority = other  # an authority that did not


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServerCertificate, Path]:
    directory = tmp_path_factory.mktemp("smtp-tls")
    return server_certificate(directory, "smtp"), server_certificate(directory, "other").ca_file


@pytest.fixture(scope="module", params=["smtps", "starttls"])
def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    certificates: tuple[ServerCertificate, Path],
) -> Iterator[World]:
    trusted, other = certificates
    context = trusted.server_context()
    smtp = SmtpServer(smtps=context) if request.param == "smtps" else SmtpServer(starttls=context)
    harness = Harness(
        make_settings(
            tmp_path_factory.mktemp(f"email-{request.param}"),
            secrets_key=SECRETS_KEY,
            smtp_url=smtp.url,
            smtp_from="fulfill@example.com",
            public_url="https://fulfill.example.com",
            outbox_max_attempts=MAX_ATTEMPTS,
            outbox_backoff_base_seconds=0.05,
            outbox_backoff_max_seconds=0.2,
        )
    ).start()
    try:
        yield World(harness, smtp, trusted, other)
    finally:
        harness.stop()
        smtp.close()


def _tenant_with_email(harness: Harness) -> str:
    tenant = f"tls{uuid.uuid4().hex[:10]}"
    with harness.client(tenant) as client:
        answer = client.put("/admin/notifications", json={"email": {"to": ["approvers@example.com"]}})
    assert answer.status_code == 200, answer.text
    return tenant


def _about(smtp: SmtpServer, intent_id: str) -> list[Received]:
    with smtp.lock:
        return [m for m in smtp.messages if intent_id in str(m.message["Subject"])]


def _dead_letters(client: httpx.Client, tenant: str) -> list[dict[str, Any]]:
    answer = client.get(f"/admin/tenants/{tenant}/outbox/dead-letters")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["dead_letters"])


def test_the_url_names_the_scheme(world: World) -> None:
    assert world.smtp.url.startswith("smtps://") or world.smtp.url.endswith("?starttls=true")


def test_mail_goes_over_tls_to_a_server_the_sender_trusts(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(world.trusted.ca_file))
    tenant = _tenant_with_email(world.harness)
    with world.harness.client(tenant) as client:
        intent_id = str(world.harness.create_intent(client)["action_intent_id"])
    received = wait_for(lambda: _about(world.smtp, intent_id))
    assert len(received) == 1
    assert received[0].encrypted is True
    assert received[0].rcpt_tos == ["approvers@example.com"]
    assert received[0].message["X-Fulfill-Intent-Id"] == intent_id


def test_a_certificate_that_does_not_verify_gets_nothing_and_the_delivery_is_retried_then_dead_lettered(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(world.other_authority))
    tenant = _tenant_with_email(world.harness)
    with world.harness.client(tenant) as client:
        intent_id = str(world.harness.create_intent(client)["action_intent_id"])
        letters = wait_for(lambda: _dead_letters(client, tenant))
        assert letters[0]["destination_kind"] == "email"
        assert letters[0]["attempts"] == MAX_ATTEMPTS
        error = letters[0]["last_error"]
        assert error.startswith("SMTP server's TLS certificate does not verify (")
        assert "nothing was sent" in error
        assert _about(world.smtp, intent_id) == []

        # The authority trusted (SSL_CERT_FILE), the dead letter redelivered: it arrives, encrypted.
        monkeypatch.setenv("SSL_CERT_FILE", str(world.trusted.ca_file))
        answer = client.post(f"/admin/tenants/{tenant}/outbox/dead-letters/redeliver", json={})
        assert answer.status_code == 200, answer.text
        assert answer.json()["redelivered"]
    received = wait_for(lambda: _about(world.smtp, intent_id))
    assert [m.encrypted for m in received] == [True]


def _sender(world: World, smtp_url: str) -> NoticeSender:
    settings = world.harness.settings.model_copy(update={"smtp_url": SecretStr(smtp_url)})
    return NoticeSender(settings, SqlStore(world.harness.db), SystemClock(), httpx.Client())


def _notice(tenant: str) -> dict[str, object]:
    notice = Notice(
        kind=NoticeKind.KILL_SWITCH_CHANGED,
        tenant_id=tenant,
        key=f"tls-{uuid.uuid4().hex}",
        summary="The kill switch changed.",
        occurred_at="2026-01-01T00:00:00Z",
    )
    return notice.model_dump(mode="json")


def test_a_server_that_does_not_offer_starttls_gets_nothing_in_clear(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(world.trusted.ca_file))
    plain = SmtpServer()
    try:
        tenant = _tenant_with_email(world.harness)
        refusal = _sender(world, f"{plain.url}?starttls=true").send(
            ChannelDestination("email", tenant), _notice(tenant), "msg-starttls"
        )
        assert refusal is not None
        assert refusal.error == "SMTP server does not offer STARTTLS: nothing was sent (never in clear)"
        assert plain.messages == []
        # smtps:// to a server that speaks plain SMTP: the handshake fails, nothing is sent.
        refusal = _sender(world, plain.url.replace("smtp://", "smtps://")).send(
            ChannelDestination("email", tenant), _notice(tenant), "msg-smtps-plain"
        )
        assert refusal is not None
        assert refusal.error.startswith("SMTP TLS handshake failed (")
        assert plain.messages == []
    finally:
        plain.close()
