"""The Salesforce connector: CRM writes over the REST API, each with its compensation.

Tools (``crm.*``):

* ``crm.create_task``: a Task (``Subject``, ``Description``, ``Priority``, ``ActivityDate``,
  ``WhatId``); undone by ``crm.delete_task``;
* ``crm.create_opportunity``: an Opportunity (``Name``, ``StageName``, ``CloseDate``, ``Amount``,
  ``AccountId``, …); undone by ``crm.delete_opportunity``;
* ``crm.update_field``: allow-listed fields of one Account or Opportunity (the object type comes
  from the record id's key prefix, ``001`` or ``006``). The values before the write are read
  first and recorded; ``crm.restore_field`` writes them back (unless someone changed the field
  since, which it reports instead of overwriting).

**No duplicate writes.** Every write is reserve → call → commit on the execution idempotency key
(``store/external_writes.py``). Created records also carry the key in a custom field
(``FULFILL_SALESFORCE_MARKER_FIELD``, default ``Fulfill_Idempotency_Key__c``): when a write's
result is unknown (a timeout, a connection dropped after the request was sent, a 5xx), the next
call with the key looks the record up with SOQL before it writes again, and an update compares
the field's current value with the one it meant to write.

**Errors** come from Salesforce's response bodies (``[{"message", "errorCode", "fields"}]``): 401
→ the access token is refreshed once and the request repeated, then ``AUTH``; 403
``REQUEST_LIMIT_EXCEEDED`` → ``RATE_LIMIT``; any other 403 → ``AUTH``; 400/404 → ``VALIDATION``
naming the fields (``UNABLE_TO_LOCK_ROW`` → ``DOWNSTREAM``: another transaction holds the row);
5xx, timeouts and lost connections → ``DOWNSTREAM``/``TIMEOUT`` (retried by the engine). Every
request has a timeout (``FULFILL_SALESFORCE_TIMEOUT_SECONDS``).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import httpx
from mcp.types import CallToolResult
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from fulfill.config import Settings
from fulfill.connectors.base import ConnectorTool, ToolSuccess, tool_failure, tool_success
from fulfill.connectors.egress import pinned_sync_client
from fulfill.credentials.crypto import SecretBox
from fulfill.credentials.oauth import AccessToken, ConnectorFailure, TokenProvider, egress_failure
from fulfill.credentials.vault import CredentialVault
from fulfill.domain.egress import EgressRefused
from fulfill.domain.errors import ErrorClass
from fulfill.domain.models import ExternalObjectRef
from fulfill.domain.ports import Clock
from fulfill.domain.records import ExternalWrite
from fulfill.store import external_writes
from fulfill.store.db import Database, is_transient_store_error

log = logging.getLogger(__name__)

ToolAnswer = Annotated[CallToolResult, ToolSuccess]
FieldValue = str | int | float | bool | None

CONNECTOR = "salesforce"
# Key prefixes of the record ids crm.update_field accepts, and the fields it may change.
SOBJECT_PREFIXES = {"001": "Account", "006": "Opportunity"}
UPDATABLE_FIELDS: dict[str, frozenset[str]] = {
    "Account": frozenset(
        {
            "AccountSource",
            "AnnualRevenue",
            "BillingCity",
            "BillingCountry",
            "Description",
            "Industry",
            "Name",
            "NumberOfEmployees",
            "Phone",
            "Rating",
            "Type",
            "Website",
        }
    ),
    "Opportunity": frozenset(
        {
            "Amount",
            "CloseDate",
            "Description",
            "LeadSource",
            "Name",
            "NextStep",
            "Probability",
            "StageName",
            "Type",
        }
    ),
}
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SAFE_TEXT = re.compile(r"[\x00-\x1f\x7f]")
_BUSY_POLL_SECONDS = 0.1
_STORE_UNAVAILABLE = "the connector's store is unavailable, try again"


class SalesforceConnector:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: Settings,
        *,
        vault: CredentialVault | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._version = settings.salesforce_api_version
        self._marker = settings.salesforce_marker_field
        self._timeout = settings.salesforce_timeout_seconds
        # A reservation's lease outlives everything one call may do (token, lookup, read, write).
        self._lease_seconds = settings.salesforce_timeout_seconds * 4 + 5.0
        self._http = http or pinned_sync_client(
            settings.egress_allow, timeout=settings.salesforce_timeout_seconds
        )
        self._owns_http = http is None
        if self._owns_http:
            # A client span per request (method, URL, status; never headers or bodies), below
            # the connector's span; W3C traceparent goes out with it.
            HTTPXClientInstrumentor.instrument_client(self._http)
        self.vault = vault or CredentialVault(
            db, SecretBox.from_setting(settings.secrets_key.get_secret_value()), clock
        )
        self.tokens = TokenProvider(
            self.vault,
            self._http,
            clock,
            connector=CONNECTOR,
            default_login_url=settings.salesforce_login_url,
            token_ttl_seconds=settings.salesforce_token_ttl_seconds,
            timeout_seconds=settings.salesforce_timeout_seconds,
            login_policy=settings.salesforce_login_policy,
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def tools(self) -> list[ConnectorTool]:
        return [
            ConnectorTool("crm.create_task", "Create a Task in Salesforce.", self.create_task),
            ConnectorTool(
                "crm.create_opportunity", "Create an Opportunity in Salesforce.", self.create_opportunity
            ),
            ConnectorTool(
                "crm.update_field",
                "Update allow-listed fields of a Salesforce Account (id 001…) or Opportunity (id 006…); "
                "the previous values are recorded for compensation.",
                self.update_field,
            ),
            ConnectorTool(
                "crm.delete_task",
                "Delete a Task created by crm.create_task (compensation).",
                self.delete_task,
                compensates="crm.create_task",
            ),
            ConnectorTool(
                "crm.delete_opportunity",
                "Delete an Opportunity created by crm.create_opportunity (compensation).",
                self.delete_opportunity,
                compensates="crm.create_opportunity",
            ),
            ConnectorTool(
                "crm.restore_field",
                "Restore the values crm.update_field overwrote (compensation).",
                self.restore_field,
                compensates="crm.update_field",
            ),
        ]

    # --- tools --------------------------------------------------------------------------------

    def create_task(
        self,
        title: str,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        idempotency_key: str,
        description: str | None = None,
        priority: str | None = None,
        due_date: str | None = None,
        what_id: str | None = None,
    ) -> ToolAnswer:
        problems = _required_text(title=title)
        if due_date is not None and not _DATE.match(due_date):
            problems.append("due_date must be a date (YYYY-MM-DD)")
        if what_id is not None and not _RECORD_ID.match(what_id):
            problems.append("what_id must be a Salesforce record id")
        fields = _without_none(
            Subject=title,
            Description=description,
            Priority=priority,
            ActivityDate=due_date,
            WhatId=what_id,
        )
        return self._guarded(
            problems,
            idempotency_key,
            lambda: self._create(
                "crm.create_task", "Task", fields, tenant_id, account_id, action_intent_id, idempotency_key
            ),
        )

    def create_opportunity(
        self,
        name: str,
        stage_name: str,
        close_date: str,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        idempotency_key: str,
        amount: float | None = None,
        account_record_id: str | None = None,
        description: str | None = None,
        next_step: str | None = None,
    ) -> ToolAnswer:
        problems = _required_text(name=name, stage_name=stage_name)
        if not _DATE.match(close_date):
            problems.append("close_date must be a date (YYYY-MM-DD)")
        if account_record_id is not None and not account_record_id.startswith("001"):
            problems.append("account_record_id must be a Salesforce Account id (001…)")
        fields = _without_none(
            Name=name,
            StageName=stage_name,
            CloseDate=close_date,
            Amount=amount,
            AccountId=account_record_id,
            Description=description,
            NextStep=next_step,
        )
        return self._guarded(
            problems,
            idempotency_key,
            lambda: self._create(
                "crm.create_opportunity",
                "Opportunity",
                fields,
                tenant_id,
                account_id,
                action_intent_id,
                idempotency_key,
            ),
        )

    def update_field(
        self,
        record_id: str,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        idempotency_key: str,
        fields: dict[str, FieldValue] | None = None,
        stage_name: str | None = None,
    ) -> ToolAnswer:
        sobject, problems = _sobject_of(record_id)
        values = dict(fields or {})
        if stage_name is not None:
            if sobject != "Opportunity":
                problems.append("stage_name applies to an Opportunity only")
            values["StageName"] = stage_name
        if not values:
            problems.append("nothing to update: give fields or stage_name")
        if sobject:
            not_allowed = sorted(set(values) - UPDATABLE_FIELDS[sobject])
            if not_allowed:
                problems.append(
                    f"field(s) {', '.join(name[:64] for name in not_allowed[:10])} of {sobject} may not be "
                    f"updated (allowed: {', '.join(sorted(UPDATABLE_FIELDS[sobject]))})"
                )
        return self._guarded(
            problems,
            idempotency_key,
            lambda: self._update(
                sobject, record_id, values, tenant_id, account_id, action_intent_id, idempotency_key
            ),
        )

    # Compensation tools share one contract: the object to undo plus the trusted bindings. The
    # call's idempotency key is the compensation's own (derived from the write's, never equal to
    # it), so the write is found by what it wrote: this intent's object, written by the tool.
    def delete_task(
        self, object_id: str, tenant_id: str, account_id: str, action_intent_id: str, idempotency_key: str
    ) -> ToolAnswer:
        return self._guarded(
            [],
            idempotency_key,
            lambda: self._delete(
                "crm.create_task", "Task", object_id, tenant_id, account_id, action_intent_id
            ),
        )

    def delete_opportunity(
        self, object_id: str, tenant_id: str, account_id: str, action_intent_id: str, idempotency_key: str
    ) -> ToolAnswer:
        return self._guarded(
            [],
            idempotency_key,
            lambda: self._delete(
                "crm.create_opportunity", "Opportunity", object_id, tenant_id, account_id, action_intent_id
            ),
        )

    def restore_field(
        self, object_id: str, tenant_id: str, account_id: str, action_intent_id: str, idempotency_key: str
    ) -> ToolAnswer:
        return self._guarded(
            [], idempotency_key, lambda: self._restore(object_id, tenant_id, account_id, action_intent_id)
        )

    # --- the shared frame ----------------------------------------------------------------------

    def _guarded(
        self, problems: list[str], idempotency_key: str, run: Callable[[], CallToolResult]
    ) -> CallToolResult:
        """Input problems → VALIDATION; connector failures → their class; never an exception."""
        if not _IDEMPOTENCY_KEY.match(idempotency_key):
            problems = [*problems, "idempotency_key is malformed"]
        if problems:
            return tool_failure(ErrorClass.VALIDATION, "VALIDATION_FAILED", "; ".join(problems))
        try:
            return run()
        except ConnectorFailure as failure:
            return tool_failure(failure.error_class, failure.code, failure.message)
        except Exception as exc:
            if is_transient_store_error(exc):
                return tool_failure(ErrorClass.DOWNSTREAM, "STORE_UNAVAILABLE", _STORE_UNAVAILABLE)
            raise

    def _api(self, tenant_id: str, account_id: str) -> SalesforceApi:
        return SalesforceApi(self._http, self.tokens, tenant_id, account_id, self._version)

    def _reserve(
        self, tool_name: str, tenant_id: str, account_id: str, action_intent_id: str, idempotency_key: str
    ) -> _Reservation:
        """Reserve the key; waits (briefly) while another call holds a live reservation."""
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + self._timeout
        while True:
            with self._db.write() as conn:
                kind, row = external_writes.reserve(
                    conn,
                    tenant_id=tenant_id,
                    account_id=account_id,
                    idempotency_key=idempotency_key,
                    connector=CONNECTOR,
                    tool_name=tool_name,
                    action_intent_id=action_intent_id,
                    owner=owner,
                    now=self._clock.now(),
                    now_iso=self._clock.now_iso(),
                    lease_seconds=self._lease_seconds,
                )
            if kind != "busy":
                if row.tool_name != tool_name:
                    raise ConnectorFailure(
                        ErrorClass.VALIDATION,
                        "IDEMPOTENCY_COLLISION",
                        "the idempotency key was used by another tool",
                    )
                return _Reservation(self, kind, row, owner, tenant_id, account_id, idempotency_key)
            if time.monotonic() > deadline:
                raise ConnectorFailure(
                    ErrorClass.DOWNSTREAM,
                    "WRITE_IN_PROGRESS",
                    "another call with this idempotency key is writing right now; try again",
                )
            time.sleep(_BUSY_POLL_SECONDS)

    def _ref(self, object_type: str, object_id: str, object_url: str | None) -> ExternalObjectRef:
        return ExternalObjectRef(
            system="CRM", object_type=object_type, object_id=object_id, object_url=object_url
        )

    # --- create --------------------------------------------------------------------------------

    def _create(
        self,
        tool_name: str,
        sobject: str,
        fields: dict[str, Any],
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        idempotency_key: str,
    ) -> CallToolResult:
        reservation = self._reserve(tool_name, tenant_id, account_id, action_intent_id, idempotency_key)
        if reservation.kind == "committed":
            return self._success_from(reservation.row, found_existing=True)
        api = self._api(tenant_id, account_id)
        with reservation.guard():
            if reservation.kind == "taken_over":
                # An earlier call may have written without learning its result: look first.
                found = self._find_by_marker(api, sobject, idempotency_key)
                if found is not None:
                    row = reservation.commit(sobject, found, api.record_url(found))
                    return self._success_from(row, found_existing=True)
            reservation.ensure_lease()
            try:
                response = api.call(
                    "POST", f"sobjects/{sobject}/", json={**fields, self._marker: idempotency_key}, write=True
                )
            except ConnectorFailure as failure:
                if failure.code == "SALESFORCE_DUPLICATE_VALUE" and self._marker in failure.message:
                    # The marker is a unique External ID and the record exists: it is ours.
                    found = self._find_by_marker(api, sobject, idempotency_key)
                    if found is not None:
                        row = reservation.commit(sobject, found, api.record_url(found))
                        return self._success_from(row, found_existing=True)
                raise self._explain_marker(failure, sobject) from None
            record_id = _created_id(response)
            row = reservation.commit(sobject, record_id, api.record_url(record_id))
        if row.object_id != record_id:  # a concurrent taker committed another record first
            log.warning(
                "salesforce %s %s was created twice for one idempotency key; kept %s",
                sobject,
                record_id,
                row.object_id,
            )
        return self._success_from(row, found_existing=False)

    def _find_by_marker(self, api: SalesforceApi, sobject: str, idempotency_key: str) -> str | None:
        # SOQL, not SQL: the names are fixed, the key is pattern-checked and quoted.
        soql = (
            f"SELECT Id FROM {sobject} WHERE {self._marker} = '{_soql_quote(idempotency_key)}' "  # noqa: S608
            "ORDER BY CreatedDate ASC LIMIT 1"
        )
        try:
            response = api.call("GET", "query", params={"q": soql})
        except ConnectorFailure as failure:
            raise self._explain_marker(failure, sobject) from None
        records = _json(response).get("records")
        if isinstance(records, list) and records and isinstance(records[0], dict):
            found = records[0].get("Id")
            return str(found) if found else None
        return None

    def _explain_marker(self, failure: ConnectorFailure, sobject: str) -> ConnectorFailure:
        if failure.code == "SALESFORCE_INVALID_FIELD" and self._marker in failure.message:
            return ConnectorFailure(
                ErrorClass.VALIDATION,
                "SALESFORCE_MARKER_FIELD_MISSING",
                f"{sobject} has no field {self._marker}: create it (Text(64), External ID) so that "
                "writes can be deduplicated (see README, Salesforce)",
                written=failure.written,
            )
        return failure

    # --- update --------------------------------------------------------------------------------

    def _update(
        self,
        sobject: str,
        record_id: str,
        values: dict[str, Any],
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        idempotency_key: str,
    ) -> CallToolResult:
        reservation = self._reserve(
            "crm.update_field", tenant_id, account_id, action_intent_id, idempotency_key
        )
        row = reservation.row
        if reservation.kind == "committed":
            return self._success_from(row, found_existing=True)
        api = self._api(tenant_id, account_id)
        names = sorted(values)
        with reservation.guard():
            current = api.get_record(sobject, record_id, names)
            previous = row.previous_values
            if previous is None:
                previous = {name: current.get(name) for name in names}
                reservation.record_values(previous, values)
            elif all(_same(current.get(name), values[name]) for name in names):
                # An earlier call's write did happen (its answer was lost): nothing to write.
                row = reservation.commit(sobject, record_id, api.record_url(record_id))
                return self._success_from(row, found_existing=True)
            reservation.ensure_lease()
            api.call("PATCH", f"sobjects/{sobject}/{record_id}", json=values, write=True)
            row = reservation.commit(sobject, record_id, api.record_url(record_id))
        return self._success_from(row, found_existing=False)

    # --- compensation --------------------------------------------------------------------------

    def _committed(
        self,
        tool_name: str,
        object_type: str,
        object_id: str,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
    ) -> ExternalWrite:
        with self._db.read() as conn:
            row = external_writes.committed_write_of(
                conn,
                tenant_id,
                account_id,
                action_intent_id=action_intent_id,
                tool_name=tool_name,
                object_id=object_id,
            )
        if row is None or (object_type and row.object_type != object_type):
            raise ConnectorFailure(
                ErrorClass.VALIDATION,
                "UNKNOWN_OBJECT",
                f"{object_type or 'the object'} {object_id[:32]} was not written by this execution",
            )
        return row

    def _delete(
        self, tool_name: str, sobject: str, object_id: str, tenant_id: str, account_id: str, intent_id: str
    ) -> CallToolResult:
        row = self._committed(tool_name, sobject, object_id, tenant_id, account_id, intent_id)
        deleted = False
        if row.compensated_at is None:
            api = self._api(tenant_id, account_id)
            try:
                api.call("DELETE", f"sobjects/{sobject}/{object_id}", write=True)
                deleted = True
            except ConnectorFailure as failure:
                # Deleting what is already gone is success: compensation must be safe to repeat.
                if failure.code not in ("SALESFORCE_ENTITY_IS_DELETED", "SALESFORCE_NOT_FOUND"):
                    raise
            self._mark_compensated(tenant_id, account_id, row.idempotency_key)
        return tool_success([self._ref(sobject, object_id, row.object_url)], deleted=deleted)

    def _restore(self, object_id: str, tenant_id: str, account_id: str, intent_id: str) -> CallToolResult:
        row = self._committed("crm.update_field", "", object_id, tenant_id, account_id, intent_id)
        sobject = str(row.object_type)
        previous: dict[str, Any] = dict(row.previous_values or {})
        written: dict[str, Any] = dict(row.written_values or {})
        restored: list[str] = []
        if row.compensated_at is None and previous:
            api = self._api(tenant_id, account_id)
            current = api.get_record(sobject, object_id, sorted(previous))
            changes: dict[str, Any] = {}
            conflicts: list[str] = []
            for name, before in previous.items():
                now_value = current.get(name)
                if _same(now_value, before):
                    continue
                if _same(now_value, written.get(name)):
                    changes[name] = before
                else:
                    conflicts.append(name)
            if conflicts:
                raise ConnectorFailure(
                    ErrorClass.VALIDATION,
                    "COMPENSATION_CONFLICT",
                    f"{sobject} {object_id} field(s) {', '.join(sorted(conflicts))} changed since the "
                    "write; nothing was restored (restore them by hand if still wanted)",
                )
            if changes:
                api.call("PATCH", f"sobjects/{sobject}/{object_id}", json=changes, write=True)
                restored = sorted(changes)
            self._mark_compensated(tenant_id, account_id, row.idempotency_key)
        return tool_success([self._ref(sobject, object_id, row.object_url)], restored_fields=restored)

    def _mark_compensated(self, tenant_id: str, account_id: str, key: str) -> None:
        with self._db.write() as conn:
            external_writes.mark_compensated(conn, tenant_id, account_id, key, now_iso=self._clock.now_iso())

    def _success_from(self, row: ExternalWrite, *, found_existing: bool) -> CallToolResult:
        extra: dict[str, Any] = {"found_existing": found_existing}
        if row.previous_values is not None:
            extra["previous_values"] = row.previous_values
        return tool_success([self._ref(str(row.object_type), str(row.object_id), row.object_url)], **extra)


class _Reservation:
    """One call's hold on an idempotency key, and what it does with it when the call ends."""

    def __init__(
        self,
        connector: SalesforceConnector,
        kind: str,
        row: ExternalWrite,
        owner: str,
        tenant_id: str,
        account_id: str,
        key: str,
    ) -> None:
        self._connector = connector
        self.kind = kind
        self.row = row
        self._owner = owner
        self._tenant_id = tenant_id
        self._account_id = account_id
        self._key = key
        self._lease_until = float(row.lease_until_epoch or 0.0)

    def guard(self) -> _ReservationGuard:
        return _ReservationGuard(self)

    def _scope(self) -> tuple[str, str, str]:
        return self._tenant_id, self._account_id, self._key

    def ensure_lease(self) -> None:
        """Right before a write: the lease must outlast the request, else renew it (or stop, when
        another call took the reservation over)."""
        connector = self._connector
        now = connector._clock.now()
        if self._lease_until - now > connector._timeout + 1.0:
            return
        until = now + connector._lease_seconds
        with connector._db.write() as conn:
            renewed = external_writes.renew(conn, *self._scope(), owner=self._owner, until=until)
        if not renewed:
            raise ConnectorFailure(
                ErrorClass.DOWNSTREAM,
                "WRITE_IN_PROGRESS",
                "another call took this write over; try again",
                written="unknown",
            )
        self._lease_until = until

    def record_values(self, previous: dict[str, Any], written: dict[str, Any]) -> None:
        with self._connector._db.write() as conn:
            recorded = external_writes.record_values(
                conn, *self._scope(), owner=self._owner, previous=previous, written=written
            )
        if not recorded:
            raise ConnectorFailure(
                ErrorClass.DOWNSTREAM,
                "WRITE_IN_PROGRESS",
                "another call took this write over; try again",
                written="unknown",
            )

    def commit(self, object_type: str, object_id: str, object_url: str | None) -> ExternalWrite:
        connector = self._connector
        with connector._db.write() as conn:
            row = external_writes.commit(
                conn,
                *self._scope(),
                object_type=object_type,
                object_id=object_id,
                object_url=object_url,
                now_iso=connector._clock.now_iso(),
            )
        self.kind = "committed"
        return row

    def settle_failure(self, written: str) -> None:
        """A failed call: a fresh reservation whose write certainly did not happen is dropped;
        otherwise the lease ends now, so that the next call looks before it writes."""
        if self.kind == "committed":
            return
        connector = self._connector
        with connector._db.write() as conn:
            if self.kind == "fresh" and written == "no":
                external_writes.release(conn, *self._scope(), owner=self._owner)
            else:
                external_writes.expire(conn, *self._scope(), owner=self._owner)


class _ReservationGuard:
    def __init__(self, reservation: _Reservation) -> None:
        self._reservation = reservation

    def __enter__(self) -> _Reservation:
        return self._reservation

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> None:
        if exc is None:
            return
        written = exc.written if isinstance(exc, ConnectorFailure) else "unknown"
        try:
            self._reservation.settle_failure(written)
        except Exception:  # the lease runs out by itself; the original failure is what matters
            log.warning("could not settle an external write reservation after a failure")


class SalesforceApi:
    """REST calls for one tool call: authorised, timed out, and classified when they fail."""

    def __init__(
        self, http: httpx.Client, tokens: TokenProvider, tenant_id: str, account_id: str, version: str
    ) -> None:
        self._http = http
        self._tokens = tokens
        self._tenant_id = tenant_id
        self._account_id = account_id
        self._version = version
        self._token: AccessToken | None = None

    def record_url(self, record_id: str) -> str | None:
        return f"{self._token.instance_url}/{record_id}" if self._token else None

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        write: bool = False,
    ) -> httpx.Response:
        """One request (two when the first is refused with 401: the token is refreshed once)."""
        for attempt in (1, 2):
            token = self._token or self._tokens.token(self._tenant_id, self._account_id)
            self._token = token
            url = f"{token.instance_url}/services/data/{self._version}/{path}"
            try:
                response = self._http.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    headers={"Authorization": f"Bearer {token.value}", "Accept": "application/json"},
                )
            except EgressRefused as exc:
                raise egress_failure(exc) from None
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
                raise ConnectorFailure(
                    ErrorClass.DOWNSTREAM, "SALESFORCE_UNREACHABLE", "Salesforce cannot be reached"
                ) from None
            except httpx.TimeoutException:
                raise ConnectorFailure(
                    ErrorClass.TIMEOUT,
                    "SALESFORCE_TIMEOUT",
                    f"Salesforce did not answer within {self._http.timeout.read or 0:g}s",
                    written="unknown" if write else "no",
                ) from None
            except httpx.TransportError:
                raise ConnectorFailure(
                    ErrorClass.DOWNSTREAM,
                    "SALESFORCE_CONNECTION_LOST",
                    "the connection to Salesforce was lost before its answer arrived",
                    written="unknown" if write else "no",
                ) from None
            if response.status_code == 401 and attempt == 1:
                self._tokens.invalidate(token)
                self._token = None
                continue
            if response.is_success:
                return response
            raise failure_from_response(response, write=write)
        raise AssertionError("unreachable")  # pragma: no cover

    def get_record(self, sobject: str, record_id: str, fields: list[str]) -> dict[str, Any]:
        response = self.call("GET", f"sobjects/{sobject}/{record_id}", params={"fields": ",".join(fields)})
        return _json(response)


def failure_from_response(response: httpx.Response, *, write: bool = False) -> ConnectorFailure:
    """Classify a Salesforce error answer from its status and body ``[{message, errorCode, fields}]``."""
    status = response.status_code
    errors = _error_list(response)
    code = next((e["errorCode"] for e in errors if e["errorCode"]), "")
    fields = sorted({f for e in errors for f in e["fields"]})
    message = next((e["message"] for e in errors if e["message"]), "")
    error_code = f"SALESFORCE_{code}" if code else f"SALESFORCE_HTTP_{status}"
    described = f"Salesforce answered {status}{' ' + code if code else ''}"
    if fields:
        described += f" on {', '.join(fields[:10])}"
    if message:
        described += f": {message}"
    if status == 401:
        return ConnectorFailure(
            ErrorClass.AUTH, error_code, described + " (after refreshing the access token once)"
        )
    if status == 403:
        if code == "REQUEST_LIMIT_EXCEEDED":
            return ConnectorFailure(ErrorClass.RATE_LIMIT, error_code, described)
        return ConnectorFailure(ErrorClass.AUTH, error_code, described)
    if status == 429:
        return ConnectorFailure(ErrorClass.RATE_LIMIT, error_code, described)
    if status >= 500:
        # The server may have failed after it wrote: the result of a write is unknown.
        return ConnectorFailure(
            ErrorClass.DOWNSTREAM, error_code, described, written="unknown" if write else "no"
        )
    if code == "UNABLE_TO_LOCK_ROW":
        return ConnectorFailure(ErrorClass.DOWNSTREAM, error_code, described)
    if 400 <= status < 500:
        return ConnectorFailure(ErrorClass.VALIDATION, error_code, described)
    return ConnectorFailure(ErrorClass.UNKNOWN, error_code, described, written="unknown" if write else "no")


def _error_list(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        return []
    items = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
    errors = []
    for item in items[:10]:
        if not isinstance(item, dict):
            continue
        raw_fields = item.get("fields")
        errors.append(
            {
                "errorCode": _clean(str(item.get("errorCode") or item.get("error") or ""), 64),
                "message": _clean(str(item.get("message") or item.get("error_description") or ""), 300),
                "fields": [_clean(str(f), 80) for f in raw_fields[:20]]
                if isinstance(raw_fields, list)
                else [],
            }
        )
    return errors


def _clean(text: str, limit: int) -> str:
    return _SAFE_TEXT.sub(" ", text).strip()[:limit]


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _created_id(response: httpx.Response) -> str:
    body = _json(response)
    record_id = body.get("id") or body.get("Id")
    if not isinstance(record_id, str) or not _RECORD_ID.match(record_id):
        raise ConnectorFailure(
            ErrorClass.UNKNOWN,
            "INVALID_CONNECTOR_RESPONSE",
            "Salesforce answered the create without a record id",
            written="unknown",
        )
    return record_id


def _soql_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _sobject_of(record_id: str) -> tuple[str, list[str]]:
    if not _RECORD_ID.match(record_id):
        return "", ["record_id must be a Salesforce record id (15 or 18 characters)"]
    sobject = SOBJECT_PREFIXES.get(record_id[:3])
    if sobject is None:
        return "", ["record_id must be an Account (001…) or Opportunity (006…) id"]
    return sobject, []


def _required_text(**values: str) -> list[str]:
    return [f"{name} must not be empty" for name, value in values.items() if not value.strip()]


def _without_none(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def _same(left: Any, right: Any) -> bool:
    """Salesforce answers numbers as floats (5000.0 for 5000) and may drop trailing zeros."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return float(left) == float(right)
    return bool(left == right)
