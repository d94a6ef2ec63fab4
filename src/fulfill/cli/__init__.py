"""The ``fulfill`` command line.

Commands that talk to a running service (``intent``, ``approve``, ``status``, ``demo``) use its
HTTP API at ``--url`` (``FULFILL_URL``; without it, ``http://FULFILL_HOST:FULFILL_PORT``, where
``fulfill serve`` listens with the same settings) with a token minted from ``FULFILL_JWT_SECRET``
unless ``--token`` is given. Commands that operate the service (``kill-switch``, ``registry``) go
through the same API when a service URL is given, and otherwise work on the database directly
(``--db``, else ``FULFILL_DATABASE_URL``), so an emergency stop works even when the API does not:
they name the database they act on and never create one. Whoever can reach the database is a
platform operator (over HTTP the same changes need the ``platform:admin`` scope). ``gateway`` and
``connectors`` work on the database; running services pick up their changes within
``FULFILL_GATEWAY_TARGETS_REFRESH_SECONDS`` (targets) or at once (limits).

Failures end in one line saying what went wrong and what to do (exit 1, or 2 for configuration
and reachability); ``fulfill --debug …`` shows the traceback instead.

The package: ``app`` (the application and the order of its commands), one module per command
group, ``operators`` (the same operations through the API or on the database), ``remote`` (the
API, over ``fulfill.client``), ``auth`` (bearer tokens), ``options`` and ``output``.
"""

from fulfill.cli.app import app, main
from fulfill.cli.operators import CLI_CHANGED_BY

__all__ = ["CLI_CHANGED_BY", "app", "main"]
