"""RFC 9457 problem details for every error response.

Bodies carry ``type``, ``title``, ``status``, ``detail`` and, where useful, ``code`` (a stable
machine-readable reason), ``errors`` (field paths of invalid input) and ``correlation_id``
(unexpected errors: the same id is in the server log). Never a stack trace, SQL or token.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fulfill.usecases.errors import UseCaseError

PROBLEM_JSON = "application/problem+json"
# For OpenAPI: an error status answered with a problem document.
PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_USE_CASE_STATUS = {
    "bad-request": 400,
    "not-found": 404,
    "conflict": 409,
    "forbidden": 403,
    "invalid": 422,
    "unavailable": 503,
}


class ApiProblem(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.code = code
        self.headers = headers
        self.extra = extra or {}


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    title = _TITLES.get(status, "Error")
    body: dict[str, Any] = {
        "type": f"/problems/{slug or title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if code:
        body["code"] = code
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _api_problem(_request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(
            exc.status, exc.detail, slug=exc.slug, code=exc.code, headers=exc.headers, extra=exc.extra
        )

    @app.exception_handler(UseCaseError)
    async def _use_case(_request: Request, exc: UseCaseError) -> JSONResponse:
        return problem_response(_USE_CASE_STATUS[exc.kind], exc.message, slug=exc.kind, code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "path": "/".join(str(part) for part in error.get("loc", ())),
                "message": str(error.get("msg", "")),
            }
            for error in exc.errors()
        ]
        if any(error.get("type") == "json_invalid" for error in exc.errors()):
            return problem_response(
                400, "the request body is not valid JSON", slug="malformed-json", code="MALFORMED_JSON"
            )
        return problem_response(
            422,
            "the request does not match the expected schema",
            slug="validation",
            code="VALIDATION_FAILED",
            extra={"errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
