"""``/admin/policies``: approval policies of the token's tenant and of the platform, and their
simulation (usecases/policies.py says who may do what)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from fulfill.api.auth import require_any_scope
from fulfill.api.deps import ServiceContext
from fulfill.api.problems import PROBLEM
from fulfill.api.routing import OneHopRoute
from fulfill.domain.policies import Policy, PolicySpec
from fulfill.domain.scopes import Scope
from fulfill.tokens import Principal
from fulfill.usecases import policies
from fulfill.usecases.policies import PolicyListing, PolicyVersions, SimulationRequest, SimulationResult

router = APIRouter(prefix="/admin/policies", tags=["policies"], route_class=OneHopRoute)
# Either admin scope lets a token in; the use case asks for the one each policy needs.
PolicyAdmin = Annotated[Principal, Depends(require_any_scope(Scope.ADMIN, Scope.PLATFORM_ADMIN))]
PolicyId = Annotated[str, Path(min_length=1, max_length=128)]
_ERRORS: dict[int | str, dict[str, Any]] = {401: PROBLEM, 403: PROBLEM, 422: PROBLEM}
_ONE: dict[int | str, dict[str, Any]] = {**_ERRORS, 404: PROBLEM}


@router.get("", response_model=PolicyListing, responses=_ERRORS)
def list_policies(ctx: ServiceContext, principal: PolicyAdmin) -> PolicyListing:
    return policies.list_policies(ctx, principal)


@router.post("", status_code=201, response_model=Policy, responses={**_ERRORS, 409: PROBLEM})
def create_policy(body: PolicySpec, ctx: ServiceContext, principal: PolicyAdmin) -> Policy:
    return policies.create_policy(ctx, principal, body)


@router.post("/simulate", response_model=SimulationResult, responses=_ERRORS)
def simulate_policy(body: SimulationRequest, ctx: ServiceContext, principal: PolicyAdmin) -> SimulationResult:
    return policies.simulate(ctx, principal, body)


@router.get("/{policy_id}", response_model=Policy, responses=_ONE)
def get_policy(policy_id: PolicyId, ctx: ServiceContext, principal: PolicyAdmin) -> Policy:
    return policies.get_policy(ctx, principal, policy_id)


@router.get("/{policy_id}/versions", response_model=PolicyVersions, responses=_ONE)
def list_policy_versions(policy_id: PolicyId, ctx: ServiceContext, principal: PolicyAdmin) -> PolicyVersions:
    """Every version of the policy, oldest first, a deleted policy's too (``deleted_at`` on the
    version that deleted it)."""
    return policies.list_versions(ctx, principal, policy_id)


@router.put("/{policy_id}", response_model=Policy, responses={**_ONE, 409: PROBLEM})
def replace_policy(
    policy_id: PolicyId, body: PolicySpec, ctx: ServiceContext, principal: PolicyAdmin
) -> Policy:
    return policies.replace_policy(ctx, principal, policy_id, body)


@router.delete("/{policy_id}", status_code=204, response_class=Response, responses={**_ONE, 409: PROBLEM})
def delete_policy(policy_id: PolicyId, ctx: ServiceContext, principal: PolicyAdmin) -> Response:
    policies.delete_policy(ctx, principal, policy_id)
    return Response(status_code=204)
