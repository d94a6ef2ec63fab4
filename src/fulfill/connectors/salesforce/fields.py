"""What the Salesforce tools accept: object types, the fields they may change, checked inputs."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

FieldValue = str | int | float | bool | None


class SObject(StrEnum):
    ACCOUNT = "Account"
    OPPORTUNITY = "Opportunity"
    TASK = "Task"


# Key prefixes of the record ids crm.update_field accepts, and the fields it may change.
SOBJECT_PREFIXES = {"001": SObject.ACCOUNT, "006": SObject.OPPORTUNITY}
UPDATABLE_FIELDS: dict[SObject, frozenset[str]] = {
    SObject.ACCOUNT: frozenset(
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
    SObject.OPPORTUNITY: frozenset(
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
RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def sobject_of(record_id: str) -> tuple[SObject | None, list[str]]:
    """The object type a record id names (by its key prefix), or the problem with it."""
    if not RECORD_ID.match(record_id):
        return None, ["record_id must be a Salesforce record id (15 or 18 characters)"]
    sobject = SOBJECT_PREFIXES.get(record_id[:3])
    if sobject is None:
        return None, ["record_id must be an Account (001…) or Opportunity (006…) id"]
    return sobject, []


def required_text(**values: str) -> list[str]:
    return [f"{name} must not be empty" for name, value in values.items() if not value.strip()]


def without_none(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def same(left: Any, right: Any) -> bool:
    """Salesforce answers numbers as floats (5000.0 for 5000) and may drop trailing zeros."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return float(left) == float(right)
    return bool(left == right)


def soql_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
