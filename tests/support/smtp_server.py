"""A local SMTP server on 127.0.0.1 (``aiosmtpd``) that keeps every message it receives."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class _Keeper:
    def __init__(self, inbox: SmtpServer) -> None:
        self._inbox = inbox

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._inbox.lock:
            self._inbox.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        self._inbox.received.set()
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SmtpServer:
    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.received = threading.Event()
        self.port = _free_port()
        self._controller = Controller(_Keeper(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        self.url = f"smtp://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._controller.stop()
