"""A real fulfill service on 127.0.0.1 in this process, on a temporary database.

The database is a SQLite file in the test's temporary directory, or, when ``TEST_POSTGRES_URL`` is
set (see ``tests/support/postgres.py``), a fresh PostgreSQL database that is dropped when the
service stops.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
from dbos import DBOS
from sqlalchemy import func, select

from fulfill.client import ApiError, FulfillClient, default_limits
from fulfill.config import Settings
from fulfill.domain.models import ActionIntentV1, ApprovalStatus, ExecutionPolicy
from fulfill.domain.scopes import USER_SCOPES
from fulfill.domain.time import iso_from_epoch
from fulfill.server import BackgroundServer
from fulfill.service import Service
from fulfill.store import intents
from fulfill.store.db import Database
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.tables import execution_outcomes, execution_signals, internal_notes, internal_tasks
from fulfill.tokens import mint_token
from tests.support import postgres
from tests.support.http_doubles import wait_for

TEST_SECRET = "test-secret-0123456789abcdef0123456789"
ALL_SCOPES = list(USER_SCOPES)
# A JWT as it would leak into a log, a span or a row: a header and a payload, each base64 of a
# JSON object ('{"' is "eyJ"), joined by a dot. Three characters alone are not one: random base64
# holds "eyJ" by chance (about once in a thousand for a sealed bearer's length).
JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.")
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED", "AMBIGUOUS"}


def fresh_database_url(tmp_path: Path) -> str:
    """A new, empty database for one service: PostgreSQL on the PostgreSQL pass, else SQLite."""
    if postgres.enabled():
        return postgres.create_database()
    return f"sqlite:///{tmp_path / 'fulfill.db'}"


@contextmanager
def fresh_database(tmp_path: Path, *, migrated: bool = True, pool_size: int = 10) -> Iterator[Database]:
    """A :func:`fresh_database_url` database opened (at the newest revision unless ``migrated`` is
    False), closed and on PostgreSQL dropped afterwards."""
    db = Database(fresh_database_url(tmp_path), pool_size=pool_size)
    try:
        if migrated:
            upgrade_to_head(db)
        yield db
    finally:
        db.dispose()
        if postgres.is_postgres_url(db.url):
            postgres.drop_database(db.url)


def service_database_url(tmp_path: Path) -> str:
    """A database for a service of this process, already migrated: on PostgreSQL a copy of a
    migrated template (``tests/support/postgres.py``); on SQLite ``fulfill.db`` in ``tmp_path``,
    copied with its DBOS file from migrated ones unless it exists (a service that restarts on the
    same ``tmp_path`` finds its data). Tests of migrating itself use ``fresh_database_url``."""
    if postgres.enabled():
        return postgres.create_database(migrated=True)
    url = fresh_database_url(tmp_path)
    files = [tmp_path / "fulfill.db", tmp_path / "fulfill.dbos.sqlite"]
    if not any(file.exists() for file in files):
        template = _sqlite_template()
        tmp_path.mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copyfile(template / file.name, file)
    return url


_sqlite_template_dir: Path | None = None
_sqlite_template_lock = threading.Lock()


def _sqlite_template() -> Path:
    """A directory with ``fulfill.db`` and ``fulfill.dbos.sqlite`` migrated to head, made once
    per process and removed at its exit."""
    global _sqlite_template_dir
    with _sqlite_template_lock:
        if _sqlite_template_dir is None:
            directory = Path(tempfile.mkdtemp(prefix="fulfill-test-template-"))
            atexit.register(shutil.rmtree, directory, ignore_errors=True)
            settings = Settings(database_url=f"sqlite:///{directory / 'fulfill.db'}")
            database = Database(settings.database_url)
            try:
                upgrade_to_head(database)
            finally:
                database.dispose()
            DBOS.migrate(settings.system_database_url)
            # Whole files only: every connection is closed, so nothing waits in a -wal file.
            leftovers = [path.name for path in directory.iterdir() if path.name.endswith(("-wal", "-shm"))]
            assert not leftovers, f"the SQLite template is not closed: {leftovers}"
            _sqlite_template_dir = directory
        return _sqlite_template_dir


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": overrides.pop("database_url", None) or service_database_url(tmp_path),
        "host": "127.0.0.1",
        "port": 0,
        "jwt_secret": TEST_SECRET,
        "retry_backoff_base_seconds": 0.01,
        "rate_limit_backoff_seconds": 0.05,
        "gateway_call_timeout_seconds": 5.0,
        "outbox_poll_seconds": 0.2,
        "outbox_backoff_base_seconds": 0.05,
        "reconcile_interval_seconds": 3600.0,
        "log_level": "WARNING",
    }
    values.update(overrides)
    if values.get("auth_mode", "dev") == "dev":
        # The tests' services have their own JWT secret, which turns the console's local login
        # off by default; they drive the console through it from 127.0.0.1.
        values.setdefault("console_dev_login", True)
    return Settings(**values)


class Harness:
    def __init__(self, settings: Settings) -> None:
        self.server = BackgroundServer(settings)
        self.settings = self.server.settings
        self.service: Service = self.server.server.config.app.state.service
        self._colleagues: dict[str, httpx.Client] = {}

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def db(self) -> Any:
        return self.service.db

    def start(self) -> Harness:
        self.server.start()
        wait_for(lambda: self.service.engine_ready)
        return self

    def stop(self) -> None:
        for colleague in self._colleagues.values():
            colleague.close()
        try:
            self.server.stop()
        finally:
            if postgres.is_postgres_url(self.settings.database_url):
                self.service.db.dispose()
                postgres.drop_database(self.settings.database_url)

    def token(self, tenant: str = "t1", scopes: list[str] | None = None, **kwargs: Any) -> str:
        return mint_token(self.settings, tenant_id=tenant, scopes=scopes or ALL_SCOPES, **kwargs)

    def client(self, tenant: str = "t1", scopes: list[str] | None = None, **kwargs: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token(tenant, scopes, **kwargs)}"},
            timeout=30.0,
            limits=default_limits(),  # idle connections dropped before the server drops them
        )

    def colleague(self, client: httpx.Client) -> httpx.Client:
        """A client for a colleague of ``client``'s token holder (see :func:`colleague_headers`);
        closed when the service stops. The tests' approvals are a colleague's of whoever proposed."""
        headers = colleague_headers(client, self.settings.jwt_secret, self.settings.jwt_audience)
        key = headers["Authorization"]
        if key not in self._colleagues:
            self._colleagues[key] = httpx.Client(
                base_url=self.url, headers=headers, timeout=30.0, limits=default_limits()
            )
        return self._colleagues[key]

    # --- flows -------------------------------------------------------------------------

    def api(self, client: httpx.Client) -> FulfillClient:
        """The typed API client on ``client``'s connections, with its bearer token (the typed client
        sends requests it builds itself, so the token is handed over, not the default headers)."""
        authorization = client.headers.get("Authorization", "")
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None
        return FulfillClient(self.url, token, http=client)

    def create_intent(
        self,
        client: httpx.Client,
        *,
        account: str = "acc-1",
        action_type: str = "CREATE_INTERNAL_TASK",
        **body: Any,
    ) -> dict[str, Any]:
        """The stored intent as the service answered it (HTTP 201: a new intent)."""
        payload: dict[str, Any] = {"action_type": action_type, "account_id": account}
        payload.setdefault("parameters", {"title": "Call the customer"})
        payload.update(body)
        created = self.api(client).create_intent(payload)
        assert created.created, f"POST /intents answered 200: {payload} was stored already"
        return created.value.model_dump(mode="json")

    def approve(self, client: httpx.Client, intent_id: str) -> None:
        """Approve as a colleague of ``client``'s token holder, who proposed the intent."""
        self.api(self.colleague(client)).approve(intent_id)

    def wait_terminal(self, client: httpx.Client, intent_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for the recorded outcome of an execution (not a status derived from the intent alone)."""
        api = self.api(client)
        last_seen: list[object] = ["nothing read yet"]

        def terminal() -> dict[str, Any] | None:
            try:
                status = api.execution_status(intent_id)
            except ApiError as exc:
                last_seen[0] = exc
                return None
            last_seen[0] = status.model_dump(mode="json", exclude_none=True)
            if status.status in TERMINAL and status.attempt_count is not None:
                return status.model_dump(mode="json", exclude_none=True)
            return None

        return dict(
            wait_for(terminal, timeout=timeout, describe=lambda: f"{intent_id} last read as {last_seen[0]}")
        )

    def wait_compensated(self, client: httpx.Client, intent_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for an execution's compensation to be COMPLETED; answers its status then."""

        def compensated() -> dict[str, Any] | None:
            body: dict[str, Any] = client.get(f"/executions/{intent_id}/status").json()
            return body if body.get("compensation_status") == "COMPLETED" else None

        return dict(wait_for(compensated, timeout=timeout))

    def run_task(self, client: httpx.Client, **body: Any) -> dict[str, Any]:
        intent = self.create_intent(client, **body)
        self.approve(client, intent["action_intent_id"])
        return self.wait_terminal(client, intent["action_intent_id"])

    # --- database facts ------------------------------------------------------------------

    def count(self, table: Any, **where: Any) -> int:
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        with self.db.read() as conn:
            return int(conn.execute(query).scalar_one())

    def task_rows(self, intent_id: str) -> int:
        return self.count(internal_tasks, action_intent_id=intent_id)

    def note_rows(self, intent_id: str) -> int:
        return self.count(internal_notes, action_intent_id=intent_id)

    def outcome_rows(self, intent_id: str) -> int:
        return self.count(execution_outcomes, action_intent_id=intent_id)

    def signal_rows(self, intent_id: str) -> int:
        return self.count(execution_signals, action_intent_id=intent_id)


def approved_event(intent_id: str, tenant: str = "t1", account: str = "acc-1", **data: Any) -> dict[str, Any]:
    return {
        "source": "cc-native",
        "detail-type": "ACTION_APPROVED",
        "detail": {
            "data": {"action_intent_id": intent_id, "tenant_id": tenant, "account_id": account, **data}
        },
    }


def seed_intent(harness: Harness, intent_id: str, **fields: Any) -> None:
    """Write an approved intent straight into the store, as an upstream decision system would."""
    now = harness.service.clock.now()
    values: dict[str, Any] = {
        "action_intent_id": intent_id,
        "action_type": "CREATE_INTERNAL_TASK",
        "parameters": {"title": "seeded"},
        "approved_by": "upstream",
        "approval_timestamp": iso_from_epoch(now),
        "approval_status": ApprovalStatus.APPROVED,
        "execution_policy": ExecutionPolicy(),
        "expires_at": iso_from_epoch(now + 86_400),
        "expires_at_epoch": int(now) + 86_400,
        "tenant_id": "t1",
        "account_id": "acc-1",
        "trace_id": "decision-trace",
        "registry_version": 1,
        "created_at": iso_from_epoch(now),
        "updated_at": iso_from_epoch(now),
    }
    values.update(fields)
    with harness.db.write() as conn:
        assert intents.insert_intent(conn, ActionIntentV1(**values), "seeded")


def colleague_headers(
    client: httpx.Client, secret: str = TEST_SECRET, audience: str = "fulfill"
) -> dict[str, str]:
    """The Authorization header of a colleague of ``client``'s token holder (the same tenant,
    scopes and accounts, the subject with ``+colleague`` appended): nobody approves their own
    proposal. For services whose JWT secret is ``secret``."""
    token = client.headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, secret, algorithms=["HS256"], audience=audience)
    claims["sub"] = f"{claims['sub']}+colleague"
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}
