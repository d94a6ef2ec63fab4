"""``/healthz`` (the process is up), ``/readyz`` (ready for this process's role), ``/metrics``.

``/metrics`` answers 401 without the metrics token when ``FULFILL_METRICS_TOKEN`` is set, and 404
when ``FULFILL_METRICS_PORT`` moved it to a listener of its own (``fulfill.metrics_access``).

Readiness depends on the role: an ``api`` process is ready when its database answers (it runs no
workers, so its ``workers`` check says so); a ``worker`` or ``all`` process also needs its engine
launched.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fulfill.api.deps import DatabaseAnswers, EngineReady, ServiceSettings
from fulfill.api.problems import PROBLEM, problem_response
from fulfill.config import Settings
from fulfill.metrics_access import CHALLENGE, TOKEN_REQUIRED, TOKEN_REQUIRED_DETAIL, bearer_matches

router = APIRouter(tags=["health"])

NOT_IN_THIS_ROLE = "not in this role"


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready: the body says which part."}})
def readyz(
    settings: ServiceSettings, database_answers: DatabaseAnswers, engine_ready: EngineReady
) -> JSONResponse:
    checks: dict[str, str] = {"database": "ok" if database_answers else "unavailable"}
    if settings.role == "api":
        checks["workers"] = NOT_IN_THIS_ROLE
    else:
        checks["workers"] = "ok" if engine_ready else "starting"
    ready = all(value in ("ok", NOT_IN_THIS_ROLE) for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


def _metrics_refusal(request: Request, settings: Settings) -> Response | None:
    if settings.metrics_port is not None:  # served by the metrics listener only
        return problem_response(404, "Not found", code="NOT_FOUND")
    if not bearer_matches(settings.metrics_token.get_secret_value(), request.headers.get("authorization")):
        return problem_response(
            401,
            TOKEN_REQUIRED_DETAIL,
            slug="metrics-token",
            code=TOKEN_REQUIRED,
            headers={"WWW-Authenticate": CHALLENGE},
        )
    return None


@router.get(
    "/metrics",
    response_class=Response,
    responses={401: PROBLEM, 404: {**PROBLEM, "description": "Served by FULFILL_METRICS_PORT instead."}},
)
def metrics(request: Request, settings: ServiceSettings) -> Response:
    refusal = _metrics_refusal(request, settings)
    if refusal is not None:
        return refusal
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# HEAD too, as load balancers and `curl -I` probe: the GET's status and headers, no body.
@router.head("/healthz", include_in_schema=False)
def healthz_head() -> Response:
    return Response(media_type="application/json")


@router.head("/metrics", include_in_schema=False)
def metrics_head(request: Request, settings: ServiceSettings) -> Response:
    refusal = _metrics_refusal(request, settings)
    if refusal is not None:
        return Response(status_code=refusal.status_code, headers=dict(refusal.headers))
    return Response(media_type=CONTENT_TYPE_LATEST)
