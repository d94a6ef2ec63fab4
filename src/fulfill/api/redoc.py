"""``/redoc`` without the internet: fastapi-offline serves ReDoc's bundle from this package, but the
bundle itself loads Redocly's logo from a CDN. This page serves the same bundle with that logo
replaced by an inline image, so opening the page makes no request to another host."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, Response

REDOC_URL = "/redoc"
BUNDLE_URL = "/redoc/redoc.standalone.js"
_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
# An empty picture: the "API docs by Redocly" link keeps its text.
_INLINE_LOGO = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


@cache
def _bundle() -> bytes:
    return (Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js").read_bytes()


def offline_bundle() -> bytes:
    return _bundle().replace(_CDN_LOGO, _INLINE_LOGO)


def install(app: FastAPI, *, favicon_url: str) -> None:
    """``/redoc`` and its bundle (the app is built with ``redoc_url=None``)."""

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc_html(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{BUNDLE_URL}",
            with_google_fonts=False,
            redoc_favicon_url=f"{root}{favicon_url}",
        )

    @app.get(BUNDLE_URL, include_in_schema=False)
    async def redoc_bundle() -> Response:
        return Response(
            offline_bundle(),
            media_type="application/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )
