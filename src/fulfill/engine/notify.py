"""Sending notices (``domain/notifications.py``) to a tenant's channels: what the outbox relay
calls for the destinations ``slack:<tenant>``, ``email:<tenant>`` and ``notify:<tenant>:<n>``.

Each delivery reads the tenant's channels as they are when it is sent, renders the notice for the
channel and sends it:

* Slack: ``chat.postMessage`` with the official ``slack_sdk`` (``WebClient(token,
  base_url=FULFILL_SLACK_API_URL)``). An answer ``ok: false`` (``channel_not_found``,
  ``invalid_auth``, …) is a refusal, retried and then dead-lettered with Slack's error as the
  delivery's last error; ``ratelimited`` (HTTP 429) is tried again no sooner than its
  ``Retry-After``. The channel and ``ts`` of a message about an intent are kept
  (``uow.notifications.record_slack_message``) so that the message can be updated after a decision.
* Email: SMTP with the standard library (``FULFILL_SMTP_URL``: ``smtp://`` plain, ``smtps://``,
  ``?starttls=true``; a user and password in the URL log in), from ``FULFILL_SMTP_FROM``. TLS
  always verifies the server's certificate and host name against the system's authorities
  (``ssl.create_default_context()``: OpenSSL's default paths, so ``SSL_CERT_FILE`` /
  ``SSL_CERT_DIR`` add a private one); a certificate that does not verify, or a server that does
  not offer STARTTLS when it is asked for, is a refusal (retried, then dead-lettered) and nothing
  is sent, never in clear. The context is built once per set of authorities (:func:`fulfill.tls.email_context`:
  building one reads every certificate, about 20 ms of CPU: ``bench.micro_costs``) and built again when those settings
  or the files they name change.
* Webhook: a JSON POST signed as the signal webhooks are (``X-Fulfill-Signature: sha256=<hex
  HMAC-SHA256 of "{timestamp}.{body}">``, ``X-Fulfill-Timestamp``, ``X-Fulfill-Event-Id``,
  ``X-Fulfill-Event-Type``), with the tenant's own secret for that webhook. Its host must resolve
  to public addresses only, unless ``FULFILL_GATEWAY_EGRESS_ALLOW`` names it (as for gateway
  targets): a tenant's admin names these URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from fulfill.config import Settings, parse_smtp_url
from fulfill.credentials.crypto import SecretsKeyError
from fulfill.domain.egress import addresses_refusal
from fulfill.domain.notifications import (
    DECISION_KINDS,
    SECRET_SLACK_BOT_TOKEN,
    ChannelDestination,
    Notice,
    SlackMessageRef,
    StoredNotifications,
    console_link,
    email_message,
    slack_message,
    webhook_body,
    webhook_secret_name,
)
from fulfill.domain.ports import Clock
from fulfill.engine.webhook_http import post_for_status
from fulfill.ports.store import Store
from fulfill.tls import email_context
from fulfill.usecases.email_links import email_link
from fulfill.usecases.notifications import open_secret

# Slack's SDK and the mail modules are imported by the first message on their channel: a service
# with no Slack or email channel configured never loads them.
if TYPE_CHECKING:
    from email.message import EmailMessage

    from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_SECONDS = 3600.0


@dataclass(frozen=True)
class Refusal:
    """Why a channel did not take a notice, and (Slack's ``Retry-After``) how long to wait at least."""

    error: str
    retry_after_seconds: float = 0.0


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class NoticeSender:
    """Sends one notice to one channel; thread-safe (each call has its own connections)."""

    def __init__(self, settings: Settings, store: Store, clock: Clock, http: httpx.Client) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._http = http

    def send(
        self, channel: ChannelDestination, payload: dict[str, object], message_id: str
    ) -> Refusal | None:
        """None when the channel took the notice."""
        try:
            notice = Notice.model_validate(payload)
        except ValueError:
            return Refusal("not a notice (malformed payload)")
        if notice.tenant_id != channel.tenant_id:
            return Refusal("the notice's tenant is not the destination's")
        with self._store.read() as uow:
            stored = uow.notifications.get_settings(channel.tenant_id)
        if stored is None:
            return Refusal(f"{channel.kind} is not configured for this tenant any more")
        link = console_link(self._settings.public_url, notice.console_path)
        try:
            if channel.kind == "slack":
                return self._slack(stored, notice, link)
            if channel.kind == "email":
                return self._email(stored, notice, link, message_id)
            return self._webhook(stored, channel.index, notice, link, message_id)
        except SecretsKeyError as exc:
            return Refusal(f"the channel's secret does not open: {exc}")

    # --- Slack ----------------------------------------------------------------------------------

    def _slack(self, stored: StoredNotifications, notice: Notice, link: str | None) -> Refusal | None:
        slack = stored.settings.slack
        token = open_secret(self._settings, stored, SECRET_SLACK_BOT_TOKEN) if slack is not None else None
        if slack is None or token is None:
            return Refusal("slack is not configured for this tenant any more")
        from slack_sdk import WebClient
        from slack_sdk.errors import SlackApiError, SlackClientError

        client = WebClient(
            token=token,
            base_url=self._settings.slack_api_url,
            timeout=int(max(1, self._settings.webhook_timeout_seconds)),
        )
        message = slack_message(notice, channel=slack.channel, link=link)
        try:
            answer = client.chat_postMessage(
                channel=message["channel"], text=message["text"], blocks=message["blocks"]
            )
        except SlackApiError as exc:
            return _slack_refusal(exc)
        except (SlackClientError, OSError) as exc:
            return Refusal(f"slack unreachable: {type(exc).__name__}")
        channel = str(answer.get("channel") or slack.channel)
        ts = answer.get("ts")
        if notice.kind in DECISION_KINDS and notice.action_intent_id and isinstance(ts, str):
            ref = SlackMessageRef(
                tenant_id=notice.tenant_id,
                action_intent_id=notice.action_intent_id,
                channel=channel,
                ts=ts,
                posted_at=self._clock.now_iso(),
            )
            try:
                with self._store.write() as uow:
                    uow.notifications.record_slack_message(ref)
            except Exception as exc:  # posted: the message stays sent, only its update is lost
                log.warning("keeping where a Slack message was posted failed: %s", type(exc).__name__)
        return None

    # --- email ------------------------------------------------------------------------------------

    def _email(
        self, stored: StoredNotifications, notice: Notice, link: str | None, message_id: str
    ) -> Refusal | None:
        email = stored.settings.email
        if email is None:
            return Refusal("email is not configured for this tenant any more")
        url = self._settings.smtp_url.get_secret_value()
        if not url:
            return Refusal("FULFILL_SMTP_URL is not set")
        if not self._settings.smtp_from:
            return Refusal("FULFILL_SMTP_FROM is not set")
        import smtplib

        server = parse_smtp_url(url)
        # One message per recipient: each carries its own signed, single-use link to the intent.
        messages = [
            (recipient, self._email_for(notice, link, message_id, recipient)) for recipient in email.to
        ]
        timeout = self._settings.smtp_timeout_seconds
        refused = 0
        try:
            smtp: smtplib.SMTP
            if server.tls:
                smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=email_context())
            else:
                smtp = smtplib.SMTP(server.host, server.port, timeout=timeout)
            with smtp:
                if server.starttls:
                    smtp.starttls(context=email_context())
                if server.username is not None:
                    smtp.login(server.username, server.password or "")
                for recipient, message in messages:
                    try:
                        smtp.send_message(message, from_addr=self._settings.smtp_from, to_addrs=[recipient])
                    except smtplib.SMTPRecipientsRefused:
                        refused += 1
        except smtplib.SMTPResponseException as exc:
            return Refusal(f"SMTP server answered {exc.smtp_code}")
        except smtplib.SMTPNotSupportedError:
            return Refusal("SMTP server does not offer STARTTLS: nothing was sent (never in clear)")
        except ssl.SSLCertVerificationError as exc:
            return Refusal(
                f"SMTP server's TLS certificate does not verify ({exc.verify_message}): nothing was sent "
                "(the certificate must chain to a trusted authority, SSL_CERT_FILE, and name the host)"
            )
        except ssl.SSLError as exc:
            return Refusal(
                f"SMTP TLS handshake failed ({exc.reason or type(exc).__name__}): nothing was sent"
            )
        except (smtplib.SMTPException, OSError) as exc:
            return Refusal(f"SMTP server unreachable: {type(exc).__name__}")
        if refused == len(messages):
            return Refusal("SMTP server refused every recipient")
        if refused:
            log.warning("SMTP server refused %d of %d recipients", refused, len(messages))
        return None

    def _email_for(self, notice: Notice, link: str | None, message_id: str, recipient: str) -> EmailMessage:
        signed = email_link(self._settings, notice, recipient, now=self._clock.now())
        from email.message import EmailMessage
        from email.utils import formatdate, make_msgid

        subject, body = email_message(notice, link=signed or link)
        message = EmailMessage()
        message["From"] = self._settings.smtp_from
        message["To"] = recipient
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(idstring=message_id[:40], domain="fulfill.invalid")
        if notice.action_intent_id:
            message["X-Fulfill-Intent-Id"] = notice.action_intent_id
        message["X-Fulfill-Event-Type"] = notice.kind.value
        message.set_content(body)
        return message

    # --- webhooks -------------------------------------------------------------------------------

    def _webhook(
        self, stored: StoredNotifications, index: int, notice: Notice, link: str | None, message_id: str
    ) -> Refusal | None:
        hooks = stored.settings.webhooks
        if index >= len(hooks):
            return Refusal(f"webhook {index} is not configured for this tenant any more")
        url = hooks[index].url
        secret = open_secret(self._settings, stored, webhook_secret_name(url))
        if secret is None:
            return Refusal(f"webhook {index} has no secret stored")
        refusal = self._egress_refusal(url)
        if refusal is not None:
            return Refusal(f"webhook address refused: {refusal}")
        body = json.dumps(webhook_body(notice, link=link), separators=(",", ":")).encode()
        timestamp = str(int(self._clock.now()))
        headers = {
            "Content-Type": "application/json",
            "X-Fulfill-Event-Id": message_id,
            "X-Fulfill-Event-Type": notice.kind.value,
            "X-Fulfill-Timestamp": timestamp,
            "X-Fulfill-Signature": webhook_signature(secret, timestamp, body),
        }
        try:
            status = post_for_status(self._http, url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Refusal(f"webhook unreachable: {type(exc).__name__}")
        if 200 <= status < 300:
            return None
        return Refusal(f"webhook answered HTTP {status}")

    def _egress_refusal(self, url: str) -> str | None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return f"{host} does not resolve"
        return addresses_refusal(
            host, sorted({str(info[4][0]) for info in infos}), self._settings.egress_allow
        )


def _slack_refusal(exc: SlackApiError) -> Refusal:
    response = exc.response
    error = str(response.get("error") or f"HTTP {response.status_code}")
    retry_after = 0.0
    if response.status_code == 429 or error == "ratelimited":
        header = {name.lower(): value for name, value in (response.headers or {}).items()}.get("retry-after")
        value = header[0] if isinstance(header, list) and header else header
        try:
            retry_after = min(MAX_RETRY_AFTER_SECONDS, max(0.0, float(str(value))))
        except (TypeError, ValueError):
            retry_after = 1.0
        error = "ratelimited"
    return Refusal(f"slack refused: {error}", retry_after_seconds=retry_after)
