"""The Salesforce connector's tools: input checks, then reserve → call → commit for each write."""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import httpx
from mcp.types import CallToolResult
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from fulfill.config import Settings
from fulfill.connectors.base import ConnectorTool, ToolSuccess, tool_failure, tool_success
from fulfill.connectors.egress import pinned_sync_client
from fulfill.connectors.salesforce.api import SalesforceApi, created_id, json_object
from fulfill.connectors.salesforce.fields import (
    DATE,
    IDEMPOTENCY_KEY,
    RECORD_ID,
    UPDATABLE_FIELDS,
    FieldValue,
    SObject,
    required_text,
    same,
    sobject_of,
    soql_quote,
    without_none,
)
from fulfill.connectors.salesforce.reservations import WriteKey, WriteReservations
from fulfill.credentials.oauth import ConnectorFailure, TokenProvider
from fulfill.credentials.vault import CredentialVault
from fulfill.domain.errors import ErrorClass
from fulfill.domain.external_writes import ReservationKind
from fulfill.domain.models import ExternalObjectRef
from fulfill.domain.ports import Clock
from fulfill.domain.probes import Absent, Found, Inconclusive, ProbeResult, Undeclared
from fulfill.domain.records import ExternalWrite
from fulfill.ports.store import Store

log = logging.getLogger(__name__)

ToolAnswer = Annotated[CallToolResult, ToolSuccess]

CONNECTOR = "salesforce"
_STORE_UNAVAILABLE = "the connector's store is unavailable, try again"


class CrmTool(StrEnum):
    CREATE_TASK = "crm.create_task"
    CREATE_OPPORTUNITY = "crm.create_opportunity"
    UPDATE_FIELD = "crm.update_field"
    DELETE_TASK = "crm.delete_task"
    DELETE_OPPORTUNITY = "crm.delete_opportunity"
    RESTORE_FIELD = "crm.restore_field"


class SalesforceConnector:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: Settings,
        *,
        vault: CredentialVault,
        http: httpx.Client | None = None,
    ) -> None:
        self._store = store
        self._version = settings.salesforce_api_version
        self._timeout = settings.salesforce_timeout_seconds
        self._marker = settings.salesforce_marker_field
        self._reservations = WriteReservations(
            store, clock, connector=CONNECTOR, request_seconds=settings.salesforce_timeout_seconds
        )
        self._http = http or pinned_sync_client(
            settings.egress_allow, timeout=settings.salesforce_timeout_seconds
        )
        self._owns_http = http is None
        if self._owns_http:
            # A client span per request (method, URL, status; never headers or bodies), below
            # the connector's span; W3C traceparent goes out with it.
            HTTPXClientInstrumentor.instrument_client(self._http)
        self.vault = vault
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
            ConnectorTool(CrmTool.CREATE_TASK.value, "Create a Task in Salesforce.", self.create_task),
            ConnectorTool(
                CrmTool.CREATE_OPPORTUNITY.value,
                "Create an Opportunity in Salesforce.",
                self.create_opportunity,
            ),
            ConnectorTool(
                CrmTool.UPDATE_FIELD.value,
                "Update allow-listed fields of a Salesforce Account (id 001…) or Opportunity (id 006…); "
                "the previous values are recorded for compensation.",
                self.update_field,
            ),
            ConnectorTool(
                CrmTool.DELETE_TASK.value,
                "Delete a Task created by crm.create_task (compensation).",
                self.delete_task,
                compensates=CrmTool.CREATE_TASK.value,
            ),
            ConnectorTool(
                CrmTool.DELETE_OPPORTUNITY.value,
                "Delete an Opportunity created by crm.create_opportunity (compensation).",
                self.delete_opportunity,
                compensates=CrmTool.CREATE_OPPORTUNITY.value,
            ),
            ConnectorTool(
                CrmTool.RESTORE_FIELD.value,
                "Restore the values crm.update_field overwrote (compensation).",
                self.restore_field,
                compensates=CrmTool.UPDATE_FIELD.value,
            ),
        ]

    # --- reconcile probes ----------------------------------------------------------------------

    def lookup(
        self,
        *,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        tool_name: str,
        idempotency_key: str,
        timeout_seconds: float,
    ) -> ProbeResult:
        """A reconcile probe: the record a create wrote, found by the marker field it carries
        (the same SOQL query a create runs before writing again). A record found is committed to
        the key's reservation, so that a compensation of the resolved write finds it."""
        sobject = _CREATED.get(tool_name)
        if sobject is None:
            return Undeclared(f"{tool_name} writes no marker a lookup can find")
        api = self._api(tenant_id, account_id)
        try:
            found = self._find_by_marker(api, sobject, idempotency_key)
        except ConnectorFailure as failure:
            return Inconclusive(f"{failure.code}: {failure.message}")
        except Exception as exc:
            return Inconclusive(f"the lookup failed: {type(exc).__name__}")
        if found is None:
            return Absent()
        url = api.record_url(found)
        try:
            key = WriteKey(tenant_id, account_id, idempotency_key)
            reservation = self._reservations.reserve(CrmTool(tool_name), key, action_intent_id)
            if reservation.kind is not ReservationKind.COMMITTED:
                reservation.commit(sobject, found, url)
        except Exception as exc:  # the refs hold without it; the undo then says what it misses
            log.warning("the record a probe found could not be recorded: %s", type(exc).__name__)
        return Found((_ref(sobject, found, url),))

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
        problems = required_text(title=title)
        if due_date is not None and not DATE.match(due_date):
            problems.append("due_date must be a date (YYYY-MM-DD)")
        if what_id is not None and not RECORD_ID.match(what_id):
            problems.append("what_id must be a Salesforce record id")
        fields = without_none(
            Subject=title,
            Description=description,
            Priority=priority,
            ActivityDate=due_date,
            WhatId=what_id,
        )
        key = WriteKey(tenant_id, account_id, idempotency_key)
        return self._guarded(
            problems,
            idempotency_key,
            lambda: self._create(CrmTool.CREATE_TASK, SObject.TASK, fields, key, action_intent_id),
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
        problems = required_text(name=name, stage_name=stage_name)
        if not DATE.match(close_date):
            problems.append("close_date must be a date (YYYY-MM-DD)")
        if account_record_id is not None and not account_record_id.startswith("001"):
            problems.append("account_record_id must be a Salesforce Account id (001…)")
        fields = without_none(
            Name=name,
            StageName=stage_name,
            CloseDate=close_date,
            Amount=amount,
            AccountId=account_record_id,
            Description=description,
            NextStep=next_step,
        )
        key = WriteKey(tenant_id, account_id, idempotency_key)
        return self._guarded(
            problems,
            idempotency_key,
            lambda: self._create(
                CrmTool.CREATE_OPPORTUNITY, SObject.OPPORTUNITY, fields, key, action_intent_id
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
        sobject, problems = sobject_of(record_id)
        values = dict(fields or {})
        if stage_name is not None:
            if sobject is not SObject.OPPORTUNITY:
                problems.append("stage_name applies to an Opportunity only")
            values["StageName"] = stage_name
        if not values:
            problems.append("nothing to update: give fields or stage_name")
        if sobject is not None:
            not_allowed = sorted(set(values) - UPDATABLE_FIELDS[sobject])
            if not_allowed:
                problems.append(
                    f"field(s) {', '.join(name[:64] for name in not_allowed[:10])} of {sobject} may not be "
                    f"updated (allowed: {', '.join(sorted(UPDATABLE_FIELDS[sobject]))})"
                )
        key = WriteKey(tenant_id, account_id, idempotency_key)

        def update() -> CallToolResult:
            assert sobject is not None  # a record id of no known object type is a problem above
            return self._update(sobject, record_id, values, key, action_intent_id)

        return self._guarded(problems, idempotency_key, update)

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
                CrmTool.CREATE_TASK, SObject.TASK, object_id, tenant_id, account_id, action_intent_id
            ),
        )

    def delete_opportunity(
        self, object_id: str, tenant_id: str, account_id: str, action_intent_id: str, idempotency_key: str
    ) -> ToolAnswer:
        return self._guarded(
            [],
            idempotency_key,
            lambda: self._delete(
                CrmTool.CREATE_OPPORTUNITY,
                SObject.OPPORTUNITY,
                object_id,
                tenant_id,
                account_id,
                action_intent_id,
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
        if not IDEMPOTENCY_KEY.match(idempotency_key):
            problems = [*problems, "idempotency_key is malformed"]
        if problems:
            return tool_failure(ErrorClass.VALIDATION, "VALIDATION_FAILED", "; ".join(problems))
        try:
            return run()
        except ConnectorFailure as failure:
            return tool_failure(failure.error_class, failure.code, failure.message)
        except Exception as exc:
            if self._store.is_transient(exc):
                return tool_failure(ErrorClass.DOWNSTREAM, "STORE_UNAVAILABLE", _STORE_UNAVAILABLE)
            raise

    def _api(self, tenant_id: str, account_id: str) -> SalesforceApi:
        return SalesforceApi(
            self._http, self.tokens, tenant_id, account_id, self._version, timeout_seconds=self._timeout
        )

    # --- create --------------------------------------------------------------------------------

    def _create(
        self, tool: CrmTool, sobject: SObject, fields: dict[str, Any], key: WriteKey, action_intent_id: str
    ) -> CallToolResult:
        reservation = self._reservations.reserve(tool, key, action_intent_id)
        if reservation.kind is ReservationKind.COMMITTED:
            return _success_from(reservation.record, found_existing=True)
        api = self._api(key.tenant_id, key.account_id)
        with reservation.guard():
            if reservation.kind is ReservationKind.TAKEN_OVER:
                # An earlier call may have written without learning its result: look first.
                found = self._find_by_marker(api, sobject, key.idempotency_key)
                if found is not None:
                    write = reservation.commit(sobject, found, api.record_url(found))
                    return _success_from(write, found_existing=True)
            reservation.ensure_lease()
            try:
                response = api.call(
                    "POST",
                    f"sobjects/{sobject}/",
                    json={**fields, self._marker: key.idempotency_key},
                    write=True,
                )
            except ConnectorFailure as failure:
                if failure.code == "SALESFORCE_DUPLICATE_VALUE" and self._marker in failure.message:
                    # The marker is a unique External ID and the record exists: it is ours.
                    found = self._find_by_marker(api, sobject, key.idempotency_key)
                    if found is not None:
                        write = reservation.commit(sobject, found, api.record_url(found))
                        return _success_from(write, found_existing=True)
                raise self._explain_marker(failure, sobject) from None
            record_id = created_id(response)
            write = reservation.commit(sobject, record_id, api.record_url(record_id))
        if write.object_id != record_id:  # a concurrent taker committed another record first
            log.warning(
                "salesforce %s %s was created twice for one idempotency key; kept %s",
                sobject,
                record_id,
                write.object_id,
            )
        return _success_from(write, found_existing=False)

    def _find_by_marker(self, api: SalesforceApi, sobject: SObject, idempotency_key: str) -> str | None:
        # SOQL, not SQL: the names are fixed, the key is pattern-checked and quoted.
        soql = (
            f"SELECT Id FROM {sobject} WHERE {self._marker} = '{soql_quote(idempotency_key)}' "  # noqa: S608
            "ORDER BY CreatedDate ASC LIMIT 1"
        )
        try:
            response = api.call("GET", "query", params={"q": soql})
        except ConnectorFailure as failure:
            raise self._explain_marker(failure, sobject) from None
        records = json_object(response).get("records")
        if isinstance(records, list) and records and isinstance(records[0], dict):
            found = records[0].get("Id")
            return str(found) if found else None
        return None

    def _explain_marker(self, failure: ConnectorFailure, sobject: SObject) -> ConnectorFailure:
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
        sobject: SObject,
        record_id: str,
        values: dict[str, Any],
        key: WriteKey,
        action_intent_id: str,
    ) -> CallToolResult:
        reservation = self._reservations.reserve(CrmTool.UPDATE_FIELD, key, action_intent_id)
        if reservation.kind is ReservationKind.COMMITTED:
            return _success_from(reservation.record, found_existing=True)
        api = self._api(key.tenant_id, key.account_id)
        names = sorted(values)
        with reservation.guard():
            current = api.get_record(sobject, record_id, names)
            previous = reservation.record.previous_values
            if previous is None:
                previous = {name: current.get(name) for name in names}
                reservation.record_values(previous, values)
            elif all(same(current.get(name), values[name]) for name in names):
                # An earlier call's write did happen (its answer was lost): nothing to write.
                write = reservation.commit(sobject, record_id, api.record_url(record_id))
                return _success_from(write, found_existing=True)
            reservation.ensure_lease()
            api.call("PATCH", f"sobjects/{sobject}/{record_id}", json=values, write=True)
            write = reservation.commit(sobject, record_id, api.record_url(record_id))
        return _success_from(write, found_existing=False)

    # --- compensation --------------------------------------------------------------------------

    def _committed(
        self,
        tool: CrmTool,
        object_type: SObject | None,
        object_id: str,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
    ) -> ExternalWrite:
        write = self._reservations.committed_write_of(
            tenant_id, account_id, action_intent_id=action_intent_id, tool_name=tool, object_id=object_id
        )
        if write is None or (object_type and write.object_type != object_type):
            raise ConnectorFailure(
                ErrorClass.VALIDATION,
                "UNKNOWN_OBJECT",
                f"{object_type or 'the object'} {object_id[:32]} was not written by this execution",
            )
        return write

    def _delete(
        self,
        tool: CrmTool,
        sobject: SObject,
        object_id: str,
        tenant_id: str,
        account_id: str,
        intent_id: str,
    ) -> CallToolResult:
        write = self._committed(tool, sobject, object_id, tenant_id, account_id, intent_id)
        deleted = False
        if write.compensated_at is None:
            api = self._api(tenant_id, account_id)
            try:
                api.call("DELETE", f"sobjects/{sobject}/{object_id}", write=True)
                deleted = True
            except ConnectorFailure as failure:
                # Deleting what is already gone is success: compensation must be safe to repeat.
                if failure.code not in ("SALESFORCE_ENTITY_IS_DELETED", "SALESFORCE_NOT_FOUND"):
                    raise
            self._reservations.mark_compensated(write)
        return tool_success([_ref(sobject, object_id, write.object_url)], deleted=deleted)

    def _restore(self, object_id: str, tenant_id: str, account_id: str, intent_id: str) -> CallToolResult:
        write = self._committed(CrmTool.UPDATE_FIELD, None, object_id, tenant_id, account_id, intent_id)
        sobject = str(write.object_type)
        previous: dict[str, Any] = dict(write.previous_values or {})
        written: dict[str, Any] = dict(write.written_values or {})
        restored: list[str] = []
        if write.compensated_at is None and previous:
            api = self._api(tenant_id, account_id)
            current = api.get_record(sobject, object_id, sorted(previous))
            changes: dict[str, Any] = {}
            conflicts: list[str] = []
            for name, before in previous.items():
                now_value = current.get(name)
                if same(now_value, before):
                    continue
                if same(now_value, written.get(name)):
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
            self._reservations.mark_compensated(write)
        return tool_success([_ref(sobject, object_id, write.object_url)], restored_fields=restored)


_CREATED = {CrmTool.CREATE_TASK.value: SObject.TASK, CrmTool.CREATE_OPPORTUNITY.value: SObject.OPPORTUNITY}


def _ref(object_type: str, object_id: str, object_url: str | None) -> ExternalObjectRef:
    return ExternalObjectRef(
        system="CRM", object_type=object_type, object_id=object_id, object_url=object_url
    )


def _success_from(write: ExternalWrite, *, found_existing: bool) -> CallToolResult:
    extra: dict[str, Any] = {"found_existing": found_existing}
    if write.previous_values is not None:
        extra["previous_values"] = write.previous_values
    return tool_success([_ref(str(write.object_type), str(write.object_id), write.object_url)], **extra)
