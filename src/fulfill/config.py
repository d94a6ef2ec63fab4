"""Configuration: every setting is a ``FULFILL_*`` environment variable (see README)."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Literal, Self
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from fulfill.collector import YOUNG_THRESHOLD
from fulfill.domain.approvers import AgentMarkers
from fulfill.domain.console_login import dev_login_enabled
from fulfill.domain.egress import EgressAllowList
from fulfill.domain.tenant_urls import DEFAULT_LOGIN_HOSTS, LoginUrlPolicy

DEV_JWT_SECRET = "fulfill-dev-secret-change-me-0123456789"  # noqa: S105 - documented development default
DEV_JWT_ISSUER = "fulfill-dev"
# The tenant the quick start's demo (`fulfill serve --demo`) writes to, and the console's local
# login offers first.
DEMO_TENANT = "demo-tenant"
# The issuer of the engine's own HS256 ``gateway:invoke`` tokens; never a user token's issuer.
SERVICE_TOKEN_ISSUER = "fulfill-service"  # noqa: S105 - an issuer name, not a secret
MIN_SERVICE_TOKEN_SECRET_LENGTH = 32
MIN_METRICS_TOKEN_LENGTH = 16
# How long a stop gives the executions running in the process to finish before DBOS is shut down
# (the rest resume at the next start). A pod's or container's grace period covers it, after
# ``shutdown_grace_seconds``.
WORKFLOWS_STOP_SECONDS = 5.0
# An outbox destination ``eventbridge:<bus name or ARN>`` is delivered with EventBridge PutEvents.
EVENTBRIDGE_DESTINATION_PREFIX = "eventbridge:"
_EVENT_BUS = re.compile(
    r"^(?:arn:aws[a-z-]*:events:(?P<region>[a-z0-9-]+):[0-9]{12}:event-bus/)?[A-Za-z0-9._-]{1,256}$"
)

# FULFILL_LEDGER_EXPORT_S3_URL: s3://<bucket>[/<prefix>].
_S3_URL = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$")


def event_bus_region(bus: str) -> str | None:
    """The region named in an event bus ARN; None for a bare bus name."""
    match = _EVENT_BUS.match(bus)
    return match.group("region") if match else None


class Settings(BaseSettings):
    # Errors never quote what was given: several settings are secrets.
    model_config = SettingsConfigDict(env_prefix="FULFILL_", extra="ignore", hide_input_in_errors=True)

    database_url: str = "sqlite:///./fulfill.db"
    # PostgreSQL: a pooled connection idle longer than this is replaced, not pinged (store/db.py
    # MAX_IDLE_SECONDS, the same default): below the idle timeout of any NAT or firewall between
    # the service and its database, which may forget a quiet connection without a word.
    database_max_idle_seconds: float = Field(default=120.0, gt=1, le=86_400)
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
    # User tokens without a ``scope`` claim (a Cognito ID token, as the reference's authorizer
    # accepts): take the scopes from this claim (e.g. ``cognito:groups``: a list, or a
    # space-separated string, of scope names), else grant these default scopes. Both off by default.
    jwt_scope_claim: str = Field(default="", max_length=128)
    jwt_default_scopes: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Claims that mark an agent's token, besides RFC 8693's ``act`` (always one): ``claim`` (present)
    # or ``claim=value`` (equal, or in a list claim), comma-separated. An agent never approves.
    agent_token_claims: Annotated[list[str], NoDecode] = Field(default_factory=list)
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
    # Gateway targets (remote MCP servers): hosts, addresses and CIDR networks that may be reached
    # although they are not public (loopback, private, link-local...), comma-separated.
    gateway_egress_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # How often a process checks whether the stored targets changed (also at once on a change
    # made in the process itself, and when a call names a tool it does not know).
    gateway_targets_refresh_seconds: float = Field(default=2.0, gt=0, le=300)
    # Timeout of discovering a target's tools (registration and sync).
    gateway_discovery_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # How long the patterns of a target's input schema may take to check one set of arguments
    # (all matches together; domain/schemas.py): longer is a 422, never a stalled process.
    schema_pattern_timeout_seconds: float = Field(default=0.5, gt=0, le=10)
    # The most bytes one exchange with a target may answer (every HTTP response of its MCP
    # session, counted while they stream in): more aborts the exchange. 4 MiB.
    gateway_max_response_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024)

    # One retry layer: transient tool failures are retried with base * 2^n backoff.
    retry_backoff_base_seconds: float = Field(default=1.0, ge=0, le=60)

    # Workers.
    # Executions one worker runs at once, and so the most tool calls it has in flight (each
    # execution makes one call at a time); nothing between it and the target holds them to fewer.
    worker_concurrency: int = Field(default=64, ge=1, le=1024)
    # `fulfill serve` collects Python's youngest generation every this many net container
    # allocations (fulfill/collector.py): fewer, longer collections (about 4 ms each at 10,000)
    # cost less CPU in all. 700 is Python's own default.
    gc_young_threshold: int = Field(default=YOUNG_THRESHOLD, ge=700, le=1_000_000)
    queue_poll_seconds: float = Field(default=0.05, gt=0, le=10)
    # A worker that accepts an execution while it has a free slot starts it at once instead of
    # leaving it on the queue for the next poll (engine/direct_start.py).
    direct_start: bool = True
    reconcile_interval_seconds: float = Field(default=30.0, gt=0)
    # An active attempt unchanged this long is checked against its workflow (started if it has
    # none, forked if it failed); a RUNNING one this long past its budget is resumed elsewhere.
    reconcile_grace_seconds: float = Field(default=60.0, ge=0)
    # DBOS's rows of a finished workflow whose intent is at rest (engine/retention.py) are deleted
    # once unchanged this many days (0: never); workers look for them every interval.
    workflow_retention_days: float = Field(default=7.0, ge=0, le=36_500)
    workflow_retention_interval_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    # The outbox's deliveries that an external destination accepted (engine/retention.py) are
    # deleted this many days after (0: never), and a message with them once it has none left.
    outbox_retention_days: float = Field(default=7.0, ge=0, le=36_500)
    outbox_retention_interval_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    # How often workers look for pending intents whose first approval window has ended under an
    # ESCALATE policy, and escalate them (engine/escalation.py).
    escalation_interval_seconds: float = Field(default=15.0, gt=0, le=3600)
    # Reconcile probes (engine/probes.py): how often workers look for AMBIGUOUS executions to
    # probe, and the first pause after an execution became AMBIGUOUS (doubled after each
    # inconclusive probe, up to the maximum: also how often one with no declared lookup is looked
    # at again).
    probe_interval_seconds: float = Field(default=60.0, gt=0, le=86_400)
    probe_max_backoff_seconds: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    # This process's identity in DBOS: a restarted worker with the same id recovers the workflows
    # it was running. Empty: "{hostname}:{port}".
    executor_id: str = Field(default="", max_length=128)
    # Every worker writes a heartbeat this often; one that has watched another executor stay
    # silent for executor_lost_seconds takes over its unfinished workflows (DBOS recovery for that
    # executor id). A lost executor's executions resume within about lost + heartbeat seconds.
    heartbeat_seconds: float = Field(default=5.0, gt=0, le=600)
    executor_lost_seconds: float = Field(default=30.0, gt=0, le=86_400)

    # The most an intent's execution_policy.timeout_seconds may ask for (a larger one is a 422): a
    # waiting execution holds a worker slot and its place in a connector's line for its budget.
    # Below the 300 s default, intents that do not say get this instead.
    max_timeout_seconds: int = Field(default=3600, ge=1, le=86_400)

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
    # A delivery refused this many times in a row ends DEAD_LETTER (no more tries until someone
    # redelivers it). With the default backoff, 20 tries span about an hour.
    outbox_max_attempts: int = Field(default=20, ge=1, le=1000)
    # Deliveries this process sends to one webhook or event bus at once: a destination that hangs
    # holds only this many of its own, never another destination's nor the engine's messages.
    outbox_destination_concurrency: int = Field(default=2, ge=1, le=32)
    # Signals are also put on this Amazon EventBridge bus (a name or an ARN) as the reference's
    # SIGNAL_CREATED events. Credentials come from the standard AWS chain (environment, shared
    # files, container or instance role); the region from here, else the ARN, else that chain.
    # The endpoint URL is for local stacks and tests.
    eventbridge_bus: str = ""
    eventbridge_region: str = Field(default="", pattern=r"^([a-z]{2}(-[a-z0-9]+)+)?$", max_length=32)
    eventbridge_endpoint_url: str = ""
    eventbridge_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # The service's address as people reach it (https://fulfill.example): the events that ask a
    # person to act link to the intent's console page under it. Empty: they carry no link.
    public_url: str = Field(default="", max_length=2048)

    # HTTP: browser origins allowed by CORS (comma-separated; empty = none) and the body size limit.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=100 * 1_048_576)
    # How long a request's body may take to arrive whole, from the request's arrival (408 after).
    request_body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    # A request's line and headers: at most this many bytes (431 above), whole within this many
    # seconds of the connection's opening or of the answer to its previous request (408 after).
    max_header_bytes: int = Field(default=32_768, ge=1024, le=1_048_576)
    request_header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    # The latest expires_at an intent may have, in seconds from its creation: an agent cannot park
    # a proposal (or import an approval) that stays executable for years. The default is the longest
    # default expiry of any action type (90 days), so no default changes.
    max_intent_ttl_seconds: int = Field(default=90 * 86_400, ge=60, le=10 * 365 * 86_400)
    # /agent/mcp: how long a tool call of a client without the Tasks extension waits for its
    # intent's outcome before it answers "awaiting approval" (0: answer at once).
    agent_wait_seconds: float = Field(default=20.0, ge=0, le=300)
    # How long a stop (SIGTERM) waits for the requests in flight before it cancels them and shuts
    # the application down: without a bound, one client that never finishes sending its body held
    # the stop until the process was killed. The orchestrator's grace period (30 s in deploy/)
    # covers it, then WORKFLOWS_STOP_SECONDS and DBOS's shutdown.
    shutdown_grace_seconds: int = Field(default=15, ge=1, le=3600)

    # /metrics: an optional bearer token (16+ characters) that every scrape must send, and an
    # optional listener of its own (host and port; unset port: /metrics is on the API's listener,
    # 0 picks a free port). Both off by default: the default listener is loopback (README).
    metrics_token: SecretStr = SecretStr("")
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # /metrics: the store gauges (attempts past budget, outbox age, kill switches, connectors) are
    # read from the database at most once per this many seconds, however often it is scraped.
    metrics_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    # Also export per-tenant series (fulfill_tenant_*), with the tenant id as a label value. Off by
    # default: tenant ids are unbounded and may be sensitive.
    metrics_tenant_labels: bool = False
    # Exported as fulfill_ambiguous_alert_threshold_seconds: FulfillAmbiguousExecutionsOld fires
    # when the oldest AMBIGUOUS execution (fulfill_ambiguous_oldest_age_seconds) is older.
    ambiguous_alert_seconds: float = Field(default=3600.0, gt=0, le=30 * 86_400)

    log_level: str = "INFO"
    # text: one human-readable line per event; json: one JSON object per line (for collectors).
    log_format: Literal["text", "json"] = "text"
    # Tracing: OTLP/HTTP export of every execution's trace (collector base URL such as
    # http://127.0.0.1:4318, or the full .../v1/traces URL). Empty: the standard
    # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT, else no export (trace ids
    # are still made, for the ledger and the logs).
    otlp_endpoint: str = ""

    # Connector credentials are encrypted at rest with this key (AES-256-GCM): 32 bytes in URL-safe
    # base64 (``fulfill credentials new-key`` prints one). Several keys, comma-separated: the first
    # encrypts, every one decrypts (key rotation). Empty: no credentials can be stored, and a
    # database that holds some refuses to start.
    secrets_key: SecretStr = SecretStr("")

    # The ledger's signed checkpoints (domain/ledger_chain.py): the Ed25519 key that signs them, as
    # a PEM (PKCS#8) private key or its 32-byte seed in base64 (``fulfill ledger new-key`` prints
    # one); the public halves of earlier keys, comma-separated (base64 or PEM), so that checkpoints
    # they signed still verify after a rotation; and how often every tenant's new entries are
    # checkpointed (0: only on demand). Empty key: no checkpoint can be signed.
    ledger_signing_key: SecretStr = SecretStr("")
    ledger_public_keys: str = ""
    ledger_checkpoint_seconds: float = Field(default=300.0, ge=0, le=86_400)
    # With each scheduled checkpoint pass, append every tenant's new signed checkpoints with their
    # entries to <dir>/<tenant>.jsonl (engine/ledger_checkpoints.py). Empty: no scheduled export.
    ledger_export_dir: str = ""
    # ...and to S3 or an S3-compatible store (engine/ledger_s3_export.py): ``s3://bucket/prefix``,
    # one object per signed checkpoint and a marker of the last one exported, per tenant. The
    # credentials come from the standard AWS chain; the region and the endpoint URL (S3-compatible
    # servers, local stacks, tests) are optional. Empty: no export to S3.
    ledger_export_s3_url: str = ""
    ledger_export_s3_region: str = Field(default="", pattern=r"^([a-z]{2}(-[a-z0-9]+)+)?$", max_length=32)
    ledger_export_s3_endpoint_url: str = ""
    ledger_export_s3_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    # Salesforce: where OAuth tokens are requested when a credential names no login URL, the REST
    # API version, the timeout of every request, the assumed lifetime of an access token whose
    # response does not say (Salesforce's do not), and the custom field that carries the
    # idempotency key on created records (an External ID text field on Task and Opportunity).
    salesforce_login_url: str = "https://login.salesforce.com"
    # Which login URLs a tenant's credential may name (domain/tenant_urls.py): these hosts over
    # https on port 443 (``*.`` patterns allowed), and these loopback hosts over http on any port
    # (a local Salesforce; none by default). FULFILL_SALESFORCE_LOGIN_URL, the operator's own
    # default, is not held to them.
    salesforce_login_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_LOGIN_HOSTS)
    )
    salesforce_login_http_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    salesforce_api_version: str = Field(default="v62.0", pattern=r"^v[0-9]{2,3}\.0$")
    salesforce_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    salesforce_token_ttl_seconds: float = Field(default=3600.0, ge=60, le=86_400)
    salesforce_marker_field: str = Field(
        default="Fulfill_Idempotency_Key__c", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,36}__c$"
    )

    # A RATE_LIMIT tool failure waits this much longer than the ordinary backoff before its retry
    # (bounded by half the budget left).
    rate_limit_backoff_seconds: float = Field(default=5.0, ge=0, le=600)

    # Operator console login with OpenID Connect (authorization code + PKCE). Empty issuer: off.
    # The bearer the console uses is the provider's access token (or its ID token, for providers
    # such as Cognito whose ID tokens the API accepts); the API's JWKS settings must verify it.
    oidc_issuer: str = ""
    oidc_client_id: str = Field(default="", max_length=256)
    # Empty: a public client (PKCE only). Set: a confidential client, authenticated at the token
    # endpoint with HTTP Basic (client_secret_basic).
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_scopes: str = Field(default="openid profile email", max_length=1024)
    oidc_bearer: Literal["access_token", "id_token"] = "access_token"
    # The callback URL registered at the provider, when the one built from the request is not it
    # (behind a proxy that rewrites the host or the scheme): https://console.example/console/auth/callback
    oidc_redirect_url: str = ""
    # Signs the console's session cookie; required with OIDC outside dev mode, the same on every
    # process. Empty in dev mode: a random key per process.
    console_session_secret: SecretStr = SecretStr("")
    # Notifications of what needs a person (per tenant: /admin/notifications); their links to the
    # console are under public_url (empty: links are left out, with a warning at start-up when a
    # tenant has a channel configured).
    # Slack Web API base URL, as slack_sdk's base_url (the method name is appended).
    slack_api_url: str = Field(default="https://slack.com/api/", max_length=2048)
    # Email notifications: smtp://host:port (plain), smtps://host:port (TLS), or
    # smtp://host:port?starttls=true; user:password@ allowed in the URL. Empty: email is off.
    smtp_url: SecretStr = SecretStr("")
    smtp_from: str = Field(default="", max_length=254)
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    # The console's cookie is sent over HTTPS only, except in dev mode or when insecure cookies
    # are allowed (a console served over plain HTTP: a local trial, or behind a proxy that adds
    # TLS elsewhere). Dev mode derives a session secret from FULFILL_JWT_SECRET when it is empty.
    console_insecure_cookies: bool = False
    # The console's local login (dev mode only: it mints a token for any tenant and scope). Unset:
    # on only with the development JWT secret on a loopback listener (the quick start). true: on
    # in any dev-mode deployment; false: off. Wherever it is on, it answers loopback requests only.
    console_dev_login: bool | None = None

    @field_validator(
        "webhook_urls",
        "cors_origins",
        "gateway_egress_allow",
        "salesforce_login_hosts",
        "salesforce_login_http_hosts",
        mode="before",
    )
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("console_dev_login", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and len(value.get_secret_value()) < MIN_METRICS_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_METRICS_TOKEN_LENGTH} characters")
        return value

    @field_validator("secrets_key")
    @classmethod
    def _check_secrets_key(cls, value: SecretStr) -> SecretStr:
        from fulfill.credentials.crypto import parse_keys

        parse_keys(value.get_secret_value())  # raises a message that never quotes the key
        return value

    @field_validator("ledger_signing_key")
    @classmethod
    def _check_ledger_signing_key(cls, value: SecretStr) -> SecretStr:
        from fulfill.domain.ledger_chain import load_signing_key

        if value.get_secret_value().strip():
            load_signing_key(value.get_secret_value())  # raises a message that never quotes the key
        return value

    @field_validator("ledger_public_keys")
    @classmethod
    def _check_ledger_public_keys(cls, value: str) -> str:
        from fulfill.domain.ledger_chain import split_public_keys

        split_public_keys(value)
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _check_http_url(cls, value: str) -> str:
        if value and urlparse(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp_url(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            parse_smtp_url(value.get_secret_value())  # the message never quotes the URL
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("jwt_default_scopes", mode="before")
    @classmethod
    def _split_scopes(cls, value: object) -> object:
        if isinstance(value, str):  # space- or comma-separated
            return value.replace(",", " ").split()
        return value

    @field_validator("agent_token_claims", mode="before")
    @classmethod
    def _split_agent_claims(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("agent_token_claims")
    @classmethod
    def _check_agent_claims(cls, value: list[str]) -> list[str]:
        try:
            AgentMarkers.parse(value)
        except ValueError as exc:
            raise ValueError(f"FULFILL_AGENT_TOKEN_CLAIMS: {exc}") from None
        return value

    @field_validator("gateway_egress_allow")
    @classmethod
    def _check_egress_allow(cls, value: list[str]) -> list[str]:
        try:
            EgressAllowList.parse(value)
        except ValueError as exc:
            raise ValueError(f"FULFILL_GATEWAY_EGRESS_ALLOW: {exc}") from None
        return value

    @cached_property
    def egress_allow(self) -> EgressAllowList:
        return EgressAllowList.parse(self.gateway_egress_allow)

    @model_validator(mode="after")
    def _check_heartbeat(self) -> Self:
        # A bound shorter than a few beats would take over the workflows of live executors whose
        # beat was merely late.
        if self.executor_lost_seconds < 3 * self.heartbeat_seconds:
            raise ValueError(
                "FULFILL_EXECUTOR_LOST_SECONDS must be at least three times FULFILL_HEARTBEAT_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _check_login_hosts(self) -> Self:
        try:
            LoginUrlPolicy.parse(self.salesforce_login_hosts, self.salesforce_login_http_hosts)
        except ValueError as exc:
            raise ValueError(f"FULFILL_SALESFORCE_LOGIN_HOSTS / _HTTP_HOSTS: {exc}") from None
        return self

    @cached_property
    def salesforce_login_policy(self) -> LoginUrlPolicy:
        return LoginUrlPolicy.parse(self.salesforce_login_hosts, self.salesforce_login_http_hosts)

    @model_validator(mode="after")
    def _check_auth(self) -> Self:
        if self.jwks_url and urlparse(self.jwks_url).scheme not in ("http", "https"):
            raise ValueError("FULFILL_JWKS_URL must be an http:// or https:// URL")
        if urlparse(self.salesforce_login_url).scheme not in ("http", "https"):
            raise ValueError("FULFILL_SALESFORCE_LOGIN_URL must be an http:// or https:// URL")
        self._check_eventbridge()
        self._check_ledger_export_s3()
        self._check_public_url()
        if self.jwt_scope_claim == "scope":
            raise ValueError(
                "FULFILL_JWT_SCOPE_CLAIM names another claim than 'scope' (which is always read)"
            )
        if self.jwt_issuer == SERVICE_TOKEN_ISSUER:
            raise ValueError(f"FULFILL_JWT_ISSUER must not be '{SERVICE_TOKEN_ISSUER}' (reserved)")
        self._check_oidc()
        if self.console_dev_login and self.auth_mode != "dev":
            raise ValueError("FULFILL_CONSOLE_DEV_LOGIN=true requires FULFILL_AUTH_MODE=dev")
        # Every missing production setting at once: a deployment learns them in one start, not three.
        problems = self._production_problems()
        if problems:
            raise ValueError("FULFILL_AUTH_MODE=production requires " + "; and ".join(problems))
        return self

    def _production_problems(self) -> list[str]:
        problems: list[str] = []
        if self.auth_mode != "production":
            return problems
        if not self.jwks_url:
            problems.append("FULFILL_JWKS_URL")
        if self.jwt_issuer == DEV_JWT_ISSUER:
            problems.append(
                "FULFILL_JWT_ISSUER (the identity provider's issuer, not the development default)"
            )
        if len(self.service_token_secret) < MIN_SERVICE_TOKEN_SECRET_LENGTH:
            problems.append(
                f"FULFILL_SERVICE_TOKEN_SECRET of at least {MIN_SERVICE_TOKEN_SECRET_LENGTH} characters"
            )
        return problems

    def _check_oidc(self) -> None:
        if self.oidc_redirect_url:
            redirect = urlparse(self.oidc_redirect_url)
            if redirect.scheme not in ("http", "https") or not redirect.hostname:
                raise ValueError("FULFILL_OIDC_REDIRECT_URL must be an http:// or https:// URL")
        if not self.oidc_issuer:
            return
        issuer = urlparse(self.oidc_issuer)
        local = issuer.hostname in ("127.0.0.1", "localhost", "::1")
        if not issuer.hostname or issuer.query or issuer.fragment or issuer.scheme not in ("http", "https"):
            raise ValueError("FULFILL_OIDC_ISSUER must be the identity provider's https:// issuer URL")
        if issuer.scheme == "http" and not local:
            raise ValueError(
                "FULFILL_OIDC_ISSUER must use https:// (http:// only for 127.0.0.1 or localhost)"
            )
        if not self.oidc_client_id:
            raise ValueError("FULFILL_OIDC_ISSUER requires FULFILL_OIDC_CLIENT_ID")
        if "openid" not in self.oidc_scopes.split():
            raise ValueError("FULFILL_OIDC_SCOPES must include 'openid'")
        if not self.jwks_url:
            raise ValueError(
                "FULFILL_OIDC_ISSUER requires FULFILL_JWKS_URL (the API verifies the console's tokens with it)"
            )
        secret = self.console_session_secret.get_secret_value()
        if (secret or self.auth_mode == "production") and len(secret) < MIN_SERVICE_TOKEN_SECRET_LENGTH:
            raise ValueError(
                "FULFILL_OIDC_ISSUER requires FULFILL_CONSOLE_SESSION_SECRET "
                f"of at least {MIN_SERVICE_TOKEN_SECRET_LENGTH} characters"
            )

    def _check_public_url(self) -> None:
        if not self.public_url:
            return
        parsed = urlparse(self.public_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query or parsed.fragment:
            raise ValueError(
                "FULFILL_PUBLIC_URL must be the service's http:// or https:// address, "
                "without a query or fragment (https://fulfill.example)"
            )

    def _check_ledger_export_s3(self) -> None:
        if self.ledger_export_s3_url and not _S3_URL.match(self.ledger_export_s3_url):
            raise ValueError(
                "FULFILL_LEDGER_EXPORT_S3_URL must be s3://<bucket>[/<prefix>] (a bucket name of "
                "3-63 lowercase letters, digits, '.' and '-')"
            )
        if self.ledger_export_s3_endpoint_url and urlparse(self.ledger_export_s3_endpoint_url).scheme not in (
            "http",
            "https",
        ):
            raise ValueError("FULFILL_LEDGER_EXPORT_S3_ENDPOINT_URL must be an http:// or https:// URL")

    def _check_eventbridge(self) -> None:
        if self.eventbridge_bus and not _EVENT_BUS.match(self.eventbridge_bus):
            raise ValueError(
                "FULFILL_EVENTBRIDGE_BUS must be an event bus name (letters, digits, '.', '_', '-') "
                "or an event bus ARN (arn:aws:events:REGION:ACCOUNT:event-bus/NAME)"
            )
        arn_region = event_bus_region(self.eventbridge_bus)
        if arn_region and self.eventbridge_region and arn_region != self.eventbridge_region:
            raise ValueError("FULFILL_EVENTBRIDGE_REGION differs from the region of FULFILL_EVENTBRIDGE_BUS")
        if self.eventbridge_endpoint_url and urlparse(self.eventbridge_endpoint_url).scheme not in (
            "http",
            "https",
        ):
            raise ValueError("FULFILL_EVENTBRIDGE_ENDPOINT_URL must be an http:// or https:// URL")

    @property
    def signal_destinations(self) -> list[str]:
        """Where every signal's SIGNAL_CREATED message goes: each webhook, then the event bus."""
        destinations = list(self.webhook_urls)
        if self.eventbridge_bus:
            destinations.append(EVENTBRIDGE_DESTINATION_PREFIX + self.eventbridge_bus)
        return destinations

    @property
    def escalation_destinations(self) -> list[str]:
        """Where an escalated approval's APPROVAL_ESCALATED event goes: the event bus (webhooks
        receive signals only)."""
        return [EVENTBRIDGE_DESTINATION_PREFIX + self.eventbridge_bus] if self.eventbridge_bus else []

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
    def otlp_traces_endpoint(self) -> str:
        """Where spans are exported to; empty when export is off."""
        return traces_endpoint(self.otlp_endpoint, os.environ)

    @property
    def stop_may_cut_gateway_calls(self) -> bool:
        """A stop of a process serving the gateway can cut a call to a target that is still
        within its timeout: the worker that made it then has no answer (AMBIGUOUS)."""
        return self.role != "worker" and self.shutdown_grace_seconds <= self.gateway_call_timeout_seconds

    @property
    def metrics_unprotected_beyond_loopback(self) -> bool:
        """/metrics is served, without a token, on a listener other hosts can reach."""
        if self.metrics_token.get_secret_value():
            return False
        host = self.metrics_host if self.metrics_port is not None else self.host
        return host not in ("127.0.0.1", "localhost", "::1")

    @property
    def log_secrets(self) -> list[str]:
        """The configured secrets that the logs redact wherever they appear."""
        values = [
            self.jwt_secret,
            self.service_token_secret,
            self.webhook_secret,
            self.oidc_client_secret.get_secret_value(),
            self.console_session_secret.get_secret_value(),
            self.metrics_token.get_secret_value(),
            *smtp_password(self.smtp_url.get_secret_value()),
            self.ledger_signing_key.get_secret_value().strip(),
        ]
        keys = self.secrets_key.get_secret_value()
        values += [keys, *(key.strip() for key in keys.split(","))]
        return [value for value in values if value]

    @property
    def uses_dev_secret(self) -> bool:
        return self.jwt_secret == DEV_JWT_SECRET

    @property
    def console_dev_login_enabled(self) -> bool:
        """Whether the console offers its local login (to loopback requests only)."""
        return dev_login_enabled(
            auth_mode=self.auth_mode,
            uses_dev_secret=self.uses_dev_secret,
            listener_host=self.host,
            explicit=self.console_dev_login,
        )


@dataclass(frozen=True)
class SmtpServer:
    """Where email goes: ``FULFILL_SMTP_URL`` parsed."""

    host: str
    port: int
    tls: bool  # smtps://: TLS from the first byte
    starttls: bool
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SmtpServer:
    """``smtp://[user:password@]host[:port][?starttls=true]`` or ``smtps://…``; a ValueError that
    never quotes the URL (it may hold a password) otherwise."""
    from urllib.parse import parse_qs, unquote

    try:
        parts = urlparse(url)
        port = parts.port
    except ValueError:
        raise ValueError("FULFILL_SMTP_URL is not a valid URL") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("FULFILL_SMTP_URL must be smtp://host:port or smtps://host:port")
    query = parse_qs(parts.query)
    unknown = set(query) - {"starttls"}
    if unknown:
        raise ValueError(f"FULFILL_SMTP_URL: unknown parameter {sorted(unknown)[0]!r} (known: starttls)")
    starttls = [value.lower() for value in query.get("starttls", ["false"])] == ["true"]
    if parts.scheme == "smtps" and starttls:
        raise ValueError("FULFILL_SMTP_URL: smtps:// is TLS already; starttls is for smtp://")
    return SmtpServer(
        host=parts.hostname,
        port=port or (465 if parts.scheme == "smtps" else 25),
        tls=parts.scheme == "smtps",
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def smtp_password(url: str) -> list[str]:
    """The password in an SMTP URL, for the logs to redact ([] when none or malformed)."""
    try:
        password = parse_smtp_url(url).password if url else None
    except ValueError:
        return []
    return [password] if password else []


def traces_endpoint(configured: str, environ: Mapping[str, str]) -> str:
    """The OTLP/HTTP traces URL: ``configured`` (FULFILL_OTLP_ENDPOINT), else the standard
    OpenTelemetry variables; a base URL gets ``/v1/traces``. Empty: export is off."""
    if configured.strip():
        base = configured.strip()
    elif environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        return environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].strip()
    elif environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        base = environ["OTEL_EXPORTER_OTLP_ENDPOINT"].strip()
    else:
        return ""
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


# ``FULFILL_*`` variables read by the command line and the scripts rather than by the service.
CLIENT_VARIABLES = frozenset(
    {
        "FULFILL_URL",
        "FULFILL_TOKEN",
        "FULFILL_TENANT",
        "FULFILL_ACCOUNT_ID",
        "FULFILL_BIN",
        "FULFILL_E2E_GLOBAL_STOP",
    }
)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``FULFILL_*`` variable nothing reads, naming the closest known one: a
    misspelt setting (``FULFILL_DATABSE_URL``) would otherwise be ignored without a word."""
    settings = {f"FULFILL_{name.upper()}" for name in Settings.model_fields}
    known = sorted(settings | CLIENT_VARIABLES)
    warnings = []
    for name in sorted(environ):
        upper = name.upper()  # settings are read whatever their case
        if not upper.startswith("FULFILL_") or upper in known or upper.startswith("FULFILL_TEST_"):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
        warning = f"{name} is not a fulfill setting and is ignored"
        warnings.append(warning + (f": did you mean {close[0]}?" if close else " (README: Configuration)"))
    return warnings
