"""Connector credentials: what an admin sends, what is stored, and what a read shows.

Three OAuth 2.0 grants, each with its own secret fields:

* ``client_credentials``: ``client_id`` + ``client_secret``;
* ``jwt_bearer``: ``client_id`` (the assertion's ``iss``), ``username`` (its ``sub``) and an RSA
  ``private_key`` (PEM) that signs an RS256 assertion;
* ``refresh_token``: ``client_id``, an optional ``client_secret`` and a ``refresh_token``, which
  the server may rotate on every use (the new one is stored).

Secret fields are ``SecretStr``: they never appear in a ``repr``, a log line or a read. A read
(:class:`CredentialMetadata`) names which secret fields are stored, never their values.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator

CONNECTORS = ("salesforce",)
# A tenant-wide credential is stored under this account id (one no account can have).
TENANT_WIDE = ""

ClientId = Annotated[str, StringConstraints(min_length=1, max_length=256, strip_whitespace=True)]
Username = Annotated[str, StringConstraints(min_length=1, max_length=256, strip_whitespace=True)]
Secret = Annotated[SecretStr, Field(min_length=1, max_length=4096)]
PrivateKey = Annotated[SecretStr, Field(min_length=64, max_length=16384)]
AccountId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]
ConnectorName = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]


class CredentialType(StrEnum):
    CLIENT_CREDENTIALS = "client_credentials"
    JWT_BEARER = "jwt_bearer"
    REFRESH_TOKEN = "refresh_token"  # noqa: S105 - a grant name, not a secret


# Which secret fields each type stores; the first ones listed are required.
SECRET_FIELDS: dict[CredentialType, tuple[str, ...]] = {
    CredentialType.CLIENT_CREDENTIALS: ("client_secret",),
    CredentialType.JWT_BEARER: ("private_key",),
    CredentialType.REFRESH_TOKEN: ("refresh_token", "client_secret"),
}


def check_login_url(value: str | None) -> str | None:
    """An https URL with a host and nothing else; http only for a loopback host (local servers)."""
    if value is None:
        return None
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("must be an https:// URL")
    if parsed.scheme == "http" and not _is_loopback(parsed.hostname):
        raise ValueError("must be an https:// URL (http:// only for a loopback host)")
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise ValueError("must be a plain URL (no query, fragment or user info)")
    return value.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_private_key(value: SecretStr) -> SecretStr:
    """A PEM-encoded, unencrypted RSA private key of at least 2048 bits (messages never quote it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = serialization.load_pem_private_key(value.get_secret_value().encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError("must be an unencrypted PEM-encoded RSA private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("must be an RSA private key (the assertion is signed with RS256)")
    if key.key_size < 2048:
        raise ValueError("must be an RSA key of at least 2048 bits")
    return value


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: ClientId
    login_url: str | None = Field(
        default=None,
        max_length=512,
        description="The OAuth server (its /services/oauth2/token). Default: FULFILL_SALESFORCE_LOGIN_URL.",
    )

    @field_validator("login_url")
    @classmethod
    def _login_url(cls, value: str | None) -> str | None:
        return check_login_url(value)


class ClientCredentialsInput(_Input):
    type: Literal[CredentialType.CLIENT_CREDENTIALS]
    client_secret: Secret


class JwtBearerInput(_Input):
    type: Literal[CredentialType.JWT_BEARER]
    username: Username
    private_key: PrivateKey
    audience: str | None = Field(
        default=None,
        max_length=512,
        description="The assertion's aud. Default: the login URL (use https://login.salesforce.com "
        "or https://test.salesforce.com when the login URL is a My Domain URL).",
    )

    @field_validator("private_key")
    @classmethod
    def _private_key(cls, value: SecretStr) -> SecretStr:
        return check_private_key(value)

    @field_validator("audience")
    @classmethod
    def _audience(cls, value: str | None) -> str | None:
        return check_login_url(value)


class RefreshTokenInput(_Input):
    type: Literal[CredentialType.REFRESH_TOKEN]
    refresh_token: Secret
    client_secret: Secret | None = None


CredentialInput = Annotated[
    ClientCredentialsInput | JwtBearerInput | RefreshTokenInput, Field(discriminator="type")
]


class SecretRotation(BaseModel):
    """New secret values for a stored credential; which ones depends on its type."""

    model_config = ConfigDict(extra="forbid")

    client_secret: Secret | None = None
    private_key: PrivateKey | None = None
    refresh_token: Secret | None = None

    @field_validator("private_key")
    @classmethod
    def _private_key(cls, value: SecretStr | None) -> SecretStr | None:
        return check_private_key(value) if value is not None else None

    def provided(self) -> dict[str, str]:
        return {
            name: secret.get_secret_value()
            for name in ("client_secret", "private_key", "refresh_token")
            if (secret := getattr(self, name)) is not None
        }


class CredentialMetadata(BaseModel):
    """What a read shows of a stored credential: never a secret value."""

    model_config = ConfigDict(extra="forbid")

    connector: str
    account_id: str | None = Field(description="null: the tenant-wide credential")
    type: CredentialType
    client_id: str
    username: str | None = None
    login_url: str | None = None
    audience: str | None = None
    secret_fields: list[str] = Field(description="which secret fields are stored (never their values)")
    created_at: str
    updated_at: str
    rotated_at: str | None = Field(default=None, description="when a secret was last replaced")
    refresh_token_rotated_at: str | None = Field(
        default=None, description="when the OAuth server last issued a new refresh token"
    )
    revision: int


class StoredCredential(BaseModel):
    """One stored credential with its secrets decrypted (held in memory only, never returned)."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    account_id: str
    connector: str
    type: CredentialType
    client_id: str
    username: str | None = None
    login_url: str | None = None
    audience: str | None = None
    secrets: dict[str, SecretStr] = Field(repr=False)
    revision: int

    def secret(self, name: str) -> str | None:
        value = self.secrets.get(name)
        return value.get_secret_value() if value is not None else None
