"""A local Slack-compatible Web API on 127.0.0.1, and Slack's side of an interaction callback.

:class:`SlackServer` answers ``chat.postMessage``, ``chat.update`` and ``chat.postEphemeral`` under
``{url}/api/`` (what ``slack_sdk.WebClient(base_url=...)`` is given) as Slack does:

* it checks ``Authorization: Bearer xoxb-…`` against the bot tokens it knows (else ``ok: false``,
  ``not_authed`` or ``invalid_auth``), the method name (else HTTP 404 ``unknown_method``), and the
  arguments, sent as JSON or form-encoded (``blocks`` then a JSON string): ``channel`` must be
  one it knows (``channel_not_found``), a message needs ``text`` or ``blocks`` (``no_text``),
  ``blocks`` must be a list of objects with a ``type`` (``invalid_blocks``), ``chat.update`` needs
  the ``ts`` of a message it posted (``message_not_found``), ``chat.postEphemeral`` a ``user``
  (``user_not_found`` without one, ``user_not_in_channel`` for one not in :attr:`members`);
* it answers ``{"ok": true, "channel", "ts", "message"}`` (``chat.postEphemeral``: ``{"ok": true,
  "message_ts"}``), and records every accepted call (:attr:`SlackServer.calls`);
* :meth:`SlackServer.fail_next` makes the next calls answer ``ok: false`` with a given error,
  :meth:`SlackServer.rate_limit_next` answers HTTP 429 ``ratelimited`` with ``Retry-After``;
* ``response_url`` posts (``{url}/actions/{n}``) are recorded too (:attr:`SlackServer.responses`,
  each with its ``_path``).

:func:`signed_interaction` builds what Slack POSTs to an app's interaction URL when a person clicks
a button: the form-encoded ``payload`` and the ``X-Slack-Request-Timestamp`` and
``X-Slack-Signature`` (``v0=`` HMAC-SHA256 of ``v0:{timestamp}:{body}`` with the signing secret).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

from tests.support.serving import serve_in_thread

METHODS = ("chat.postMessage", "chat.update", "chat.postEphemeral")


@dataclass
class SlackCall:
    method: str
    token: str
    arguments: dict[str, Any]
    content_type: str
    ts: str


@dataclass
class _Script:
    failures: list[str] = field(default_factory=list)
    rate_limits: list[int] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class SlackServer:
    def __init__(
        self,
        *,
        tokens: tuple[str, ...] = (),
        channels: tuple[str, ...] = ("C0APPROVALS",),
        members: tuple[str, ...] | None = None,
    ) -> None:
        self.tokens = set(tokens)
        self.channels = set(channels)
        # The users in the channels (``chat.postEphemeral`` reaches only them); None: anyone.
        self.members = set(members) if members is not None else None
        self.calls: list[SlackCall] = []
        self.refused: list[tuple[str, str]] = []  # (method, error) of every ok: false answer
        self.responses: list[dict[str, Any]] = []
        self.received = threading.Event()
        self._script = _Script()
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, headers, answer = server._handle(self.path, dict(self.headers.items()), body)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api/"
        self._thread = serve_in_thread(self._server)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- what the test tells it ----------------------------------------------------------------

    def fail_next(self, error: str, times: int = 1) -> None:
        """The next ``times`` calls answer ``{"ok": false, "error": error}`` (HTTP 200, as Slack)."""
        with self._lock:
            self._script.failures.extend([error] * times)

    def rate_limit_next(self, retry_after: int, times: int = 1) -> None:
        """The next ``times`` calls answer HTTP 429 ``ratelimited`` with ``Retry-After``."""
        with self._lock:
            self._script.rate_limits.extend([retry_after] * times)

    def messages(self, method: str = "chat.postMessage") -> list[dict[str, Any]]:
        with self._lock:
            return [call.arguments for call in self.calls if call.method == method]

    # --- answering ----------------------------------------------------------------------------

    def _handle(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        if path.startswith("/actions/"):
            with self._lock:
                self.responses.append({**json.loads(body or b"{}"), "_path": path})
            return 200, {}, {"ok": True}
        if not path.startswith("/api/"):
            return 404, {}, {"ok": False, "error": "unknown_method"}
        method = path[len("/api/") :].split("?", 1)[0]
        if method not in METHODS:
            return 404, {}, {"ok": False, "error": "unknown_method"}
        with self._lock:
            if self._script.rate_limits:
                retry_after = self._script.rate_limits.pop(0)
                self.refused.append((method, "ratelimited"))
                return 429, {"Retry-After": str(retry_after)}, {"ok": False, "error": "ratelimited"}
        lowered = {name.lower(): value for name, value in headers.items()}
        authorization = lowered.get("authorization", "")
        content_type = lowered.get("content-type", "").split(";", 1)[0].strip()
        try:
            arguments = _arguments(content_type, body)
        except ValueError:
            return self._refuse(method, "invalid_arguments")
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
        if not token:
            return self._refuse(method, "not_authed")
        if not token.startswith("xoxb-") or token not in self.tokens:
            return self._refuse(method, "invalid_auth")
        with self._lock:
            if self._script.failures:
                return self._refuse(method, self._script.failures.pop(0), locked=True)
        error = self._check(method, arguments)
        if error is not None:
            return self._refuse(method, error)
        ts = arguments["ts"] if method == "chat.update" else f"{int(time.time())}.{next(self._ts):06d}"
        with self._lock:
            self.calls.append(SlackCall(method, token, arguments, content_type, ts))
        self.received.set()
        if method == "chat.postEphemeral":
            return 200, {}, {"ok": True, "message_ts": ts}
        message = {"type": "message", "text": arguments.get("text", ""), "ts": ts}
        if "blocks" in arguments:
            message["blocks"] = arguments["blocks"]
        return 200, {}, {"ok": True, "channel": arguments["channel"], "ts": ts, "message": message}

    def _check(self, method: str, arguments: dict[str, Any]) -> str | None:
        channel = arguments.get("channel")
        if not isinstance(channel, str) or not channel:
            return "channel_not_found"
        if channel not in self.channels:
            return "channel_not_found"
        blocks = arguments.get("blocks")
        if blocks is not None and (
            not isinstance(blocks, list) or not all(isinstance(b, dict) and "type" in b for b in blocks)
        ):
            return "invalid_blocks"
        if not arguments.get("text") and not blocks:
            return "no_text"
        if method == "chat.postEphemeral":
            user = arguments.get("user")
            if not isinstance(user, str) or not user:
                return "user_not_found"
            if self.members is not None and user not in self.members:
                return "user_not_in_channel"
        if method == "chat.update":
            ts = arguments.get("ts")
            with self._lock:
                posted = {call.ts for call in self.calls if call.method == "chat.postMessage"}
            if ts not in posted:
                return "message_not_found"
        return None

    def _refuse(
        self, method: str, error: str, *, locked: bool = False
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        if locked:
            self.refused.append((method, error))
        else:
            with self._lock:
                self.refused.append((method, error))
        return 200, {}, {"ok": False, "error": error}


def _arguments(content_type: str, body: bytes) -> dict[str, Any]:
    if content_type == "application/json":
        decoded = json.loads(body or b"{}")
        if not isinstance(decoded, dict):
            raise ValueError("not an object")
        return decoded
    if content_type == "application/x-www-form-urlencoded":
        form = {name: values[-1] for name, values in parse_qs(body.decode()).items()}
        arguments: dict[str, Any] = dict(form)
        if "blocks" in form:
            arguments["blocks"] = json.loads(form["blocks"])
        return arguments
    raise ValueError(f"unsupported content type {content_type!r}")


# --- Slack's side of an interaction (a click on a button) ----------------------------------------


def slack_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def block_actions_payload(
    *,
    user_id: str,
    action_id: str,
    value: str,
    channel: str = "C0APPROVALS",
    message_ts: str = "1700000000.000001",
    team_id: str = "T0TEAM",
    response_url: str | None = "https://hooks.slack.com/actions/T0TEAM/1/abc",
) -> dict[str, Any]:
    """A ``block_actions`` payload as Slack sends it for a click on a button (without a
    ``response_url`` when it is None, as for some clicks Slack sends none)."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "team_id": team_id},
        "api_app_id": "A0FULFILL",
        "team": {"id": team_id, "domain": "example"},
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "channel": {"id": channel, "name": "approvals"},
        "message": {"type": "message", "ts": message_ts, "text": ""},
        "trigger_id": "1.2.3",
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "fulfill_decision",
                "value": value,
                "text": {"type": "plain_text", "text": action_id.title()},
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    if response_url is None:
        del payload["response_url"]
    return payload


def signed_interaction(
    signing_secret: str, payload: dict[str, Any], *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of Slack's POST to an interaction URL: ``payload=<json>`` form-encoded,
    signed with ``signing_secret`` at ``timestamp`` (default: now)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": slack_signature(signing_secret, stamp, body),
    }
    return body, headers
