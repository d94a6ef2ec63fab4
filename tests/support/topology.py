"""The api/worker topology: what the multi-process tests run and what deploy/compose.yaml deploys
(tests/unit/test_deploy_compose.py holds the compose file to it)."""

from __future__ import annotations

# One api process and two worker processes on one database (docs/OPERATIONS.md, "PostgreSQL: api
# and worker processes"), each with its own FULFILL_EXECUTOR_ID.
SPLIT_ROLES: tuple[str, ...] = ("api", "worker", "worker")
WORKERS = SPLIT_ROLES.count("worker")
# The settings the multi-process tests give every process, besides the ones that say where
# (FULFILL_DATABASE_URL, FULFILL_PORT, FULFILL_HOST) and what (FULFILL_ROLE, FULFILL_EXECUTOR_ID).
SHARED_SETTINGS = ("FULFILL_DATABASE_URL", "FULFILL_JWT_SECRET")
