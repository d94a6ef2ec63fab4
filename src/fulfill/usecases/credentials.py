"""Connector credentials of a tenant: set, list, rotate, delete (the API and the CLI).

The tenant is always the caller's: over HTTP the token's, from the CLI the ``--tenant`` given by
an operator who can reach the database. Answers are metadata only; a secret never leaves.
"""

from __future__ import annotations

from fulfill.credentials.crypto import SecretsKeyError
from fulfill.credentials.vault import CredentialVault
from fulfill.domain.credentials import (
    CONNECTORS,
    ClientCredentialsInput,
    CredentialMetadata,
    JwtBearerInput,
    RefreshTokenInput,
    SecretRotation,
)
from fulfill.domain.tenant_urls import LoginUrlPolicy, TenantUrlRefused
from fulfill.usecases.errors import Invalid, NotFound, Unavailable


def _known(connector: str) -> None:
    if connector not in CONNECTORS:
        raise Invalid(
            f"unknown connector '{connector[:32]}' (known: {', '.join(CONNECTORS)})", code="UNKNOWN_CONNECTOR"
        )


def _writable(vault: CredentialVault) -> None:
    if not vault.configured:
        raise Unavailable(
            "FULFILL_SECRETS_KEY is not set: this service cannot store credentials",
            code="SECRETS_KEY_NOT_CONFIGURED",
        )


def put_credential(
    vault: CredentialVault,
    tenant_id: str,
    connector: str,
    account_id: str | None,
    body: ClientCredentialsInput | JwtBearerInput | RefreshTokenInput,
    *,
    login_policy: LoginUrlPolicy,
) -> tuple[CredentialMetadata, bool]:
    """Store the credential. Its ``login_url`` must be one the platform lets tenants name
    (``FULFILL_SALESFORCE_LOGIN_HOSTS``): the service will send the secret there."""
    _known(connector)
    if body.login_url is not None:
        try:
            login_policy.check_login_url(body.login_url)
        except TenantUrlRefused as exc:
            raise Invalid(f"login_url: {exc}", code="LOGIN_URL_REFUSED") from None
    _writable(vault)
    return vault.put(tenant_id, account_id, connector, body)


def list_credentials(
    vault: CredentialVault, tenant_id: str, connector: str | None = None
) -> list[CredentialMetadata]:
    if connector is not None:
        _known(connector)
    return vault.list(tenant_id, connector)


def rotate_credential(
    vault: CredentialVault, tenant_id: str, connector: str, account_id: str | None, body: SecretRotation
) -> CredentialMetadata:
    _known(connector)
    _writable(vault)
    try:
        stored = vault.rotate(tenant_id, account_id, connector, body.provided())
    except SecretsKeyError as exc:
        raise Unavailable(str(exc), code="SECRETS_KEY_MISMATCH") from None
    except ValueError as exc:
        raise Invalid(str(exc), code="INVALID_ROTATION") from None
    if stored is None:
        raise NotFound(_missing(connector, account_id))
    return stored


def delete_credential(vault: CredentialVault, tenant_id: str, connector: str, account_id: str | None) -> None:
    _known(connector)
    if not vault.delete(tenant_id, account_id, connector):
        raise NotFound(_missing(connector, account_id))


def _missing(connector: str, account_id: str | None) -> str:
    scope = f"account {account_id}" if account_id else "the tenant"
    return f"no {connector} credentials stored for {scope}"
