"""Salesforce's error answers, classified for the engine (retried, or failed for good)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from fulfill.credentials.oauth import ConnectorFailure
from fulfill.domain.errors import ErrorClass
from fulfill.domain.external_writes import Written

_SAFE_TEXT = re.compile(r"[\x00-\x1f\x7f]")


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
    may_have_written = Written.UNKNOWN if write else Written.NO
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
        return ConnectorFailure(ErrorClass.DOWNSTREAM, error_code, described, written=may_have_written)
    if code == "UNABLE_TO_LOCK_ROW":
        return ConnectorFailure(ErrorClass.DOWNSTREAM, error_code, described)
    if 400 <= status < 500:
        return ConnectorFailure(ErrorClass.VALIDATION, error_code, described)
    return ConnectorFailure(ErrorClass.UNKNOWN, error_code, described, written=may_have_written)


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
