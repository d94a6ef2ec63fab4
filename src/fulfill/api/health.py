"""``/healthz`` (the process is up), ``/readyz`` (ready for this process's role), ``/metrics``.

Readiness depends on the role: an ``api`` process is ready when its database answers (it runs no
workers, so its ``workers`` check says so); a ``worker`` or ``all`` process also needs its engine
launched.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

router = APIRouter(tags=["health"])

NOT_IN_THIS_ROLE = "not in this role"


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready: the body says which part."}})
def readyz(request: Request) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with request.app.state.runtime.db.read() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unavailable"
    service = request.app.state.service
    if service.settings.role == "api":
        checks["workers"] = NOT_IN_THIS_ROLE
    else:
        checks["workers"] = "ok" if service.engine_ready else "starting"
    ready = all(value in ("ok", NOT_IN_THIS_ROLE) for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# HEAD too, as load balancers and `curl -I` probe: the GET's status and headers, no body.
@router.head("/healthz", include_in_schema=False)
def healthz_head() -> Response:
    return Response(media_type="application/json")


@router.head("/metrics", include_in_schema=False)
def metrics_head() -> Response:
    return Response(media_type=CONTENT_TYPE_LATEST)
