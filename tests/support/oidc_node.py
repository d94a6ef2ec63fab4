"""The certified OpenID provider ``oidc-provider`` (npm) on 127.0.0.1, for the console's browser
tests: real sign-in pages, a real session at the provider, RP-initiated logout
(``end_session_endpoint``), JWT access tokens the service verifies with its JWKS.

Needs ``node`` (20+) and ``npm``: the package in ``oidc_provider_js/`` is installed on first use
(``npm ci``, from ``package-lock.json``). Without them the test fails; it never skips.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from fulfill_tools.launch import free_port
from tests.support.http_doubles import wait_for

JS_DIR = Path(__file__).parent / "oidc_provider_js"
CLIENT_ID = "console"
API_AUDIENCE = "fulfill-api"
# Scopes the console asks for: the API's, which the provider grants the console's access token.
SCOPES = "openid intents:read intents:approve executions:read"


def _required(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"'{program}' was not found: the console's OpenID browser test needs Node.js 20+ and npm")
    return path


def _installed(npm: str) -> None:
    if (JS_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        return
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"npm ci in {JS_DIR} failed:\n{done.stderr[-2000:]}")


class NodeOidcProvider:
    """One provider process; its port is chosen first, so that the service can be configured
    with the issuer before the provider learns the console's origin (``start``)."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    def start(self, console_origin: str) -> NodeOidcProvider:
        node, npm = _required("node"), _required("npm")
        _installed(npm)
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                [node, str(JS_DIR / "provider.mjs"), str(self.port), console_origin],
                cwd=JS_DIR,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._ready, timeout=60)
        return self

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            pytest.fail(f"the OpenID provider exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
