"""Configuration: every setting is a ``FULFILL_*`` environment variable (see README)."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal, Self
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

DEV_JWT_SECRET = "fulfill-dev-secret-change-me-0123456789"  # noqa: S105 - documented development default
DEV_JWT_ISSUER = "fulfill-dev"
# The issuer of the engine's own HS256 ``gateway:invoke`` tokens; never a user token's issuer.
SERVICE_TOKEN_ISSUER = "fulfill-service"  # noqa: S105 - an issuer name, not a secret
MIN_SERVICE_TOKEN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FULFILL_", extra="ignore")

    database_url: str = "sqlite:///./fulfill.db"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    role: Literal["all", "api", "worker"] = "all"

    # Auth. dev: user tokens are HS256 with a shared secret. production: user tokens are RS256/ES256
    # from an OIDC-style identity provider, verified with the keys published at ``jwks_url``.
    auth_mode: Literal["dev", "production"] = "dev"
    jwt_secret: str = DEV_JWT_SECRET
    jwt_issuer: str = DEV_JWT_ISSUER
    jwt_audience: str = "fulfill"
    jwks_url: str = ""
    jwks_cache_seconds: float = Field(default=300.0, gt=0)
    # Clock skew tolerated on the exp, nbf and iat of user tokens.
    jwt_leeway_seconds: float = Field(default=30.0, ge=0, le=300)
    # HS256 secret of the engine's own gateway:invoke tokens; empty = jwt_secret (dev mode only).
    service_token_secret: str = ""
    # Lifetime of one service token; each is minted for one tool call (longer when the call's
    # timeout is longer).
    service_token_ttl_seconds: int = Field(default=60, ge=10, le=3600)

    # Kill switch that needs no database: FULFILL_GLOBAL_EXECUTION_STOP=true stops every execution.
    global_execution_stop: bool = False

    # Gateway: where InvokeTool sends MCP calls. Empty = this service's own /mcp endpoint.
    gateway_url: str = ""
    gateway_call_timeout_seconds: float = Field(default=10.0, gt=0, le=600)

    # One retry layer: transient tool failures are retried with base * 2^n backoff.
    retry_backoff_base_seconds: float = Field(default=1.0, ge=0, le=60)

    # Workers.
    worker_concurrency: int = Field(default=64, ge=1, le=256)
    queue_poll_seconds: float = Field(default=0.05, gt=0, le=10)
    reconcile_interval_seconds: float = Field(default=30.0, gt=0)
    # An active attempt unchanged this long is checked against its workflow (started if it has
    # none, forked if it failed); a RUNNING one this long past its budget is resumed elsewhere.
    reconcile_grace_seconds: float = Field(default=60.0, ge=0)
    # This process's identity in DBOS: a restarted worker with the same id recovers the workflows
    # it was running. Empty: "{hostname}:{port}".
    executor_id: str = Field(default="", max_length=128)

    # Flow control of each connector (its limits are stored: PUT /admin/connectors/{name}/limits).
    # Circuit breaker: this many target failures in a row within the window open it (0: never);
    # after the cool-down one probe call is let through.
    circuit_failure_threshold: int = Field(default=5, ge=0, le=1000)
    circuit_window_seconds: float = Field(default=60.0, gt=0, le=86_400)
    circuit_cooldown_seconds: float = Field(default=30.0, gt=0, le=3600)
    # A rate window is counted this much longer than its period, so that the target, which sees
    # each call a little after it is admitted, never counts more than the limit in its own window.
    connector_rate_margin_seconds: float = Field(default=0.05, ge=0, le=1)
    # How often a call waiting for a full connector asks again (a release in the same process
    # wakes it at once; a rate-limited call sleeps exactly until its slot).
    connector_poll_seconds: float = Field(default=0.05, gt=0, le=5)

    # A failed compensation is tried again after base * 2^(n-1) seconds, up to max_tries in all.
    compensation_max_tries: int = Field(default=5, ge=1, le=50)
    compensation_retry_base_seconds: float = Field(default=30.0, ge=0)

    # Signals leave through the outbox to these webhook sinks (HMAC-SHA256 signed).
    webhook_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_secret: str = ""
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    outbox_backoff_base_seconds: float = Field(default=1.0, ge=0)
    outbox_backoff_max_seconds: float = Field(default=300.0, gt=0)

    # HTTP: browser origins allowed by CORS (comma-separated; empty = none) and the body size limit.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=100 * 1_048_576)

    log_level: str = "INFO"

    @field_validator("webhook_urls", "cors_origins", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> Self:
        if self.jwks_url and urlparse(self.jwks_url).scheme not in ("http", "https"):
            raise ValueError("FULFILL_JWKS_URL must be an http:// or https:// URL")
        if self.jwt_issuer == SERVICE_TOKEN_ISSUER:
            raise ValueError(f"FULFILL_JWT_ISSUER must not be '{SERVICE_TOKEN_ISSUER}' (reserved)")
        if self.auth_mode == "production":
            if not self.jwks_url:
                raise ValueError("FULFILL_AUTH_MODE=production requires FULFILL_JWKS_URL")
            if self.jwt_issuer == DEV_JWT_ISSUER:
                raise ValueError(
                    "FULFILL_AUTH_MODE=production requires FULFILL_JWT_ISSUER "
                    "(the identity provider's issuer, not the development default)"
                )
            if len(self.service_token_secret) < MIN_SERVICE_TOKEN_SECRET_LENGTH:
                raise ValueError(
                    "FULFILL_AUTH_MODE=production requires FULFILL_SERVICE_TOKEN_SECRET "
                    f"of at least {MIN_SERVICE_TOKEN_SECRET_LENGTH} characters"
                )
        return self

    @cached_property
    def is_sqlite(self) -> bool:
        return make_url(self.database_url).get_backend_name() == "sqlite"

    @cached_property
    def system_database_url(self) -> str:
        """Where the DBOS system tables live.

        PostgreSQL: the same database (DBOS keeps them in its own ``dbos`` schema). SQLite: a
        sibling file ``<name>.dbos.sqlite``, because SQLite has no schemas and one writer lock per
        file, so keeping DBOS checkpoints out of the application file stops them queueing
        behind application writes.
        """
        url = make_url(self.database_url)
        if url.get_backend_name() != "sqlite":
            return self.database_url
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            raise ValueError("an in-memory SQLite database cannot be shared with DBOS; use a file")
        stem = database[: -len(".db")] if database.endswith(".db") else database
        return str(url.set(drivername="sqlite", database=f"{stem}.dbos.sqlite"))

    @property
    def effective_gateway_url(self) -> str:
        if self.gateway_url:
            return self.gateway_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/mcp"

    @property
    def uses_dev_secret(self) -> bool:
        return self.jwt_secret == DEV_JWT_SECRET
