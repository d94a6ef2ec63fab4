"""A local SMTP server on 127.0.0.1 (``aiosmtpd``) that keeps every message it receives: plain
(``smtp://``), TLS from the first byte (``smtps=`` a server context: ``smtps://``), or plain
that offers and requires STARTTLS before any mail (``starttls=`` a server context:
``smtp://…?starttls=true``). Each message received records whether its session was encrypted."""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from fulfill_tools.launch import free_port


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    encrypted: bool = False  # the session was TLS (smtps, or after STARTTLS)


class _Keeper:
    def __init__(self, inbox: SmtpServer) -> None:
        self._inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        # After STARTTLS the session holds the TLS details; with smtps the transport is TLS itself.
        encrypted = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        with self._inbox.lock:
            self._inbox.messages.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), parsed, encrypted=encrypted)
            )
        self._inbox.received.set()
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(
        self, *, smtps: ssl.SSLContext | None = None, starttls: ssl.SSLContext | None = None
    ) -> None:
        assert smtps is None or starttls is None, "smtps is TLS already"
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.received = threading.Event()
        self.port = free_port()
        tls: dict[str, Any] = {}
        if smtps is not None:
            tls = {"ssl_context": smtps}
        elif starttls is not None:
            tls = {"tls_context": starttls, "require_starttls": True}
        self._controller = Controller(_Keeper(self), hostname="127.0.0.1", port=self.port, **tls)
        self._controller.start()
        if smtps is not None:
            self.url = f"smtps://127.0.0.1:{self.port}"
        elif starttls is not None:
            self.url = f"smtp://127.0.0.1:{self.port}?starttls=true"
        else:
            self.url = f"smtp://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._controller.stop()
