"""The console's first page, ``/console/dashboard``: what waits for a person, and how executions
went over a window (``?window=1h|24h|7d``; a platform admin may add ``&tenant=``). Every figure
comes from the store through :mod:`fulfill.usecases.dashboard`; the charts are drawn here as
inline SVG (:mod:`fulfill.console.charts`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fulfill.api.deps import ServiceContext
from fulfill.console import charts
from fulfill.console.routes import Form, _guarded, _render
from fulfill.domain.dashboard import OUTCOME_STATUSES, Window
from fulfill.domain.scopes import Scope
from fulfill.tokens import Principal
from fulfill.usecases import dashboard as dashboard_usecase
from fulfill.usecases.dashboard import Dashboard

router = APIRouter(prefix="/console", include_in_schema=False)

_BUCKET_WORDS = {60: "minute", 900: "15 minutes", 3600: "hour"}


def _figures(board: Dashboard) -> dict[str, Any]:
    bucket = board.window.bucket_seconds
    failures = [
        charts.Bar(label=name or "unclassified", value=n, text=str(n), pattern="FAILED")
        for name, n in board.failures.items()
    ]
    latency = []
    for name, timing in (
        ("Approval wait", board.approval_wait),
        ("Approval → outcome", board.approval_to_outcome),
    ):
        for q, value in (("p50", timing.p50), ("p95", timing.p95)):
            latency.append(
                charts.Bar(
                    label=f"{name} {q}",
                    value=value or 0.0,
                    text=charts.seconds_text(value),
                    pattern="SUCCEEDED" if q == "p50" else "EXPIRED",
                )
            )
    connector_bars = []
    for figure in board.connectors:
        connector_bars.append(
            charts.Bar(label=f"{figure.connector} calls", value=figure.calls, text=str(figure.calls))
        )
        connector_bars.append(
            charts.Bar(
                label=f"{figure.connector} errors",
                value=figure.errors,
                text=f"{figure.errors} ({figure.error_rate:.0%})",
                pattern="FAILED",
            )
        )
    pending = [
        charts.Bar(label=age.label, value=age.count, text=str(age.count), pattern="CANCELLED")
        for age in board.pending
    ]
    per = _BUCKET_WORDS.get(bucket, f"{bucket} s")
    return {
        "per": per,
        "executions_chart": charts.stacked_bars(
            board.buckets,
            OUTCOME_STATUSES,
            bucket_seconds=bucket,
            title=f"Executions per {per} by status, last {board.window.label}",
        ),
        "failures_chart": charts.hbars(failures, title="Failures by error class", prefix="fail"),
        "latency_chart": charts.hbars(
            latency, title="Approval wait and approval to outcome", prefix="lat", width=500, label_width=200
        ),
        "connectors_chart": charts.hbars(
            connector_bars, title="Calls and errors by connector", prefix="conn"
        ),
        "pending_chart": charts.hbars(
            pending, title="Approvals waiting, by age", prefix="age", width=340, label_width=120
        ),
        "swatches": {status: charts.swatch(status) for status in OUTCOME_STATUSES},
        "bucket_label": lambda epoch: charts.bucket_label(epoch, bucket),
        "seconds": charts.seconds_text,
    }


@router.get("/dashboard")
async def dashboard(request: Request, ctx: ServiceContext) -> Response:
    def page(principal: Principal, _form: Form) -> Response:
        query = request.query_params
        board = dashboard_usecase.read_dashboard(
            ctx, principal, window=query.get("window"), tenant=query.get("tenant")
        )
        tenant_query = (
            {"tenant": board.tenant_id}
            if principal.has_scope(Scope.PLATFORM_ADMIN) and board.tenant_id
            else {}
        )
        return _render(
            request,
            "dashboard.html",
            principal,
            board=board,
            windows=[
                (window, "/console/dashboard?" + urlencode({"window": window.value, **tenant_query}))
                for window in Window
            ],
            statuses=OUTCOME_STATUSES,
            # an execution's page opens for the signed-in user's own tenant only
            linkable=lambda tenant_id: (
                tenant_id == principal.tenant_id and principal.has_scope(Scope.EXECUTIONS_READ)
            ),
            **_figures(board),
        )

    return await _guarded(request, ctx, page)
