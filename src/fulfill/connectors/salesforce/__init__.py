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
(``reservations.py`` over ``store/external_writes.py``). Created records also carry the key in a custom field
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

The package: ``connector.py`` (the tools), ``reservations.py`` (reserve → call → commit),
``api.py`` (the REST client), ``errors.py`` (error answers classified), ``fields.py`` (what the
tools accept).
"""

from fulfill.connectors.salesforce.api import SalesforceApi
from fulfill.connectors.salesforce.connector import CONNECTOR, CrmTool, SalesforceConnector
from fulfill.connectors.salesforce.errors import failure_from_response
from fulfill.connectors.salesforce.fields import SOBJECT_PREFIXES, UPDATABLE_FIELDS, SObject

__all__ = [
    "CONNECTOR",
    "SOBJECT_PREFIXES",
    "UPDATABLE_FIELDS",
    "CrmTool",
    "SObject",
    "SalesforceApi",
    "SalesforceConnector",
    "failure_from_response",
]
