"""An email about an intent carries, for each recipient, a signed, single-use, expiring link that
opens the intent in the console (after its login) and never decides anything; a reused, expired,
changed or other tenant's link opens nothing. Over a real service and a local SMTP server
(``aiosmtpd`` on 127.0.0.1), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from fulfill.domain.notifications import Notice, NoticeKind
from fulfill.domain.time import iso_from_epoch
from fulfill.store import intents as intent_store
from fulfill.store.tables import email_link_uses
from fulfill.usecases.email_links import email_link
from tests.support.console import Console
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import wait_for
from tests.support.smtp_server import SmtpServer

PUBLIC_URL = "https://fulfill.example.com"
RECIPIENTS = ["approvers@example.com", "second@example.com"]
_LINK = re.compile(re.escape(PUBLIC_URL) + r"(/console/open\?link=[A-Za-z0-9_.%-]+)")


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Iterator[Harness]:
    started = Harness(
        make_settings(
            tmp_path_factory.mktemp("email-links"),
            smtp_url=smtp.url,
            smtp_from="fulfill@example.com",
            public_url=PUBLIC_URL,
        )
    ).start()
    try:
        yield started
    finally:
        started.stop()


def _proposal(harness: Harness, smtp: SmtpServer) -> tuple[str, str, dict[str, str]]:
    """A new tenant with email on, a pending intent of it, and the path of each recipient's link."""
    tenant = f"em{uuid.uuid4().hex[:10]}"
    with harness.client(tenant, subject="pat@acme.example") as client:
        answer = client.put("/admin/notifications", json={"email": {"to": RECIPIENTS}})
        assert answer.status_code == 200, answer.text
        intent_id = str(harness.create_intent(client)["action_intent_id"])

    def arrived() -> list[Any] | None:
        found = [m for m in list(smtp.messages) if intent_id in str(m.message["Subject"])]
        return found if len(found) == len(RECIPIENTS) else None

    links: dict[str, str] = {}
    for received in wait_for(arrived):
        assert received.mail_from == "fulfill@example.com"
        assert len(received.rcpt_tos) == 1
        recipient = received.rcpt_tos[0]
        assert received.message["To"] == recipient
        match = _LINK.search(received.message.get_content())
        assert match, received.message.get_content()
        links[recipient] = match.group(1)
    assert sorted(links) == RECIPIENTS
    assert len(set(links.values())) == len(RECIPIENTS)  # each recipient's own link
    return tenant, intent_id, links


def _status(harness: Harness, tenant: str, intent_id: str) -> str:
    with harness.db.read() as conn:
        intent = intent_store.get_intent(conn, tenant, intent_id)
    assert intent is not None
    return intent.approval_status.value


def _signed_in(harness: Harness, tenant: str) -> Console:
    return Console(harness).login(tenant=tenant, subject="alice@acme.example")


def test_the_link_opens_the_intent_after_the_login_once(harness: Harness, smtp: SmtpServer) -> None:
    tenant, intent_id, links = _proposal(harness, smtp)
    link = links[RECIPIENTS[0]]
    browser = Console(harness)
    try:
        # No session: to the login, keeping the link to come back to (the link is not used yet).
        first = browser.get(link)
        assert first.status_code == 303
        assert first.headers["location"] == f"/console/login?next={quote(link)}"
        assert harness.count(email_link_uses, tenant_id=tenant) == 0
        signed_in = browser.http.post(
            "/console/login",
            data={
                "csrf": browser.csrf(),
                "tenant": tenant,
                "subject": "alice@acme.example",
                "scopes": ["intents:read", "intents:approve", "executions:read"],
                "account_ids": "",
                "next": link,
            },
        )
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == link
        opened = browser.get(link)
        assert opened.status_code == 303
        assert opened.headers["location"] == f"/console/executions/{intent_id}"
        page = browser.get(opened.headers["location"])
        assert page.status_code == 200
        assert intent_id in page.text
        # Opening never approves.
        assert _status(harness, tenant, intent_id) == "PENDING_APPROVAL"
        assert harness.count(email_link_uses, tenant_id=tenant, action_intent_id=intent_id) == 1
        # Used once: opening it again is refused with a page that says so; nothing changes.
        again = browser.get(link)
        assert again.status_code == 410
        assert "already used" in again.text
        assert _status(harness, tenant, intent_id) == "PENDING_APPROVAL"
        # The other recipient's own link still opens (once).
        other = browser.get(links[RECIPIENTS[1]])
        assert other.status_code == 303
        assert browser.get(links[RECIPIENTS[1]]).status_code == 410
    finally:
        browser.close()


def test_an_expired_link_is_refused(harness: Harness, smtp: SmtpServer) -> None:
    tenant, intent_id, _ = _proposal(harness, smtp)
    made = time.time() - 4 * 86_400  # links live three days at most
    notice = Notice(
        kind=NoticeKind.APPROVAL_NEEDED,
        tenant_id=tenant,
        key=intent_id,
        summary="waits",
        occurred_at=iso_from_epoch(made),
        action_intent_id=intent_id,
    )
    expired = email_link(harness.settings, notice, RECIPIENTS[0], now=made)
    assert expired is not None
    browser = _signed_in(harness, tenant)
    try:
        answer = browser.get(expired.removeprefix(PUBLIC_URL))
        assert answer.status_code == 410
        assert "expired" in answer.text
    finally:
        browser.close()
    assert harness.count(email_link_uses, tenant_id=tenant) == 0
    assert _status(harness, tenant, intent_id) == "PENDING_APPROVAL"


def test_a_changed_link_or_another_tenants_is_refused(harness: Harness, smtp: SmtpServer) -> None:
    tenant, intent_id, links = _proposal(harness, smtp)
    link = links[RECIPIENTS[0]]
    token = link.split("link=", 1)[1]
    body, signature = token.split(".")
    forged = f"/console/open?link={body[:-2]}xx.{signature}"
    browser = _signed_in(harness, tenant)
    stranger = _signed_in(harness, f"other{uuid.uuid4().hex[:6]}")
    try:
        answer = browser.get(forged)
        assert answer.status_code == 403
        assert "not a valid link" in answer.text
        assert browser.get("/console/open?link=").status_code == 403
        # Signed in to another tenant: refused, and the link is not used up by it.
        refused = stranger.get(link)
        assert refused.status_code == 403
        assert "another tenant" in refused.text
        assert harness.count(email_link_uses, tenant_id=tenant) == 0
        assert browser.get(link).status_code == 303
    finally:
        browser.close()
        stranger.close()
    assert _status(harness, tenant, intent_id) == "PENDING_APPROVAL"
