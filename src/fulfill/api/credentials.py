"""``/admin/credentials``: a tenant's connector credentials (scope ``admin``, own tenant only).

Writes take the secrets; reads and every answer show metadata only (type, client id, which
secret fields are stored, timestamps, revision), never a secret. ``account_id`` (query) selects
an account's own credential; without it, the tenant-wide one that every account without its own
uses. A token limited to some accounts (``account_ids``) manages only those accounts' credentials.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from pydantic import BaseModel

from fulfill.api.auth import require_scope
from fulfill.api.deps import ServiceSettings, Vault
from fulfill.api.problems import PROBLEM, ApiProblem
from fulfill.api.routing import OneHopRoute
from fulfill.domain.credentials import CredentialInput, CredentialMetadata, SecretRotation
from fulfill.domain.scopes import Scope
from fulfill.tokens import Principal
from fulfill.usecases import credentials

router = APIRouter(prefix="/admin/credentials", tags=["admin"], route_class=OneHopRoute)
TenantAdmin = Annotated[Principal, Depends(require_scope(Scope.ADMIN))]
ConnectorPath = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]
AccountQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:@-]+$",
        description="An account's own credential; omit for the tenant-wide one.",
    ),
]
_ERRORS: dict[int | str, dict[str, Any]] = {401: PROBLEM, 403: PROBLEM, 422: PROBLEM, 503: PROBLEM}


class CredentialListing(BaseModel):
    credentials: list[CredentialMetadata]


def _check_account(principal: Principal, account_id: str | None) -> None:
    if account_id is None:
        if principal.account_ids is not None:
            raise ApiProblem(
                403,
                "a token limited to some accounts cannot manage the tenant-wide credential",
                slug="forbidden",
                code="ACCOUNT_NOT_ALLOWED",
            )
    elif not principal.may_access_account(account_id):
        raise ApiProblem(
            403,
            "the token does not grant access to this account",
            slug="forbidden",
            code="ACCOUNT_NOT_ALLOWED",
        )


@router.get("", response_model=CredentialListing, responses=_ERRORS)
def list_credentials(
    principal: TenantAdmin,
    vault: Vault,
    connector: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z][a-z0-9_]*$")] = None,
) -> CredentialListing:
    listed = credentials.list_credentials(vault, principal.tenant_id, connector)
    if principal.account_ids is not None:
        listed = [item for item in listed if item.account_id in principal.account_ids]
    return CredentialListing(credentials=listed)


@router.put(
    "/{connector}",
    response_model=CredentialMetadata,
    responses={**_ERRORS, 201: {"model": CredentialMetadata}},
)
def put_credential(
    connector: ConnectorPath,
    body: Annotated[CredentialInput, Body()],
    response: Response,
    principal: TenantAdmin,
    vault: Vault,
    settings: ServiceSettings,
    account_id: AccountQuery = None,
) -> CredentialMetadata:
    """Create (201) or replace (200) the credential; the answer shows no secret."""
    _check_account(principal, account_id)
    stored, created = credentials.put_credential(
        vault,
        principal.tenant_id,
        connector,
        account_id,
        body,
        login_policy=settings.salesforce_login_policy,
    )
    response.status_code = 201 if created else 200
    return stored


@router.post("/{connector}/rotate", response_model=CredentialMetadata, responses={**_ERRORS, 404: PROBLEM})
def rotate_credential(
    connector: ConnectorPath,
    body: SecretRotation,
    principal: TenantAdmin,
    vault: Vault,
    account_id: AccountQuery = None,
) -> CredentialMetadata:
    """Replace the stored secret(s): ``client_secret`` (client credentials), ``private_key`` (JWT
    bearer), ``refresh_token`` and/or ``client_secret`` (refresh token). Cached access tokens of
    the old secret are not used again."""
    _check_account(principal, account_id)
    return credentials.rotate_credential(vault, principal.tenant_id, connector, account_id, body)


@router.delete("/{connector}", status_code=204, responses={**_ERRORS, 404: PROBLEM})
def delete_credential(
    connector: ConnectorPath, principal: TenantAdmin, vault: Vault, account_id: AccountQuery = None
) -> Response:
    _check_account(principal, account_id)
    credentials.delete_credential(vault, principal.tenant_id, connector, account_id)
    return Response(status_code=204)
