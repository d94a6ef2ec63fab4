"""A local Salesforce-compatible server: the REST endpoints fulfill uses, OAuth, and faults.

It answers like Salesforce does, with its documented shapes and codes, so that the connector is
tested against real HTTP rather than against mocks of its own code:

* OAuth 2.0 at ``POST /services/oauth2/token``: ``client_credentials``; the JWT bearer grant
  (``urn:ietf:params:oauth:grant-type:jwt-bearer``; the RS256 assertion is verified with the
  configured public key: ``iss`` = client id, ``sub`` = username, ``aud``, ``exp`` within 5 min);
  ``refresh_token`` with rotation (a new refresh token on every use; a spent one revokes the
  whole family and its sessions, as Salesforce's refresh token rotation does). Success:
  ``{access_token, instance_url, id, token_type, issued_at, signature, scope}``; failure: 400
  ``{error, error_description}``.
* sObjects under ``/services/data/vXX.X/``: create (``POST sobjects/{type}/`` → 201 ``{id,
  success, errors}``), read (``GET sobjects/{type}/{id}?fields=``), update (``PATCH`` → 204),
  delete (``DELETE`` → 204), and a SOQL subset (``GET query?q=SELECT … FROM … WHERE f = 'v' [AND
  …] [ORDER BY f] [LIMIT n]`` → ``{totalSize, done, records}``), for Task, Account and
  Opportunity. Errors are ``[{message, errorCode, fields}]``: 401 ``INVALID_SESSION_ID``, 400
  ``REQUIRED_FIELD_MISSING``, ``INVALID_FIELD``, ``INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST``,
  ``JSON_PARSER_ERROR``, ``MALFORMED_QUERY``, 404 ``NOT_FOUND``, ``ENTITY_IS_DELETED``.
* Faults, injected per request (``POST /__dev/faults`` or :meth:`DevSalesforce.add_fault`):
  ``latency`` (before the request is handled, or after it committed with ``after_commit``),
  ``error`` (any status; 5xx by default, with Salesforce's bodies), ``rate_limit`` (403
  ``REQUEST_LIMIT_EXCEEDED``), ``invalid_session`` (401 without handling), ``expire_session``
  (every issued access token dies now), ``drop_before_commit`` and ``drop_after_commit`` (the
  connection is closed before the answer's body; in the second case the write did happen),
  ``endless_answer`` (the request is handled, then its status comes with a body that does not end:
  JSON whitespace, up to 256 MiB), ``trickle_answer`` (the request is handled, then its answer
  is sent a byte every ``seconds``, after 1,024 bytes of JSON whitespace) and
  ``compressed_answer`` (the request is handled, then its answer comes gzip-encoded whatever the
  client asked for, 256 MiB of JSON whitespace before it, about 256 KiB on the wire).
  ``answer_bytes_sent`` records, for each answer of these three, how much of it was sent before
  the client went away; ``accept_encodings`` the ``Accept-Encoding`` of every request.

``fulfill dev salesforce --port N`` runs it; tests start it in a thread
(:class:`DevSalesforceServer`). It keeps everything in memory and is not a security boundary.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import itertools
import json
import logging
import re
import secrets
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MARKER_FIELD = "Fulfill_Idempotency_Key__c"
API_VERSIONS = ("58.0", "59.0", "60.0", "61.0", "62.0", "63.0", "64.0")
ORG_ID = "00D5g000004AbCdEAK"
USER_ID = "0055g00000AbCdEAAR"
STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)

# type per field: string, textarea, picklist, date, number, reference
_SCHEMAS: dict[str, dict[str, Any]] = {
    "Task": {
        "prefix": "00T",
        "fields": {
            "Subject": "string",
            "Description": "textarea",
            "Priority": "picklist",
            "Status": "picklist",
            "ActivityDate": "date",
            "WhatId": "reference",
            "WhoId": "reference",
            "OwnerId": "reference",
        },
        "required": (),
        "picklists": {
            "Priority": ("High", "Normal", "Low"),
            "Status": ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"),
        },
        "defaults": {"Priority": "Normal", "Status": "Not Started"},
    },
    "Account": {
        "prefix": "001",
        "fields": {
            "Name": "string",
            "AccountSource": "string",
            "AnnualRevenue": "number",
            "BillingCity": "string",
            "BillingCountry": "string",
            "Description": "textarea",
            "Industry": "string",
            "NumberOfEmployees": "number",
            "Phone": "string",
            "Rating": "picklist",
            "Type": "string",
            "Website": "string",
            "OwnerId": "reference",
        },
        "required": ("Name",),
        "picklists": {"Rating": ("Hot", "Warm", "Cold")},
        "defaults": {},
    },
    "Opportunity": {
        "prefix": "006",
        "fields": {
            "Name": "string",
            "StageName": "picklist",
            "CloseDate": "date",
            "Amount": "number",
            "AccountId": "reference",
            "Description": "textarea",
            "LeadSource": "string",
            "NextStep": "string",
            "Probability": "number",
            "Type": "string",
            "OwnerId": "reference",
        },
        "required": ("Name", "StageName", "CloseDate"),
        "picklists": {"StageName": STAGES},
        "defaults": {},
    },
}
_SYSTEM_FIELDS = ("Id", "CreatedDate", "LastModifiedDate", "IsDeleted")
_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

FAULT_KINDS = (
    "latency",
    "error",
    "rate_limit",
    "invalid_session",
    "expire_session",
    "drop_before_commit",
    "drop_after_commit",
    "endless_answer",
    "trickle_answer",
    "compressed_answer",
)

_ENDLESS_ANSWER_BYTES = 256 * 1024 * 1024
_TRICKLE_PADDING = b" " * 1024


@dataclass
class Fault:
    """What the server does to the next ``times`` requests that match ``method`` and ``path``
    (a substring of the request path; None matches any)."""

    kind: str
    method: str | None = None
    path: str | None = None
    times: int = 1
    seconds: float = 0.0
    after_commit: bool = False
    status: int = 503
    error_code: str | None = None
    message: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path is None or self.path in path
        )


@dataclass
class DevSalesforceConfig:
    client_id: str = "fulfill-dev-client"
    client_secret: str = "fulfill-dev-secret"  # noqa: S105 - the local server's own made-up secret
    username: str = "integration@fulfill.dev"
    jwt_public_key_pem: str | None = None
    refresh_tokens: list[str] = field(default_factory=list)
    rotate_refresh_tokens: bool = True
    session_seconds: float | None = None  # None: sessions never expire by themselves
    marker_field: str = MARKER_FIELD
    unique_marker: bool = False  # the marker as a unique External ID (DUPLICATE_VALUE on reuse)


@dataclass
class _Session:
    token: str
    expires_at: float | None
    family: str | None = None


class DevSalesforce:
    """The server's state and its ASGI app."""

    def __init__(self, config: DevSalesforceConfig | None = None) -> None:
        self.config = config or DevSalesforceConfig()
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in _SCHEMAS}
        self._deleted: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in _SCHEMAS}
        self._sessions: dict[str, _Session] = {}
        # refresh token -> family; spent tokens remember their family (reuse revokes it)
        self._refresh_tokens: dict[str, str] = {}
        self._spent_refresh_tokens: dict[str, str] = {}
        self._faults: list[Fault] = []
        self._counter = itertools.count(1)
        self.token_requests: dict[str, int] = {}
        self.api_requests = 0
        self.answer_bytes_sent: list[int] = []  # per endless or trickled answer, bytes sent
        self.client_ports: set[int] = set()  # the clients' ports seen: one per connection
        self.accept_encodings: list[str] = []  # each request's Accept-Encoding ("" without one)
        self.issued: list[str] = []  # every access and refresh token ever issued
        for token in self.config.refresh_tokens:
            self.accept_refresh_token(token)
        self.app = Starlette(
            routes=[
                Route("/services/oauth2/token", self._token, methods=["POST"]),
                Route("/services/data", self._versions, methods=["GET"]),
                Route("/services/data/", self._versions, methods=["GET"]),
                Route("/services/data/{version}/sobjects/{sobject}", self._create, methods=["POST"]),
                Route("/services/data/{version}/sobjects/{sobject}/", self._create, methods=["POST"]),
                Route(
                    "/services/data/{version}/sobjects/{sobject}/{record_id}",
                    self._record,
                    methods=["GET", "PATCH", "DELETE"],
                ),
                Route("/services/data/{version}/query", self._query, methods=["GET"]),
                Route("/services/data/{version}/query/", self._query, methods=["GET"]),
                Route("/__dev/faults", self._dev_faults, methods=["POST", "DELETE"]),
                Route("/__dev/expire-sessions", self._dev_expire, methods=["POST"]),
                Route("/__dev/records/{sobject}", self._dev_records, methods=["GET"]),
                Route("/__dev/stats", self._dev_stats, methods=["GET"]),
            ]
        )

    # --- control (tests and /__dev) -------------------------------------------------------------

    def add_fault(self, *faults: Fault) -> None:
        for fault in faults:
            if fault.kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {fault.kind!r} (one of {', '.join(FAULT_KINDS)})")
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def expire_sessions(self) -> None:
        """Every access token issued so far stops working (as a session timeout would)."""
        with self._lock:
            self._sessions.clear()

    def issue_refresh_token(self) -> str:
        """A new refresh token (as an authorization-code flow would have given the client)."""
        token = "5Aep" + secrets.token_urlsafe(40)
        self.accept_refresh_token(token)
        self.issued.append(token)
        return token

    def accept_refresh_token(self, token: str) -> None:
        with self._lock:
            self._refresh_tokens.setdefault(token, secrets.token_hex(8))

    def records(self, sobject: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(record) for record in self._records[sobject].values()]

    def record(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._records[sobject].get(record_id)
            return dict(found) if found else None

    def access_tokens(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    def valid_refresh_tokens(self) -> list[str]:
        with self._lock:
            return list(self._refresh_tokens)

    def insert(self, sobject: str, fields: dict[str, Any]) -> str:
        """Create a record directly (seeding), without validation."""
        with self._lock:
            return self._insert(sobject, fields)

    def seed(self) -> dict[str, str]:
        """An Account and an Opportunity to update in demos."""
        account = self.insert("Account", {"Name": "Acme Corporation", "Industry": "Manufacturing"})
        opportunity = self.insert(
            "Opportunity",
            {
                "Name": "Acme renewal",
                "StageName": "Prospecting",
                "CloseDate": "2030-12-31",
                "Amount": 50000.0,
                "AccountId": account,
            },
        )
        return {"account_id": account, "opportunity_id": opportunity}

    # --- the fault frame ---------------------------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    async def _frame(self, request: Request, handle: Callable[[], Awaitable[Response]]) -> Response:
        with self._lock:
            if request.client is not None:
                self.client_ports.add(request.client.port)
            self.accept_encodings.append(request.headers.get("accept-encoding", ""))
        fault = self._take_fault(request.method, request.url.path)
        if fault is not None and not fault.after_commit:
            if fault.kind == "latency":
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "error":
                return _sf_error(fault.status, *_default_error(fault))
            elif fault.kind == "rate_limit":
                return _sf_error(
                    403, "REQUEST_LIMIT_EXCEEDED", fault.message or "TotalRequests Limit exceeded."
                )
            elif fault.kind == "invalid_session":
                return _sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
            elif fault.kind == "expire_session":
                self.expire_sessions()
            elif fault.kind == "drop_before_commit":
                return DropConnection()
        response = await handle()
        if fault is not None and fault.kind == "drop_after_commit":
            return DropConnection()
        if fault is not None and fault.kind == "latency" and fault.after_commit:
            await asyncio.sleep(fault.seconds)
        if fault is not None and fault.kind in ("endless_answer", "trickle_answer", "compressed_answer"):
            encoding: dict[str, str] = {}
            if fault.kind == "endless_answer":
                pieces = _endless()
            elif fault.kind == "trickle_answer":
                pieces = _trickled(response.body, fault.seconds)
            else:
                pieces, encoding = _gzip_bomb(response.body), {"Content-Encoding": "gzip"}
            return StreamingResponse(
                self._counted(request, pieces),
                status_code=response.status_code,
                media_type="application/json",
                headers=encoding,
            )
        return response

    async def _counted(self, request: Request, pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        # The server goes on accepting pieces for a client that has gone; stop there, so that what
        # is counted is what the client was offered.
        sent = 0
        try:
            async for piece in pieces:
                if await request.is_disconnected():
                    break
                yield piece
                sent += len(piece)
        finally:
            with self._lock:
                self.answer_bytes_sent.append(sent)

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token:
            return False
        with self._lock:
            session = self._sessions.get(token.strip())
            if session is None:
                return False
            if session.expires_at is not None and session.expires_at <= time.time():
                del self._sessions[token.strip()]
                return False
            self.api_requests += 1
        return True

    # --- OAuth ---------------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        async def handle() -> Response:
            form = await request.form()
            values = {key: str(value) for key, value in form.items()}
            grant = values.get("grant_type", "")
            with self._lock:
                self.token_requests[grant] = self.token_requests.get(grant, 0) + 1
            base = str(request.base_url).rstrip("/")
            if grant == "client_credentials":
                return self._client_credentials(values, base)
            if grant == JWT_BEARER_GRANT:
                return self._jwt_bearer(values, base)
            if grant == "refresh_token":
                return self._refresh(values, base)
            return _oauth_error("unsupported_grant_type", "grant type not supported")

        return await self._frame(request, handle)

    def _client_credentials(self, values: dict[str, str], base: str) -> Response:
        if values.get("client_id") != self.config.client_id:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if not hmac.compare_digest(values.get("client_secret", ""), self.config.client_secret):
            return _oauth_error("invalid_client", "invalid client credentials")
        return self._grant(base)

    def _jwt_bearer(self, values: dict[str, str], base: str) -> Response:
        if not self.config.jwt_public_key_pem:
            return _oauth_error("invalid_grant", "invalid assertion")
        audiences = [base, "https://login.salesforce.com", "https://test.salesforce.com"]
        try:
            claims = jwt.decode(
                values.get("assertion", ""),
                self.config.jwt_public_key_pem,
                algorithms=["RS256"],
                audience=audiences,
                options={"require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.InvalidAudienceError:
            return _oauth_error("invalid_grant", "audience is invalid")
        except jwt.ExpiredSignatureError:
            return _oauth_error("invalid_grant", "expired authorization code")
        except jwt.PyJWTError:
            return _oauth_error("invalid_grant", "invalid assertion")
        if claims.get("iss") != self.config.client_id:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if claims.get("sub") != self.config.username:
            return _oauth_error("invalid_grant", "user hasn't approved this consumer")
        if float(claims["exp"]) > time.time() + 300:
            return _oauth_error("invalid_grant", "invalid assertion")
        return self._grant(base)

    def _refresh(self, values: dict[str, str], base: str) -> Response:
        if values.get("client_id") != self.config.client_id:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if "client_secret" in values and not hmac.compare_digest(
            values["client_secret"], self.config.client_secret
        ):
            return _oauth_error("invalid_client", "invalid client credentials")
        token = values.get("refresh_token", "")
        with self._lock:
            family = self._refresh_tokens.get(token)
            if family is None:
                spent_family = self._spent_refresh_tokens.get(token)
                if spent_family is not None:  # reuse of a rotated-out token: revoke the family
                    for live, live_family in list(self._refresh_tokens.items()):
                        if live_family == spent_family:
                            del self._refresh_tokens[live]
                    for access, session in list(self._sessions.items()):
                        if session.family == spent_family:
                            del self._sessions[access]
                return _oauth_error("invalid_grant", "expired access/refresh token")
            rotated = None
            if self.config.rotate_refresh_tokens:
                del self._refresh_tokens[token]
                self._spent_refresh_tokens[token] = family
                rotated = "5Aep" + secrets.token_urlsafe(40)
                self._refresh_tokens[rotated] = family
        return self._grant(base, family=family, refresh_token=rotated)

    def _grant(self, base: str, *, family: str | None = None, refresh_token: str | None = None) -> Response:
        access = f"{ORG_ID[:15]}!AQ" + secrets.token_urlsafe(48)
        lifetime = self.config.session_seconds
        with self._lock:
            self._sessions[access] = _Session(
                access, time.time() + lifetime if lifetime is not None else None, family
            )
            self.issued.extend([access, refresh_token] if refresh_token else [access])
        issued_at = str(int(time.time() * 1000))
        identity = f"{base}/id/{ORG_ID}/{USER_ID}"
        signature = base64.b64encode(
            hmac.new(
                self.config.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
            ).digest()
        ).decode()
        body: dict[str, Any] = {
            "access_token": access,
            "signature": signature,
            "scope": "api refresh_token" if family else "api",
            "instance_url": base,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }
        if refresh_token:
            body["refresh_token"] = refresh_token
        return JSONResponse(body)

    # --- data API -------------------------------------------------------------------------------

    async def _versions(self, request: Request) -> Response:
        return JSONResponse(
            [
                {"label": f"API {version}", "url": f"/services/data/v{version}", "version": version}
                for version in API_VERSIONS
            ]
        )

    def _api_checks(self, request: Request) -> Response | None:
        version = request.path_params.get("version", "")
        if not re.fullmatch(r"v\d{2,3}\.0", version) or version[1:] not in API_VERSIONS:
            return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        if not self._authorised(request):
            return _sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        sobject = request.path_params.get("sobject")
        if sobject is not None and sobject not in _SCHEMAS:
            return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        return None

    async def _create(self, request: Request) -> Response:
        async def handle() -> Response:
            refused = self._api_checks(request)
            if refused is not None:
                return refused
            sobject = request.path_params["sobject"]
            body = await _json_body(request)
            if not isinstance(body, dict):
                return _sf_error(400, "JSON_PARSER_ERROR", "The request body is not a JSON object")
            with self._lock:
                problem = self._validate(sobject, body, creating=True)
                if problem is not None:
                    return problem
                record_id = self._insert(sobject, body)
            return JSONResponse({"id": record_id, "success": True, "errors": []}, status_code=201)

        return await self._frame(request, handle)

    async def _record(self, request: Request) -> Response:
        async def handle() -> Response:
            refused = self._api_checks(request)
            if refused is not None:
                return refused
            sobject = request.path_params["sobject"]
            record_id = request.path_params["record_id"]
            with self._lock:
                record = self._find(sobject, record_id)
                gone = self._find_deleted(sobject, record_id)
            if request.method == "GET":
                if record is None:
                    return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")
                wanted = [f.strip() for f in request.query_params.get("fields", "").split(",") if f.strip()]
                unknown = [name for name in wanted if not self._known_field(sobject, name)]
                if unknown:
                    return _sf_error(
                        400, "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type {sobject}"
                    )
                return JSONResponse(
                    self._render(request.path_params["version"], sobject, record, wanted or None)
                )
            if record is None:
                if gone is not None:
                    return _sf_error(404, "ENTITY_IS_DELETED", "entity is deleted")
                return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")
            if request.method == "DELETE":
                with self._lock:
                    removed = self._records[sobject].pop(record["Id"])
                    self._deleted[sobject][record["Id"]] = {**removed, "IsDeleted": True}
                return Response(status_code=204)
            body = await _json_body(request)
            if not isinstance(body, dict):
                return _sf_error(400, "JSON_PARSER_ERROR", "The request body is not a JSON object")
            with self._lock:
                problem = self._validate(sobject, body, creating=False)
                if problem is not None:
                    return problem
                current = self._records[sobject].get(record["Id"])
                if current is None:  # deleted meanwhile
                    return _sf_error(404, "ENTITY_IS_DELETED", "entity is deleted")
                current.update(body)
                current["LastModifiedDate"] = _now()
            return Response(status_code=204)

        return await self._frame(request, handle)

    async def _query(self, request: Request) -> Response:
        async def handle() -> Response:
            refused = self._api_checks(request)
            if refused is not None:
                return refused
            try:
                query = parse_soql(request.query_params.get("q", ""))
            except SoqlError as exc:
                return _sf_error(400, "MALFORMED_QUERY", str(exc))
            if query.sobject not in _SCHEMAS:
                return _sf_error(400, "INVALID_TYPE", f"sObject type '{query.sobject}' is not supported.")
            referenced = [*query.fields, *(name for name, _, _ in query.conditions)]
            if query.order_by:
                referenced.append(query.order_by[0])
            for name in referenced:
                if not self._known_field(query.sobject, name):
                    return _sf_error(
                        400, "INVALID_FIELD", f"No such column '{name}' on entity '{query.sobject}'."
                    )
            with self._lock:
                rows = [dict(r) for r in self._records[query.sobject].values()]
            matched = [row for row in rows if query.matches(row)]
            if query.order_by:
                name, descending = query.order_by
                matched.sort(key=lambda row: (row.get(name) is None, str(row.get(name))), reverse=descending)
            if query.limit is not None:
                matched = matched[: query.limit]
            return JSONResponse(
                {
                    "totalSize": len(matched),
                    "done": True,
                    "records": [
                        self._render(request.path_params["version"], query.sobject, row, query.fields)
                        for row in matched
                    ],
                }
            )

        return await self._frame(request, handle)

    # --- records --------------------------------------------------------------------------------

    def _known_field(self, sobject: str, name: str) -> bool:
        schema = _SCHEMAS[sobject]
        return name in schema["fields"] or name in _SYSTEM_FIELDS or name == self.config.marker_field

    def _validate(self, sobject: str, body: dict[str, Any], *, creating: bool) -> Response | None:
        schema = _SCHEMAS[sobject]
        for name in body:
            if name in _SYSTEM_FIELDS:
                return _sf_error(
                    400,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {name}. Please check the security settings of this "
                    "field and verify that it is read/write for your profile or permission set.",
                    [name],
                )
            if not self._known_field(sobject, name):
                return _sf_error(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}"
                )
        for name, value in body.items():
            kind = "string" if name == self.config.marker_field else schema["fields"][name]
            if value is None:
                continue
            if kind in ("string", "textarea", "picklist", "reference", "date") and not isinstance(value, str):
                return _parse_error(kind, value)
            if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
                return _parse_error("double", value)
            if kind == "date" and not _valid_date(value):
                return _parse_error("date", value)
            if kind == "picklist" and value not in schema["picklists"][name]:
                return _sf_error(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{name}: bad value for restricted picklist field: {value}",
                    [name],
                )
            if kind == "reference" and name != "OwnerId" and name != "WhoId":
                if not _ID.match(value):
                    return _sf_error(
                        400, "MALFORMED_ID", f"{name}: id value of incorrect type: {value}", [name]
                    )
                if not any(self._find(other, value) for other in _SCHEMAS):
                    return _sf_error(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [name])
        if creating:
            missing = [name for name in schema["required"] if body.get(name) in (None, "")]
            if missing:
                return _sf_error(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{', '.join(missing)}]",
                    missing,
                )
        marker = body.get(self.config.marker_field)
        if self.config.unique_marker and marker:
            for existing in self._records[sobject].values():
                if existing.get(self.config.marker_field) == marker:
                    return _sf_error(
                        400,
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {self.config.marker_field} duplicates value on record "
                        f"with id: {existing['Id']}",
                        [self.config.marker_field],
                    )
        return None

    def _insert(self, sobject: str, fields: dict[str, Any]) -> str:
        schema = _SCHEMAS[sobject]
        record_id = _salesforce_id(schema["prefix"], next(self._counter))
        now = _now()
        self._records[sobject][record_id] = {
            **schema["defaults"],
            **fields,
            "Id": record_id,
            "CreatedDate": now,
            "LastModifiedDate": now,
            "IsDeleted": False,
        }
        return record_id

    def _find(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        records = self._records[sobject]
        found = records.get(record_id) or next(
            (r for i, r in records.items() if len(record_id) == 15 and i[:15] == record_id), None
        )
        return dict(found) if found else None

    def _find_deleted(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        deleted = self._deleted[sobject]
        return deleted.get(record_id) or next(
            (r for i, r in deleted.items() if len(record_id) == 15 and i[:15] == record_id), None
        )

    def _render(
        self, version: str, sobject: str, record: dict[str, Any], fields: list[str] | None
    ) -> dict[str, Any]:
        names = (
            fields
            if fields is not None
            else [*_SYSTEM_FIELDS, *_SCHEMAS[sobject]["fields"], self.config.marker_field]
        )
        rendered: dict[str, Any] = {
            "attributes": {
                "type": sobject,
                "url": f"/services/data/{version}/sobjects/{sobject}/{record['Id']}",
            }
        }
        for name in names:
            rendered[name] = record.get(name)
        return rendered

    # --- /__dev ---------------------------------------------------------------------------------

    async def _dev_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.clear_faults()
            return Response(status_code=204)
        body = await _json_body(request)
        items = body if isinstance(body, list) else [body]
        try:
            faults = [Fault(**item) for item in items if isinstance(item, dict)]
            self.add_fault(*faults)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"added": len(faults)}, status_code=201)

    async def _dev_expire(self, request: Request) -> Response:
        self.expire_sessions()
        return Response(status_code=204)

    async def _dev_records(self, request: Request) -> Response:
        sobject = request.path_params["sobject"]
        if sobject not in _SCHEMAS:
            return JSONResponse({"error": "unknown sObject"}, status_code=404)
        return JSONResponse({"records": self.records(sobject)})

    async def _dev_stats(self, request: Request) -> Response:
        with self._lock:
            return JSONResponse(
                {
                    "token_requests": dict(self.token_requests),
                    "api_requests": self.api_requests,
                    "records": {name: len(records) for name, records in self._records.items()},
                    "faults_pending": len(self._faults),
                }
            )


class DropConnection(Response):
    """Starts an answer, then closes the connection before its body: the client gets an error
    and cannot know whether its request took effect. (The status line says 200 whatever really
    happened: a 204 has no body, so cutting it would not be noticed.)"""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        # Returning here without the body makes the server close the connection.


class _QuietCut(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


# --- SOQL (the subset the connector uses) -------------------------------------------------------


class SoqlError(ValueError):
    pass


@dataclass
class SoqlQuery:
    fields: list[str]
    sobject: str
    conditions: list[tuple[str, str, Any]]
    order_by: tuple[str, bool] | None
    limit: int | None

    def matches(self, row: dict[str, Any]) -> bool:
        for name, operator, value in self.conditions:
            equal = row.get(name) == value
            if (operator == "=") != equal:
                return False
        return True


_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')|(?P<op>!=|=|,)|(?P<number>-?\d+(?:\.\d+)?)|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise SoqlError(f"unexpected token: '{text[position : position + 10].strip()}'")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def parse_soql(text: str) -> SoqlQuery:
    tokens = _tokens(text)
    position = 0

    def peek() -> tuple[str, str]:
        return tokens[position] if position < len(tokens) else ("end", "")

    def take(kind: str | None = None, word: str | None = None) -> str:
        nonlocal position
        token_kind, value = peek()
        if (kind and token_kind != kind) or (word and value.upper() != word):
            raise SoqlError(f"unexpected token: '{value or 'end of query'}'")
        position += 1
        return value

    take("word", "SELECT")
    fields = [take("word")]
    while peek() == ("op", ","):
        take("op")
        fields.append(take("word"))
    take("word", "FROM")
    sobject = take("word")
    conditions: list[tuple[str, str, Any]] = []
    order_by: tuple[str, bool] | None = None
    limit: int | None = None
    if peek()[1].upper() == "WHERE":
        take("word")
        while True:
            name = take("word")
            operator = take("op")
            if operator not in ("=", "!="):
                raise SoqlError(f"unexpected token: '{operator}'")
            conditions.append(
                (name, operator, _literal(*tokens[position]) if position < len(tokens) else None)
            )
            take()
            if peek()[1].upper() != "AND":
                break
            take("word")
    if peek()[1].upper() == "ORDER":
        take("word")
        take("word", "BY")
        name = take("word")
        descending = False
        if peek()[1].upper() in ("ASC", "DESC"):
            descending = take("word").upper() == "DESC"
        order_by = (name, descending)
    if peek()[1].upper() == "LIMIT":
        take("word")
        limit = int(take("number"))
    if position != len(tokens):
        raise SoqlError(f"unexpected token: '{peek()[1]}'")
    return SoqlQuery(fields, sobject, conditions, order_by, limit)


def _literal(kind: str, value: str) -> Any:
    if kind == "string":
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    if kind == "number":
        return float(value) if "." in value else int(value)
    if kind == "word" and value.lower() in ("null", "true", "false"):
        return {"null": None, "true": True, "false": False}[value.lower()]
    raise SoqlError(f"unexpected token: '{value}'")


# --- helpers -------------------------------------------------------------------------------------


def _sf_error(status: int, code: str, message: str, fields: list[str] | None = None) -> JSONResponse:
    error: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        error["fields"] = fields
    return JSONResponse([error], status_code=status)


def _default_error(fault: Fault) -> tuple[str, str]:
    if fault.error_code:
        return fault.error_code, fault.message or fault.error_code
    if fault.status == 503:
        return "SERVER_UNAVAILABLE", fault.message or "Server temporarily unavailable"
    if fault.status >= 500:
        return "UNKNOWN_EXCEPTION", fault.message or (
            "An unexpected error occurred. Please include this ErrorId if you contact support: "
            "1234567890-12345 (-1234567890)"
        )
    return "BAD_REQUEST", fault.message or "bad request"


def _oauth_error(error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=400)


def _parse_error(kind: str, value: Any) -> JSONResponse:
    shown = json.dumps(value)[:40]
    return _sf_error(
        400,
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from VALUE_STRING value {shown} or request may be "
        "missing a required field at [line:1, column:1]",
    )


def _valid_date(value: str) -> bool:
    if not _DATE.match(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        return None


def _now() -> str:
    moment = dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _salesforce_id(prefix: str, number: int) -> str:
    """An 18-character id: key prefix, a fake pod/reserved part, a counter, and the case-safe
    suffix Salesforce computes from the case of the first 15 characters."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    digits = ""
    while number:
        number, remainder = divmod(number, 62)
        digits = alphabet[remainder] + digits
    base = (prefix + "5g00000" + digits.rjust(5, "0"))[:15]
    suffix = ""
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(base[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix += _ID_SUFFIX[bits]
    return base + suffix


async def _endless() -> AsyncIterator[bytes]:
    chunk = b" " * 65536
    for _ in range(_ENDLESS_ANSWER_BYTES // len(chunk)):
        yield chunk


async def _gzip_bomb(body: bytes | memoryview) -> AsyncIterator[bytes]:
    """256 MiB of JSON whitespace, then ``body``, gzip-compressed as they are sent, in pieces of
    64 KiB on the wire that each decode to about 64 MiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    spaces = b" " * (1024 * 1024)
    pending = bytearray()
    for _ in range(_ENDLESS_ANSWER_BYTES // len(spaces)):
        pending += compressor.compress(spaces)
        if len(pending) >= 65536:
            yield bytes(pending)
            pending.clear()
    yield bytes(pending) + compressor.compress(bytes(body)) + compressor.flush()


async def _trickled(body: bytes | memoryview, pause: float) -> AsyncIterator[bytes]:
    for byte in _TRICKLE_PADDING + bytes(body):
        await asyncio.sleep(pause)
        yield bytes([byte])


class DevSalesforceServer:
    """The server on 127.0.0.1 in a thread of this process (tests), or in the foreground (CLI)."""

    def __init__(self, dev: DevSalesforce | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        from fulfill.http_server import QuickStopServer, bind_socket

        self.dev = dev or DevSalesforce()
        self._socket = bind_socket(host, port)
        self.host = host
        self.port = int(self._socket.getsockname()[1])
        error_log = logging.getLogger("uvicorn.error")
        if not any(isinstance(existing, _QuietCut) for existing in error_log.filters):
            error_log.addFilter(_QuietCut())
        config = uvicorn.Config(self.dev.app, log_level="warning", access_log=False, lifespan="off")
        self.server = QuickStopServer(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 20.0) -> DevSalesforceServer:
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, name="dev-salesforce", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local Salesforce server did not start")
            time.sleep(0.02)
        return self

    def run(self) -> None:
        """In the foreground until interrupted."""
        self.server.run(sockets=[self._socket])

    def stop(self) -> None:
        self.server.request_exit()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> DevSalesforceServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
