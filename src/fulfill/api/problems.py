"""RFC 9457 problem details for every error response.

Bodies carry ``type``, ``title``, ``status``, ``detail``, ``code`` (a stable machine-readable
reason, on every problem), ``error`` (a short sentence: the member clients of the reference read)
and, where useful, ``errors`` (field paths of invalid input) and ``correlation_id`` (unexpected
errors: the same id is in the server log). Never a stack trace, SQL or token.

``error`` is what the reference's Status API answers in the same situation: ``"Unauthorized"``,
``"Forbidden"`` and ``"Internal server error"`` for 401, 403 and 500 (``detail`` says more), and
the ``detail`` as a sentence otherwise (``"Execution not found"``).
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
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
# The code of a problem that names none of its own.
_DEFAULT_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "BODY_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "INVALID_REQUEST",
    431: "HEADERS_TOO_LARGE",
    500: "INTERNAL_ERROR",
    503: "UNAVAILABLE",
}
# The reference answers these statuses with a fixed word, whatever the reason.
_FIXED_ERRORS = {401: "Unauthorized", 403: "Forbidden", 500: "Internal server error"}
_JSON_HINT = "send the body as JSON with the header Content-Type: application/json"
_USE_CASE_STATUS = {
    "bad-request": 400,
    "unauthenticated": 401,
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
        "code": code or _DEFAULT_CODES.get(status, "ERROR"),
        "error": error_text(status, detail),
    }
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def problem_body(status: int, detail: str, *, slug: str, code: str) -> bytes:
    """The body of :func:`problem_response`, for an answer written below the application: the
    server refuses a request's head before the app sees it (``fulfill.http_server``)."""
    return bytes(problem_response(status, detail, slug=slug, code=code).body)


def error_text(status: int, detail: str) -> str:
    """The ``error`` member: the reference's word for 401/403/500, else the detail as a sentence."""
    fixed = _FIXED_ERRORS.get(status)
    if fixed is not None:
        return fixed
    text = detail.strip() or _TITLES.get(status, "Error")
    first_word = text.split(" ", 1)[0]
    if first_word.isalpha() and first_word.islower():  # not a field name such as parameters.title
        return text[0].upper() + text[1:]
    return text


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
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "path": "/".join(str(part) for part in error.get("loc", ())),
                "message": str(error.get("msg", "")),
            }
            for error in exc.errors()
        ]
        if any(error.get("type") == "json_invalid" for error in exc.errors()):
            return problem_response(
                400,
                f"the request body is not valid JSON: {_JSON_HINT}",
                slug="malformed-json",
                code="MALFORMED_JSON",
            )
        if body_is_not_json(request) and any(error.get("loc", ("",))[0] == "body" for error in exc.errors()):
            return not_json_problem(request)
        return problem_response(
            422,
            "the request does not match the expected schema",
            slug="validation",
            code="INVALID_REQUEST",
            extra={"errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if detail == _TITLES.get(exc.status_code):  # Starlette's default: say it as a sentence
            detail = detail[0] + detail[1:].lower()
        return problem_response(exc.status_code, detail, headers=dict(exc.headers or {}))


def not_json_problem(request: Request) -> JSONResponse:
    """415 for a body sent as something else than JSON, saying how to send it."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip() or "none"
    return problem_response(
        415,
        f"the request body is not JSON (Content-Type: {content_type[:64]}): {_JSON_HINT}",
        slug="unsupported-media-type",
        code="UNSUPPORTED_MEDIA_TYPE",
    )


def body_is_not_json(request: Request) -> bool:
    """A request that sent a body under another media type than JSON (``curl -d`` sends
    ``application/x-www-form-urlencoded``)."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return False
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return False
    return request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
