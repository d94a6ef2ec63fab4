"""The api/worker topology: what the multi-process tests run and what deploy/compose.yaml deploys
(tests/unit/test_deploy_compose.py holds the compose file to it)."""

from __future__ import annotations

from collections.abc import Mapping

from fulfill.config import WORKFLOWS_STOP_SECONDS, Settings

# One api process and two worker processes on one database (docs/OPERATIONS.md, "PostgreSQL: api
# and worker processes"), each with its own FULFILL_EXECUTOR_ID.
SPLIT_ROLES: tuple[str, ...] = ("api", "worker", "worker")
WORKERS = SPLIT_ROLES.count("worker")
# The settings the multi-process tests give every process, besides the ones that say where
# (FULFILL_DATABASE_URL, FULFILL_PORT, FULFILL_HOST) and what (FULFILL_ROLE, FULFILL_EXECUTOR_ID).
SHARED_SETTINGS = ("FULFILL_DATABASE_URL", "FULFILL_JWT_SECRET")


def seconds_a_stop_needs(settings: Mapping[str, str]) -> float:
    """How long a process with ``settings`` (``FULFILL_*`` variables) may take from SIGTERM to its
    end: the requests' grace, the running executions' time, and 5 s for DBOS's shutdown. A pod's
    or container's grace period must cover it, or the stop is cut by SIGKILL."""
    grace = settings.get(
        "FULFILL_SHUTDOWN_GRACE_SECONDS", Settings.model_fields["shutdown_grace_seconds"].default
    )
    return int(grace) + WORKFLOWS_STOP_SECONDS + 5
