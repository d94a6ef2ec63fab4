"""Gateway targets: register a remote MCP server, list, re-discover and remove them.

Used by ``/admin/gateway/targets`` (``platform:admin``) and by ``fulfill gateway``. A target is
checked before it is stored: its URL (``http``/``https``, no credentials in it), its name (not a
namespace the in-process connectors use), credentials only over ``https`` or to a host the
egress allow-list names, every address its host resolves to (the egress rules), and its tools,
discovered with ``tools/list``. Secrets go to :class:`TargetSecrets` and are never returned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from fulfill.domain.egress import (
    EgressAllowList,
    EgressRefused,
    InvalidTargetUrl,
    TargetUrl,
    literal_address,
    parse_target_url,
)
from fulfill.domain.probes import LOOKUP_KEY_ARGUMENT
from fulfill.domain.targets import (
    REMOTE_TOOL_NAME,
    GatewayTarget,
    TargetAuthType,
    TargetAuthView,
    TargetName,
)
from fulfill.gateway.egress import Resolver, checked_addresses, system_resolver
from fulfill.gateway.remote import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Discovery,
    RemoteTargets,
    TargetEndpoint,
    TargetError,
)
from fulfill.gateway.target_auth import OAuthTokens, TargetSecrets
from fulfill.gateway.targets import TargetCatalog
from fulfill.ports.store import Store
from fulfill.usecases.errors import Conflict, Invalid, NotFound

log = logging.getLogger(__name__)

RESERVED_NAMES = frozenset({"fulfill", "mcp", "gateway"})


class NoAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["none"] = "none"


class BearerAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["bearer"]
    token: SecretStr = Field(min_length=1, max_length=8192)


class OAuthClientCredentialsAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["oauth_client_credentials"]
    token_url: str = Field(min_length=1, max_length=2048)
    client_id: str = Field(min_length=1, max_length=512)
    client_secret: SecretStr = Field(min_length=1, max_length=8192)
    scope: str | None = Field(default=None, max_length=1024)
    audience: str | None = Field(default=None, max_length=1024)


TargetAuthInput = Annotated[NoAuth | BearerAuth | OAuthClientCredentialsAuth, Field(discriminator="type")]


class TargetDraft(BaseModel):
    """``POST /admin/gateway/targets`` body."""

    model_config = ConfigDict(extra="forbid")

    name: TargetName
    url: str = Field(min_length=1, max_length=2048)
    auth: TargetAuthInput = Field(default_factory=NoAuth)
    # Whether the target deduplicates on the idempotency key (``_meta`` io.fulfill/idempotency-key):
    # only then is a call whose answer was lost retried.
    deduplicates: bool = False
    # The target's tool that looks a write up by its idempotency key, for reconcile probes of an
    # AMBIGUOUS execution: it must be one of the target's tools and take ``idempotency_key``.
    lookup_tool: str | None = Field(default=None, pattern=REMOTE_TOOL_NAME.pattern)


class TargetToolView(BaseModel):
    name: str
    description: str | None = None
    input_schema: dict[str, Any]


class TargetView(BaseModel):
    """A target as the API shows it: ``auth`` without its secret."""

    name: str
    url: str
    auth: TargetAuthView
    deduplicates: bool
    lookup_tool: str | None = None
    tools: list[TargetToolView]
    skipped_tools: list[str] = Field(default_factory=list)
    revision: int
    created_at: str
    updated_at: str
    synced_at: str


class TargetListing(BaseModel):
    targets: list[TargetView]


class TargetAdmin:
    def __init__(
        self,
        store: Store,
        secrets: TargetSecrets,
        *,
        allow: EgressAllowList,
        now_iso: Callable[[], str],
        reserved_namespaces: Iterable[str],
        discovery_timeout: float,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        catalog: TargetCatalog | None = None,
        resolver: Resolver = system_resolver,
        tokens: OAuthTokens | None = None,
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._allow = allow
        self._now_iso = now_iso
        self._reserved = frozenset(reserved_namespaces) | RESERVED_NAMES
        self._timeout = discovery_timeout
        self._catalog = catalog
        self._resolver = resolver
        self._tokens = tokens or OAuthTokens()
        self._remote = RemoteTargets(
            allow, resolver=resolver, tokens=self._tokens, max_response_bytes=max_response_bytes
        )

    # --- reading -------------------------------------------------------------------------------

    def list(self) -> TargetListing:
        with self._store.read() as uow:
            return TargetListing(targets=[_view(target) for target in uow.targets.list_targets()])

    # --- changes -------------------------------------------------------------------------------

    def add(self, draft: TargetDraft) -> TargetView:
        if draft.name in self._reserved:
            raise Invalid(
                f"'{draft.name}' is reserved (a tool namespace of this service)", code="TARGET_NAME_RESERVED"
            )
        with self._store.read() as uow:
            if uow.targets.get_target(draft.name) is not None:
                raise Conflict(f"a target named {draft.name} exists; remove it first", code="TARGET_EXISTS")
        url = self._checked_url(draft.url, "INVALID_TARGET_URL")
        auth, secret = self._auth(draft, url)
        if secret is not None and not self._secrets.can_store:
            raise Invalid(
                "target credentials are stored only encrypted: set FULFILL_SECRETS_KEY "
                "(`fulfill credentials new-key` prints one) where this runs: the service reads it at "
                "start-up, `fulfill gateway add` at once",
                code="SECRETS_KEY_NOT_CONFIGURED",
            )
        endpoint = TargetEndpoint(
            name=draft.name, url=url.url, auth=auth, deduplicates=draft.deduplicates, secret=secret
        )
        discovery = self._discover(endpoint, url)
        if draft.lookup_tool is not None:
            _check_lookup_tool(draft.lookup_tool, discovery)
        now = self._now_iso()
        target = GatewayTarget(
            name=draft.name,
            url=url.url,
            auth=auth,
            deduplicates=draft.deduplicates,
            lookup_tool=draft.lookup_tool,
            tools=discovery.tools,
            skipped_tools=discovery.skipped,
            revision=1,
            created_at=now,
            updated_at=now,
            synced_at=now,
        )
        with self._store.write() as uow:
            if not uow.targets.insert_target(target):
                raise Conflict(f"a target named {draft.name} exists; remove it first", code="TARGET_EXISTS")
        try:
            if secret is not None:
                self._secrets.put(draft.name, secret)
            else:
                self._secrets.delete(draft.name)
        except Exception:
            with self._store.write() as uow:
                uow.targets.delete_target(draft.name, now=self._now_iso())
            raise
        with self._store.write() as uow:
            uow.targets.touch_catalog(self._now_iso())  # processes that loaded it without its secret
        self._changed()
        log.info("gateway target %s added with %d tool(s)", target.name, len(target.tools))
        return _view(target)

    def sync(self, name: str) -> TargetView:
        with self._store.read() as uow:
            stored = uow.targets.get_target(name)
        if stored is None:
            raise NotFound(f"no gateway target {name}")
        url = self._checked_url(stored.url, "INVALID_TARGET_URL")
        secret = self._secrets.get(name) if stored.auth.type is not TargetAuthType.NONE else None
        endpoint = TargetEndpoint(
            name=name, url=stored.url, auth=stored.auth, deduplicates=stored.deduplicates, secret=secret
        )
        discovery = self._discover(endpoint, url)
        now = self._now_iso()
        target = stored.model_copy(
            update={
                "tools": discovery.tools,
                "skipped_tools": discovery.skipped,
                "revision": stored.revision + 1,
                "updated_at": now,
                "synced_at": now,
            }
        )
        with self._store.write() as uow:
            if not uow.targets.replace_target(target):
                raise NotFound(f"no gateway target {name}")
        self._changed()
        log.info("gateway target %s synced: %d tool(s)", name, len(target.tools))
        return _view(target)

    def remove(self, name: str) -> None:
        with self._store.write() as uow:
            if not uow.targets.delete_target(name, now=self._now_iso()):
                raise NotFound(f"no gateway target {name}")
        self._secrets.delete(name)
        self._tokens.forget(name)
        self._changed()
        log.info("gateway target %s removed", name)

    # --- checks --------------------------------------------------------------------------------

    def _checked_url(self, value: str, code: str) -> TargetUrl:
        try:
            return parse_target_url(value)
        except InvalidTargetUrl as exc:
            raise Invalid(str(exc), code=code) from None

    def _auth(self, draft: TargetDraft, url: TargetUrl) -> tuple[TargetAuthView, dict[str, str] | None]:
        auth = draft.auth
        if isinstance(auth, NoAuth):
            return TargetAuthView(type=TargetAuthType.NONE), None
        self._require_private_channel(url, "the target URL")
        if isinstance(auth, BearerAuth):
            return TargetAuthView(type=TargetAuthType.BEARER), {"token": auth.token.get_secret_value()}
        token_url = self._checked_url(auth.token_url, "INVALID_TOKEN_URL")
        self._require_private_channel(token_url, "the token URL")
        view = TargetAuthView(
            type=TargetAuthType.OAUTH_CLIENT_CREDENTIALS,
            token_url=token_url.url,
            client_id=auth.client_id,
            scope=auth.scope,
            audience=auth.audience,
        )
        return view, {"client_secret": auth.client_secret.get_secret_value()}

    def _require_private_channel(self, url: TargetUrl, what: str) -> None:
        """Credentials travel over https only, or to a host the egress allow-list names."""
        if url.scheme == "https" or self._allow.allows_host(url.host):
            return
        address = literal_address(url.host)
        if address is not None and self._allow.allows_address(address):
            return
        raise Invalid(
            f"{what} must be https to carry credentials (or name a host FULFILL_GATEWAY_EGRESS_ALLOW allows)",
            code="INSECURE_TARGET_AUTH",
        )

    def _discover(self, endpoint: TargetEndpoint, url: TargetUrl) -> Discovery:
        async def run() -> Discovery:
            try:
                await checked_addresses(url.host, url.port, self._allow, self._resolver)
            except EgressRefused as exc:
                raise Invalid(str(exc), code="EGRESS_REFUSED") from None
            except OSError:
                raise Invalid(f"{url.host} could not be resolved", code="TARGET_UNREACHABLE") from None
            try:
                return await self._remote.discover(endpoint, timeout=self._timeout)
            except TargetError as exc:
                raise Invalid(
                    f"the tools of {endpoint.name} could not be listed: {exc.error.error_message}",
                    code=exc.error.error_code,
                ) from None

        return anyio.run(run)

    def _changed(self) -> None:
        if self._catalog is not None:
            self._catalog.changed()


def _check_lookup_tool(name: str, discovery: Discovery) -> None:
    """A declared lookup tool is one of the target's tools and takes the idempotency key."""
    spec = next((tool for tool in discovery.tools if tool.remote_name == name), None)
    if spec is None:
        raise Invalid(f"lookup_tool {name!r} is not one of the target's tools", code="LOOKUP_TOOL_UNKNOWN")
    properties = spec.input_schema.get("properties")
    if not isinstance(properties, dict) or LOOKUP_KEY_ARGUMENT not in properties:
        raise Invalid(
            f"lookup_tool {name!r} must take the argument {LOOKUP_KEY_ARGUMENT!r} (its input schema "
            "does not declare it)",
            code="LOOKUP_TOOL_INVALID",
        )


def _view(target: GatewayTarget) -> TargetView:
    return TargetView(
        name=target.name,
        url=target.url,
        auth=target.auth,
        deduplicates=target.deduplicates,
        lookup_tool=target.lookup_tool,
        tools=[
            TargetToolView(name=tool.name, description=tool.description, input_schema=tool.input_schema)
            for tool in target.tools
        ],
        skipped_tools=target.skipped_tools,
        revision=target.revision,
        created_at=target.created_at,
        updated_at=target.updated_at,
        synced_at=target.synced_at,
    )
