"""The tamper-evident ledger: ``POST /admin/ledger/checkpoint``, ``GET /admin/ledger/verify`` and the
public keys at ``/.well-known/fulfill-ledger-keys.json`` (no authentication: anyone may verify).

A tenant's ``admin`` checkpoints and verifies its own tenant's ledger; ``platform:admin`` names any
tenant with ``?tenant_id=`` (usecases/ledger.py).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from fulfill.api.auth import require_any_scope
from fulfill.api.deps import ServiceContext, ServiceSettings
from fulfill.api.problems import PROBLEM
from fulfill.api.routing import OneHopRoute
from fulfill.domain.scopes import Scope
from fulfill.tokens import Principal
from fulfill.usecases import ledger

router = APIRouter(tags=["ledger"], route_class=OneHopRoute)
LedgerAdmin = Annotated[Principal, Depends(require_any_scope(Scope.ADMIN, Scope.PLATFORM_ADMIN))]
TenantQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$", description="platform:admin only"),
]
_ERRORS: dict[int | str, dict[str, Any]] = {401: PROBLEM, 403: PROBLEM, 422: PROBLEM}


class BadEntry(BaseModel):
    entry_id: str | None
    position: int | None
    problem: str


class Verification(BaseModel):
    """``intact`` up to ``last_signed_checkpoint``; entries no checkpoint covers yet are counted in
    ``unverified_entries``, never as verified."""

    tenant_id: str
    intact: bool
    entries: int
    verified_entries: int | None
    unverified_entries: int
    first_bad_entry: BadEntry | None
    last_signed_checkpoint: dict[str, Any] | None


@router.post(
    "/admin/ledger/checkpoint",
    responses={**_ERRORS, 200: {"description": "nothing new: the last checkpoint"}, 409: PROBLEM},
    status_code=201,
)
def post_checkpoint(
    ctx: ServiceContext, principal: LedgerAdmin, response: Response, tenant_id: TenantQuery = None
) -> dict[str, Any]:
    made, created = ledger.checkpoint(ctx, ledger.ledger_tenant(principal, tenant_id))
    if not created:
        response.status_code = 200
    return made.summary()


@router.get("/admin/ledger/verify", response_model=Verification, responses=_ERRORS)
def get_verify(ctx: ServiceContext, principal: LedgerAdmin, tenant_id: TenantQuery = None) -> dict[str, Any]:
    return ledger.verify(ctx, ledger.ledger_tenant(principal, tenant_id))


@router.get(
    "/admin/ledger/export",
    responses={**_ERRORS, 200: {"content": {"application/x-ndjson": {}}, "description": "JSON Lines"}},
    response_class=Response,
)
def get_export(
    ctx: ServiceContext,
    principal: LedgerAdmin,
    since: Annotated[int, Query(ge=0, le=2**62, description="the last position already exported")] = 0,
    tenant_id: TenantQuery = None,
) -> StreamingResponse:
    """Whole signed checkpoints after position ``since``, each preceded by its entries, as JSON Lines,
    streamed a page of checkpoints at a time; ``X-Fulfill-Ledger-Next-Since`` is where the next export
    resumes (the checkpoints written while the export runs are left to the next one)."""
    until, records = ledger.export(ctx, ledger.ledger_tenant(principal, tenant_id), since)
    body = (json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n" for line in records)
    return StreamingResponse(
        body, media_type="application/x-ndjson", headers={"X-Fulfill-Ledger-Next-Since": str(until)}
    )


@router.get("/.well-known/fulfill-ledger-keys.json")
def get_keys(settings: ServiceSettings) -> dict[str, Any]:
    return ledger.keys_document(settings)
