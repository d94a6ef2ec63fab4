"""The REST client of one tool call: authorised, timed out, and classified when it fails."""

from __future__ import annotations

from typing import Any

import httpx

from fulfill.bounded_http import AnswerTooLarge, bounded_request
from fulfill.connectors.salesforce.errors import failure_from_response
from fulfill.connectors.salesforce.fields import RECORD_ID
from fulfill.credentials.oauth import AccessToken, ConnectorFailure, TokenProvider, egress_failure
from fulfill.domain.egress import EgressRefused
from fulfill.domain.errors import ErrorClass
from fulfill.domain.external_writes import Written

# The most of one answer read. The connector's answers are small: one record's chosen fields, a
# created id, a query for at most one record, an error list. A server that answers more is not
# answering what was asked, and every byte read is held by the gateway's thread until the call
# ends.
ANSWER_READ_BYTES = 1024 * 1024


class SalesforceApi:
    """REST calls for one tool call: authorised, timed out, and classified when they fail."""

    def __init__(
        self,
        http: httpx.Client,
        tokens: TokenProvider,
        tenant_id: str,
        account_id: str,
        version: str,
        *,
        timeout_seconds: float,
    ) -> None:
        self._http = http
        self._timeout = timeout_seconds
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
        """One request (two when the first is refused with 401: the token is refreshed once), its
        whole answer within the timeout and at most ``ANSWER_READ_BYTES``."""
        may_have_written = Written.UNKNOWN if write else Written.NO
        for attempt in (1, 2):
            token = self._token or self._tokens.token(self._tenant_id, self._account_id)
            self._token = token
            url = f"{token.instance_url}/services/data/{self._version}/{path}"
            try:
                response = bounded_request(
                    self._http,
                    method,
                    url,
                    deadline_seconds=self._timeout,
                    max_bytes=ANSWER_READ_BYTES,
                    json=json,
                    params=params,
                    headers={"Authorization": f"Bearer {token.value}", "Accept": "application/json"},
                )
            except EgressRefused as exc:
                raise egress_failure(exc) from None
            except AnswerTooLarge as exc:
                raise ConnectorFailure(
                    ErrorClass.DOWNSTREAM,
                    "SALESFORCE_ANSWER_TOO_LARGE",
                    f"Salesforce answered {exc.reason}; the rest was not read",
                    written=may_have_written,
                ) from None
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
                raise ConnectorFailure(
                    ErrorClass.DOWNSTREAM, "SALESFORCE_UNREACHABLE", "Salesforce cannot be reached"
                ) from None
            except httpx.TimeoutException:
                raise ConnectorFailure(
                    ErrorClass.TIMEOUT,
                    "SALESFORCE_TIMEOUT",
                    f"Salesforce did not answer within {self._timeout:g}s",
                    written=may_have_written,
                ) from None
            except httpx.TransportError:
                raise ConnectorFailure(
                    ErrorClass.DOWNSTREAM,
                    "SALESFORCE_CONNECTION_LOST",
                    "the connection to Salesforce was lost before its answer arrived",
                    written=may_have_written,
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
        return json_object(response)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object; {} when it is not one."""
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def created_id(response: httpx.Response) -> str:
    """The record id a create answered with (an answer without one leaves the write unknown)."""
    body = json_object(response)
    record_id = body.get("id") or body.get("Id")
    if not isinstance(record_id, str) or not RECORD_ID.match(record_id):
        raise ConnectorFailure(
            ErrorClass.UNKNOWN,
            "INVALID_CONNECTOR_RESPONSE",
            "Salesforce answered the create without a record id",
            written=Written.UNKNOWN,
        )
    return record_id
