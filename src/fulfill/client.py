"""A typed client of the service's HTTP API (DESIGN §4), over httpx.

Every route answers with the pydantic models the service itself serializes, so a caller gets the
same types the service returns. A refused call (HTTP 4xx/5xx), or an answer that is not the
service's JSON, raises one :class:`ApiError` carrying the problem document (status, code, detail)
and the request line. A service that cannot be reached raises ``httpx.TransportError`` as httpx
does, so that a caller tells "no answer" from "a refusal".

The models of intents, executions and kill switches live beside use cases that import the
workflow engine; they are imported where a call parses them, so that ``import fulfill.client``
(and with it every CLI command) stays as quick to start as httpx itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from fulfill.domain.credentials import CredentialInput, CredentialMetadata, SecretRotation
from fulfill.domain.models import ExecutionStatusView, RegistryEntry
from fulfill.domain.notifications import NotificationSettings
from fulfill.domain.policies import Policy, PolicySpec
from fulfill.usecases.connectors import ConnectorLimitsBody, ConnectorView, TenantCapBody, TenantCapView
from fulfill.usecases.notifications import NotificationsView
from fulfill.usecases.outbox import DeadLetterListing, RedeliverBody, Redelivered
from fulfill.usecases.policies import PolicyListing, SimulationResult
from fulfill.usecases.registry import RegistryDraft
from fulfill.usecases.targets import TargetDraft, TargetListing, TargetView

if TYPE_CHECKING:
    from fulfill.api.events import EventAccepted
    from fulfill.api.intents import CreatedIntent
    from fulfill.usecases.admin import KillSwitches, TenantExecution
    from fulfill.usecases.executions import ExecutionPage, Timeline
    from fulfill.usecases.intents import ApprovalChange, CreateIntent

T = TypeVar("T")
DEFAULT_TIMEOUT_SECONDS = 30.0
# How long an idle connection is kept for the next call: below the idle timeout of the service's
# HTTP server (uvicorn's, 5 s). At the same 5 s on both sides, a call could go out on a connection
# the server was closing at that moment, and fail with "connection reset by peer".
IDLE_CONNECTION_SECONDS = 2.0


def default_limits(
    *, max_connections: int | None = 100, max_keepalive_connections: int | None = 20
) -> httpx.Limits:
    """A connection pool whose idle connections are dropped after :data:`IDLE_CONNECTION_SECONDS`;
    its bounds are httpx's default client's (100 connections, 20 kept idle) unless given (None:
    unbounded)."""
    return httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive_connections,
        keepalive_expiry=IDLE_CONNECTION_SECONDS,
    )


class ApiError(Exception):
    """The service refused a call (its problem+json answer), or answered with something that is
    not the JSON the route promises (then ``problem`` is None and ``code`` is None)."""

    def __init__(self, response: httpx.Response, *, reason: str | None = None) -> None:
        self.response = response
        self.status = response.status_code
        self.method = response.request.method
        self.path = response.request.url.path
        self.url = str(response.request.url)
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
            reason = reason or "the answer is not JSON"
        self.problem: dict[str, Any] | None = body if isinstance(body, dict) else None
        problem = self.problem or {}
        self.code: str | None = str(problem["code"]) if problem.get("code") is not None else None
        self.detail: str | None = str(problem["detail"]) if problem.get("detail") is not None else None
        self.reason = reason
        super().__init__(str(self))

    @property
    def request_line(self) -> str:
        """``POST /intents``."""
        return f"{self.method} {self.path}"

    @property
    def is_json(self) -> bool:
        """Whether the answer was JSON at all (a proxy's HTML error page, or another server, is not)."""
        try:
            self.response.json()
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        line = f"{self.request_line} answered {self.status}"
        if self.detail is not None:
            line += f" ({self.code or 'ERROR'}: {self.detail})"
        elif self.reason:
            line += f" ({self.reason})"
        return line


@dataclass(frozen=True)
class Upserted(Generic[T]):
    """What a create-or-replace route stored, and whether it created it (201) or replaced it (200)."""

    value: T
    created: bool


class PutEventsEntry(BaseModel):
    """One entry of a PutEvents-style answer: an ``EventId``, or an ``ErrorCode`` and its message."""

    model_config = ConfigDict(populate_by_name=True)

    event_id: str | None = Field(default=None, alias="EventId")
    error_code: str | None = Field(default=None, alias="ErrorCode")
    error_message: str | None = Field(default=None, alias="ErrorMessage")


class PutEventsAnswer(BaseModel):
    """``POST /events`` with ``Entries``: answered per entry, in request order."""

    model_config = ConfigDict(populate_by_name=True)

    failed_entry_count: int = Field(alias="FailedEntryCount")
    entries: list[PutEventsEntry] = Field(alias="Entries")


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One request of a route and how its answer is read."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    body: Any = None
    params: Mapping[str, Any] | None = None


def _segment(value: str) -> str:
    return quote(value, safe=":@")


def _json_body(body: BaseModel | Mapping[str, Any] | None) -> Any:
    """A model as the service reads it (fields the caller set); a mapping is sent as it is, so
    that the service, not this client, judges its values (its problem answer names a wrong one)."""
    if isinstance(body, BaseModel):
        fields = body.model_dump(mode="python", exclude_unset=True, by_alias=True)
        return to_jsonable_python(_revealed(fields))
    return dict(body) if body is not None else None


def _revealed(value: Any) -> Any:
    """A credential's secrets as the values they hold: the model would print them as ``**********``."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {key: _revealed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_revealed(item) for item in value]
    return value


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(kind: Any) -> TypeAdapter[Any]:
    """One adapter per answer type: building one costs more than reading an answer."""
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    return adapter


def _model(kind: type[T]) -> Callable[[httpx.Response], T]:
    adapter: TypeAdapter[T] = _adapter(kind)

    def read(response: httpx.Response) -> T:
        try:
            return adapter.validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the body"
            raise ApiError(
                response, reason=f"not the answer this route gives: {where}: {first['msg']}"
            ) from None

    return read


def _upserted(kind: type[T]) -> Callable[[httpx.Response], Upserted[T]]:
    read = _model(kind)

    def upserted(response: httpx.Response) -> Upserted[T]:
        return Upserted(read(response), created=response.status_code == 201)

    return upserted


def _nothing(response: httpx.Response) -> None:
    return None


def _entries(response: httpx.Response) -> list[RegistryEntry]:
    listing: dict[str, list[RegistryEntry]] = _model(dict[str, list[RegistryEntry]])(response)
    return listing["entries"]


def _credentials(response: httpx.Response) -> list[CredentialMetadata]:
    listing: dict[str, list[CredentialMetadata]] = _model(dict[str, list[CredentialMetadata]])(response)
    return listing["credentials"]


# --- the routes, each built once for the synchronous and the asynchronous client ---------------


def _create_intent(body: CreateIntent | Mapping[str, Any]) -> _Call[Upserted[CreatedIntent]]:
    from fulfill.api.intents import CreatedIntent

    return _Call("POST", "/intents", _upserted(CreatedIntent), _json_body(body))


def _get_intent(intent_id: str) -> _Call[CreatedIntent]:
    from fulfill.api.intents import CreatedIntent

    return _Call("GET", f"/intents/{_segment(intent_id)}", _model(CreatedIntent))


def _intent_change(intent_id: str, change: str, body: dict[str, Any] | None = None) -> _Call[ApprovalChange]:
    from fulfill.usecases.intents import ApprovalChange

    return _Call("POST", f"/intents/{_segment(intent_id)}/{change}", _model(ApprovalChange), body)


def _execution_status(intent_id: str, account_id: str | None) -> _Call[ExecutionStatusView]:
    params = {"account_id": account_id} if account_id is not None else None
    return _Call(
        "GET", f"/executions/{_segment(intent_id)}/status", _model(ExecutionStatusView), params=params
    )


def _list_executions(
    account_id: str, limit: int | str | None, status: str | None, next_token: str | None
) -> _Call[ExecutionPage]:
    from fulfill.usecases.executions import ExecutionPage

    wanted = {"limit": limit, "status": status, "next_token": next_token}
    params = {name: value for name, value in wanted.items() if value is not None}
    return _Call("GET", f"/accounts/{_segment(account_id)}/executions", _model(ExecutionPage), params=params)


def _send_event(event: Mapping[str, Any]) -> _Call[EventAccepted]:
    from fulfill.api.events import EventAccepted

    return _Call("POST", "/events", _model(EventAccepted), dict(event))


class _Base:
    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def _request(self, call: _Call[Any]) -> httpx.Request:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Request(
            call.method,
            self.base_url + call.path,
            json=call.body,
            params=dict(call.params) if call.params else None,
            headers=headers,
        )

    @staticmethod
    def _read(call: _Call[T], response: httpx.Response) -> T:
        if response.status_code >= 400:
            raise ApiError(response)
        return call.read(response)


class FulfillClient(_Base):
    """The service's HTTP API. ``with FulfillClient(url, token) as api: api.approve(intent_id)``.

    ``with_token`` gives a client of the same connection pool with another bearer token (a
    tenant's and a platform admin's, for example)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, token)
        self._owns_http = http is None
        self.http = http if http is not None else httpx.Client(timeout=timeout, limits=default_limits())

    def with_token(self, token: str | None) -> FulfillClient:
        return FulfillClient(self.base_url, token, http=self.http)

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def send(self, call: _Call[T]) -> T:
        return self._read(call, self.http.send(self._request(call)))

    # --- intents ---------------------------------------------------------------------------

    def create_intent(self, body: CreateIntent | Mapping[str, Any]) -> Upserted[CreatedIntent]:
        """``POST /intents``: created (201), or the same body again (200, the stored intent)."""
        return self.send(_create_intent(body))

    def get_intent(self, intent_id: str) -> CreatedIntent:
        return self.send(_get_intent(intent_id))

    def approve(self, intent_id: str, *, parameters: dict[str, Any] | None = None) -> ApprovalChange:
        """Approve; with ``parameters``, edit before approving (they replace the whole object)."""
        body = {"parameters": parameters} if parameters is not None else None
        return self.send(_intent_change(intent_id, "approve", body))

    def reject(self, intent_id: str) -> ApprovalChange:
        return self.send(_intent_change(intent_id, "reject"))

    def cancel(self, intent_id: str) -> ApprovalChange:
        return self.send(_intent_change(intent_id, "cancel"))

    def rerun(self, intent_id: str, reason: str | None = None) -> ExecutionStatusView:
        body = {"reason": reason} if reason else None
        path = f"/intents/{_segment(intent_id)}/rerun"
        return self.send(_Call("POST", path, _model(ExecutionStatusView), body))

    def resolve(
        self,
        intent_id: str,
        resolution: str,
        *,
        external_object_refs: list[dict[str, Any]] | None = None,
        reason: str | None = None,
    ) -> ExecutionStatusView:
        """Resolve an AMBIGUOUS execution: ``committed`` (with the refs found at the target),
        ``not_committed`` (the call is sent once more under the same key) or ``abandon`` (a reason)."""
        body: dict[str, Any] = {"resolution": resolution}
        if external_object_refs:
            body["external_object_refs"] = external_object_refs
        if reason:
            body["reason"] = reason
        path = f"/executions/{_segment(intent_id)}/resolve"
        return self.send(_Call("POST", path, _model(ExecutionStatusView), body))

    # --- events ----------------------------------------------------------------------------

    def send_event(self, event: Mapping[str, Any]) -> EventAccepted:
        """``POST /events`` with one EventBridge-shaped ``ACTION_APPROVED`` event."""
        return self.send(_send_event(event))

    def send_events(self, entries: list[Any]) -> PutEventsAnswer:
        """``POST /events`` with a PutEvents-style batch: answered per entry."""
        return self.send(_Call("POST", "/events", _model(PutEventsAnswer), {"Entries": entries}))

    # --- executions ------------------------------------------------------------------------

    def execution_status(self, intent_id: str, account_id: str | None = None) -> ExecutionStatusView:
        return self.send(_execution_status(intent_id, account_id))

    def list_executions(
        self,
        account_id: str,
        *,
        limit: int | str | None = None,
        status: str | None = None,
        next_token: str | None = None,
    ) -> ExecutionPage:
        return self.send(_list_executions(account_id, limit, status, next_token))

    def timeline(self, intent_id: str) -> Timeline:
        from fulfill.usecases.executions import Timeline

        return self.send(_Call("GET", f"/executions/{_segment(intent_id)}/timeline", _model(Timeline)))

    # --- kill switches ---------------------------------------------------------------------

    def kill_switches(self) -> KillSwitches:
        from fulfill.usecases.admin import KillSwitches

        return self.send(_Call("GET", "/admin/kill-switches", _model(KillSwitches)))

    def put_kill_switches(self, switches: KillSwitches | Mapping[str, Any]) -> KillSwitches:
        from fulfill.usecases.admin import KillSwitches

        body = _json_body(switches)
        return self.send(_Call("PUT", "/admin/kill-switches", _model(KillSwitches), body))

    def tenant_execution(self, tenant_id: str) -> TenantExecution:
        from fulfill.usecases.admin import TenantExecution

        path = f"/admin/tenants/{_segment(tenant_id)}/execution"
        return self.send(_Call("GET", path, _model(TenantExecution)))

    def put_tenant_execution(
        self, tenant_id: str, execution: TenantExecution | Mapping[str, Any]
    ) -> TenantExecution:
        from fulfill.usecases.admin import TenantExecution

        path = f"/admin/tenants/{_segment(tenant_id)}/execution"
        return self.send(_Call("PUT", path, _model(TenantExecution), _json_body(execution)))

    # --- notification channels (the token's tenant) ---------------------------------------------

    def ledger_verify(self, tenant_id: str | None = None) -> dict[str, Any]:
        """``GET /admin/ledger/verify``: the token's tenant's ledger, or (``platform:admin``) another's."""
        params = {"tenant_id": tenant_id} if tenant_id else None
        return self.send(_Call("GET", "/admin/ledger/verify", _model(dict[str, Any]), params=params))

    def ledger_checkpoint(self, tenant_id: str | None = None) -> dict[str, Any]:
        """``POST /admin/ledger/checkpoint``: sign the entries appended since the last checkpoint."""
        params = {"tenant_id": tenant_id} if tenant_id else None
        return self.send(_Call("POST", "/admin/ledger/checkpoint", _model(dict[str, Any]), params=params))

    def ledger_export(self, since: int = 0, tenant_id: str | None = None) -> str:
        """``GET /admin/ledger/export``: JSON Lines of whole signed checkpoints after ``since``."""
        params: dict[str, Any] = {"since": since, **({"tenant_id": tenant_id} if tenant_id else {})}
        return self.send(_Call("GET", "/admin/ledger/export", lambda response: response.text, params=params))

    def get_notifications(self) -> NotificationsView:
        return self.send(_Call("GET", "/admin/notifications", _model(NotificationsView)))

    def put_notifications(self, channels: NotificationSettings | Mapping[str, Any]) -> NotificationsView:
        """Replace the token's tenant's channels (a missing one is turned off); secrets are sent,
        never answered."""
        return self.send(
            _Call("PUT", "/admin/notifications", _model(NotificationsView), _json_body(channels))
        )

    # --- registry --------------------------------------------------------------------------

    def registry(self, action_type: str | None = None) -> list[RegistryEntry]:
        params = {"action_type": action_type} if action_type else None
        return self.send(_Call("GET", "/admin/registry", _entries, params=params))

    def register_version(self, draft: RegistryDraft | Mapping[str, Any]) -> RegistryEntry:
        return self.send(_Call("POST", "/admin/registry", _model(RegistryEntry), _json_body(draft)))

    def deprecate_version(self, action_type: str, registry_version: int) -> RegistryEntry:
        path = f"/admin/registry/{_segment(action_type)}/versions/{registry_version}/deprecate"
        return self.send(_Call("POST", path, _model(RegistryEntry)))

    # --- approval policies -----------------------------------------------------------------

    def list_policies(self) -> list[Policy]:
        """The token's tenant's policies, then the platform's, in evaluation order."""
        return self.send(_Call("GET", "/admin/policies", _model(PolicyListing))).policies

    def get_policy(self, policy_id: str) -> Policy:
        return self.send(_Call("GET", f"/admin/policies/{_segment(policy_id)}", _model(Policy)))

    def create_policy(self, spec: PolicySpec | Mapping[str, Any]) -> Policy:
        return self.send(_Call("POST", "/admin/policies", _model(Policy), _json_body(spec)))

    def replace_policy(self, policy_id: str, spec: PolicySpec | Mapping[str, Any]) -> Policy:
        """Store ``spec`` as the policy's next version."""
        path = f"/admin/policies/{_segment(policy_id)}"
        return self.send(_Call("PUT", path, _model(Policy), _json_body(spec)))

    def delete_policy(self, policy_id: str) -> None:
        self.send(_Call("DELETE", f"/admin/policies/{_segment(policy_id)}", _nothing))

    def simulate_policy(
        self, policy: PolicySpec | Mapping[str, Any], *, limit: int | None = None
    ) -> SimulationResult:
        """What ``policy`` would have decided for the tenant's last ``limit`` intents (default 100)."""
        body: dict[str, Any] = {"policy": _json_body(policy)}
        if limit is not None:
            body["limit"] = limit
        return self.send(_Call("POST", "/admin/policies/simulate", _model(SimulationResult), body))

    # --- gateway targets -------------------------------------------------------------------

    def targets(self) -> TargetListing:
        return self.send(_Call("GET", "/admin/gateway/targets", _model(TargetListing)))

    def add_target(self, draft: TargetDraft | Mapping[str, Any]) -> TargetView:
        return self.send(_Call("POST", "/admin/gateway/targets", _model(TargetView), _json_body(draft)))

    def sync_target(self, name: str) -> TargetView:
        return self.send(_Call("POST", f"/admin/gateway/targets/{_segment(name)}/sync", _model(TargetView)))

    def remove_target(self, name: str) -> None:
        self.send(_Call("DELETE", f"/admin/gateway/targets/{_segment(name)}", _nothing))

    # --- connectors: limits, circuits, tenant caps -----------------------------------------

    def connectors(self) -> list[ConnectorView]:
        return self.send(_Call("GET", "/admin/connectors", _model(list[ConnectorView])))

    def put_connector_limits(
        self, name: str, limits: ConnectorLimitsBody | Mapping[str, Any]
    ) -> ConnectorView:
        path = f"/admin/connectors/{_segment(name)}/limits"
        return self.send(_Call("PUT", path, _model(ConnectorView), _json_body(limits)))

    def tenant_caps(self, name: str) -> list[TenantCapView]:
        path = f"/admin/connectors/{_segment(name)}/tenants"
        return self.send(_Call("GET", path, _model(list[TenantCapView])))

    def put_tenant_cap(
        self, name: str, tenant_id: str, cap: TenantCapBody | Mapping[str, Any]
    ) -> TenantCapView:
        path = f"/admin/connectors/{_segment(name)}/tenants/{_segment(tenant_id)}/limits"
        return self.send(_Call("PUT", path, _model(TenantCapView), _json_body(cap)))

    def delete_tenant_cap(self, name: str, tenant_id: str) -> None:
        path = f"/admin/connectors/{_segment(name)}/tenants/{_segment(tenant_id)}/limits"
        self.send(_Call("DELETE", path, _nothing))

    def own_caps(self, tenant_id: str) -> list[TenantCapView]:
        path = f"/admin/tenants/{_segment(tenant_id)}/connector-limits"
        return self.send(_Call("GET", path, _model(list[TenantCapView])))

    def lower_own_cap(
        self, tenant_id: str, name: str, cap: TenantCapBody | Mapping[str, Any]
    ) -> TenantCapView:
        path = f"/admin/tenants/{_segment(tenant_id)}/connector-limits/{_segment(name)}"
        return self.send(_Call("PUT", path, _model(TenantCapView), _json_body(cap)))

    # --- outbox dead letters ---------------------------------------------------------------

    def dead_letters(
        self, *, tenant_id: str | None = None, destination: str | None = None, limit: int = 100
    ) -> DeadLetterListing:
        """Every tenant's (platform admin), or with ``tenant_id`` that tenant's own (its admin)."""
        if tenant_id is None:
            path = "/admin/outbox/dead-letters"
            params: dict[str, Any] = {"limit": limit}
            if destination is not None:
                params["destination"] = destination
        else:
            path, params = f"/admin/tenants/{_segment(tenant_id)}/outbox/dead-letters", {"limit": limit}
        return self.send(_Call("GET", path, _model(DeadLetterListing), params=params))

    def redeliver(
        self, request: RedeliverBody | Mapping[str, Any], *, tenant_id: str | None = None
    ) -> Redelivered:
        if tenant_id is None:
            path = "/admin/outbox/dead-letters/redeliver"
        else:
            path = f"/admin/tenants/{_segment(tenant_id)}/outbox/dead-letters/redeliver"
        return self.send(_Call("POST", path, _model(Redelivered), _json_body(request)))

    # --- connector credentials (the token's own tenant) ------------------------------------

    def credentials(self, connector: str | None = None) -> list[CredentialMetadata]:
        params = {"connector": connector} if connector else None
        return self.send(_Call("GET", "/admin/credentials", _credentials, params=params))

    def put_credential(
        self,
        connector: str,
        credential: CredentialInput | Mapping[str, Any],
        *,
        account_id: str | None = None,
    ) -> Upserted[CredentialMetadata]:
        path = f"/admin/credentials/{_segment(connector)}"
        body = _json_body(credential)
        params = {"account_id": account_id} if account_id else None
        return self.send(_Call("PUT", path, _upserted(CredentialMetadata), body, params))

    def rotate_credential(
        self,
        connector: str,
        rotation: SecretRotation | Mapping[str, Any],
        *,
        account_id: str | None = None,
    ) -> CredentialMetadata:
        path = f"/admin/credentials/{_segment(connector)}/rotate"
        params = {"account_id": account_id} if account_id else None
        return self.send(_Call("POST", path, _model(CredentialMetadata), _json_body(rotation), params))

    def delete_credential(self, connector: str, *, account_id: str | None = None) -> None:
        params = {"account_id": account_id} if account_id else None
        self.send(_Call("DELETE", f"/admin/credentials/{_segment(connector)}", _nothing, params=params))

    # --- health ----------------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 (database reachable, workers started)."""
        return self.http.get(self.base_url + "/readyz").status_code == 200


class AsyncFulfillClient(_Base):
    """The routes a load generator drives concurrently, on an ``httpx.AsyncClient`` (the same
    requests and models as :class:`FulfillClient`)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_SECONDS,
        limits: httpx.Limits | None = None,
    ) -> None:
        super().__init__(base_url, token)
        # Unbounded unless told: a load generator's client drives many requests at once.
        unbounded = default_limits(max_connections=None, max_keepalive_connections=None)
        self.http = httpx.AsyncClient(timeout=timeout, limits=limits or unbounded)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def send(self, call: _Call[T]) -> T:
        return self._read(call, await self.http.send(self._request(call)))

    async def create_intent(self, body: CreateIntent | Mapping[str, Any]) -> Upserted[CreatedIntent]:
        return await self.send(_create_intent(body))

    async def approve(self, intent_id: str, *, parameters: dict[str, Any] | None = None) -> ApprovalChange:
        body = {"parameters": parameters} if parameters is not None else None
        return await self.send(_intent_change(intent_id, "approve", body))

    async def get_intent(self, intent_id: str) -> CreatedIntent:
        return await self.send(_get_intent(intent_id))

    async def send_event(self, event: Mapping[str, Any]) -> EventAccepted:
        return await self.send(_send_event(event))

    async def execution_status(self, intent_id: str, account_id: str | None = None) -> ExecutionStatusView:
        return await self.send(_execution_status(intent_id, account_id))

    async def list_executions(
        self,
        account_id: str,
        *,
        limit: int | str | None = None,
        status: str | None = None,
        next_token: str | None = None,
    ) -> ExecutionPage:
        return await self.send(_list_executions(account_id, limit, status, next_token))
