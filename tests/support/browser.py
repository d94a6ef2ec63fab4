"""A browser for login flows: follows redirects one step at a time and keeps the console's session
cookie as a browser would (sent back only to its origin and path, Secure or not, dropped when the
server expires it), so that tests can look at every hop and every Set-Cookie."""

from __future__ import annotations

import base64
import json
from http.cookies import Morsel, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from itsdangerous import TimestampSigner

from fulfill.client import default_limits


class Browser:
    def __init__(self, origin: str, cookie_name: str) -> None:
        self.origin = origin.rstrip("/")
        self.cookie_name = cookie_name
        self.cookie: Morsel[str] | None = None  # the live cookie
        self.set_cookies: list[Morsel[str]] = []  # every Set-Cookie of that name, in order
        self._http = httpx.Client(timeout=30.0, follow_redirects=False, limits=default_limits())

    def close(self) -> None:
        self._http.close()

    def get(self, url: str) -> httpx.Response:
        return self._send("GET", url)

    def post(self, url: str, form: dict[str, str]) -> httpx.Response:
        return self._send("POST", url, form)

    def logout(self, secret: str) -> httpx.Response:
        """Press the console's sign-out button (a form post carrying the session's CSRF token)."""
        return self.post("/console/logout", {"csrf": str(self.session(secret).get("csrf", ""))})

    def _send(self, method: str, url: str, form: dict[str, str] | None = None) -> httpx.Response:
        if url.startswith("/"):
            url = self.origin + url
        headers = {}
        if self.cookie is not None and self._sends_cookie_to(url):
            headers["Cookie"] = f"{self.cookie_name}={self.cookie.value}"
        response = self._http.request(method, url, headers=headers, data=form)
        if url.startswith(self.origin):
            self._store_cookies(response)
        return response

    def follow(self, response: httpx.Response) -> httpx.Response:
        """The next hop of a redirect."""
        assert response.status_code in (302, 303), (response.status_code, response.text)
        return self.get(response.headers["location"])

    def _sends_cookie_to(self, url: str) -> bool:
        assert self.cookie is not None
        path = self.cookie["path"] or "/"
        return url.startswith(self.origin) and urlparse(url).path.startswith(path)

    def _store_cookies(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            morsel = jar.get(self.cookie_name)
            if morsel is None:
                continue
            self.set_cookies.append(morsel)
            expired = "1970" in (morsel["expires"] or "") or morsel["max-age"] == "0"
            self.cookie = None if expired else morsel

    def session(self, secret: str) -> dict[str, Any]:
        """What the signed session cookie holds (Starlette: base64 JSON, itsdangerous-signed)."""
        if self.cookie is None:
            return {}
        payload = TimestampSigner(secret).unsign(self.cookie.value.encode())
        return dict(json.loads(base64.b64decode(payload)))

    def forge_session(self, secret: str, data: dict[str, Any]) -> None:
        """Replace the cookie's content with ``data``, signed as the server would sign it."""
        assert self.cookie is not None
        payload = base64.b64encode(json.dumps(data).encode())
        self.cookie.set(self.cookie_name, TimestampSigner(secret).sign(payload).decode(), "")


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlparse(url).query).items()}
