"""End-to-end verification of a running service over its HTTP API (DESIGN §4.5 "E2E settings").

``run_e2e`` drives five paths against ``url`` and checks each result:

* **B2** (seed + verify): import an already-approved intent, send ACTION_APPROVED to ``/events``;
* **B1**: create an intent, approve it through the API;
* **kill switch**: with execution switched off for the token's own tenant
  (``PUT /admin/tenants/{tenant}/execution``), an approved intent ends CANCELLED; other tenants
  keep running. With ``global_stop`` it uses the global stop instead, which stops every tenant.
  The previous switch value is always restored;
* **expired**: an imported intent whose ``expires_at`` has passed ends EXPIRED;
* **duplicate**: the same event three times executes once.

With ``db_url`` it also counts the outcome and internal-task rows in the database.
``scripts/e2e.sh`` runs the same checks with curl and jq.
"""

from __future__ import annotations

import secrets
import string
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlparse

import httpx
import jwt
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Table, func, select
from sqlalchemy.exc import SQLAlchemyError

from fulfill.client import ApiError, FulfillClient
from fulfill.domain.models import ApprovalStatus, ExecutionStatus, ExecutionStatusView
from fulfill.domain.scopes import TENANT_SCOPES, USER_SCOPES
from fulfill_tools.launch import wait_ready

if TYPE_CHECKING:
    from fulfill.usecases.admin import KillSwitches, TenantExecution

T = TypeVar("T")

E2E_TENANT = "e2e-tenant"
TERMINAL = {
    ExecutionStatus.SUCCEEDED,
    ExecutionStatus.FAILED,
    ExecutionStatus.CANCELLED,
    ExecutionStatus.EXPIRED,
}
POLL_TIMEOUT_SECONDS = 60.0
POLL_INTERVAL_SECONDS = 0.2
_BASE36 = string.digits + string.ascii_lowercase


class ConfigurationError(ValueError):
    """The settings cannot work (a malformed URL or token); the message says which."""


class E2EError(Exception):
    """A request failed or the service answered unexpectedly; the message says how."""


def tenant_of(token: str) -> str:
    """The ``tenant_id`` claim of the token, read without verifying it (the service verifies)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise ConfigurationError("FULFILL_TOKEN is not a JWT") from None
    tenant = claims.get("tenant_id") or claims.get("custom:tenant_id")
    if not isinstance(tenant, str) or not tenant:
        raise ConfigurationError("FULFILL_TOKEN carries no tenant_id claim")
    return tenant


def check_url(url: str) -> str:
    """The base URL without a trailing slash; http(s) with a host, or a ConfigurationError."""
    problem = ConfigurationError(f"FULFILL_URL {url!r} is not an http(s) URL such as http://127.0.0.1:8080")
    try:
        parsed = urlparse(url)
        httpx.URL(url)
        _ = parsed.port  # raises ValueError for a port that is not a number in range
    except (httpx.InvalidURL, ValueError):
        raise problem from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or any(c.isspace() for c in url):
        raise problem
    return url.rstrip("/")


def _utc_iso(delta_seconds: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _intent_id(path: str) -> str:
    return f"e2e_{path}_{int(time.time() * 1000)}_{''.join(secrets.choice(_BASE36) for _ in range(6))}"


@dataclass
class _Run:
    """One verification run: the API client, the identities it uses, and the check tally."""

    api: FulfillClient
    approver: FulfillClient  # another person: nobody approves their own proposal
    console: Console
    tenant: str
    account: str
    db_url: str | None
    global_stop: bool = False
    checks: int = 0
    failures: int = 0

    # --- reporting -------------------------------------------------------------------

    def check(self, ok: bool, what: str, got: object = None) -> bool:
        self.checks += 1
        if ok:
            self.console.print(f"  [green]✔[/green] {escape(what)}")
        else:
            self.failures += 1
            suffix = f" (got {got!r})" if got is not None else ""
            self.console.print(f"  [red]✘ {escape(what)}{escape(suffix)}[/red]")
        return ok

    # --- HTTP ------------------------------------------------------------------------

    def ask(self, expected: int, call: Callable[[], T]) -> T:
        """The answer of one call of the API, whose success answers HTTP ``expected``; an
        unreachable service, a refusal or an answer that is not the route's JSON is an E2EError."""
        try:
            return call()
        except httpx.RequestError as exc:
            line = f"{exc.request.method} {exc.request.url.path}"
            raise E2EError(f"{line}: cannot reach the service ({type(exc).__name__}: {exc})") from None
        except ApiError as exc:
            if exc.status < 400:
                raise E2EError(f"{exc.request_line}: {exc.reason}") from None
            raise E2EError(
                f"{exc.request_line}: expected HTTP {expected}, got {_describe(exc.response)}"
            ) from None

    def create(self, path: str, *, approved: bool, **fields: Any) -> str:
        intent_id = _intent_id(path)
        body: dict[str, Any] = {
            "action_intent_id": intent_id,
            "action_type": "CREATE_INTERNAL_TASK",
            "account_id": self.account,
            "parameters": {"title": f"e2e {path.upper()}"},
            **fields,
        }
        if approved:
            body["approval"] = {"approved_by": "fulfill-e2e-approver", "approval_timestamp": _utc_iso()}
        created = self.ask(201, lambda: self.api.create_intent(body))
        if not created.created:
            raise E2EError(f"POST /intents: expected HTTP 201, got HTTP 200 (the intent {intent_id} existed)")
        want = ApprovalStatus.APPROVED if approved else ApprovalStatus.PENDING_APPROVAL
        got = created.value.approval_status
        self.check(got == want, f"intent stored {want.value}", got.value)
        return intent_id

    def approve(self, intent_id: str) -> None:
        answer = self.ask(202, lambda: self.approver.approve(intent_id))
        got = answer.approval_status
        self.check(got == ApprovalStatus.APPROVED, "approved", got.value)

    def send_event(self, intent_id: str) -> None:
        event = {
            "source": "cc-native",
            "detail-type": "ACTION_APPROVED",
            "detail": {
                "data": {"action_intent_id": intent_id, "tenant_id": self.tenant, "account_id": self.account}
            },
        }
        answer = self.ask(202, lambda: self.api.send_event(event))
        self.check(answer.status == "accepted", "ACTION_APPROVED event accepted", answer.status)

    def wait_finished(self, intent_id: str) -> ExecutionStatusView:
        """The status once the execution has finished: terminal, with an attempt count (a status
        read from the recorded outcome, not one derived from the intent alone)."""
        deadline = time.monotonic() + POLL_TIMEOUT_SECONDS
        status: ExecutionStatusView | None = None
        while time.monotonic() < deadline:
            status = self.ask(200, lambda: self.api.execution_status(intent_id))
            if status.status in TERMINAL and status.attempt_count is not None:
                return status
            time.sleep(POLL_INTERVAL_SECONDS)
        last = status.model_dump(mode="json", exclude_none=True) if status is not None else {}
        raise E2EError(f"{intent_id} did not finish within {POLL_TIMEOUT_SECONDS:.0f} s (last {last})")

    # --- verification ----------------------------------------------------------------

    def expect_end(
        self, status: ExecutionStatusView, want: ExecutionStatus, error_code: str | None = None
    ) -> None:
        self.check(status.status == want, f"status {want.value}", status.status.value)
        if error_code is not None:
            self.check(status.error_code == error_code, f"error_code {error_code}", status.error_code)

    def verify_success(self, intent_id: str, status: ExecutionStatusView) -> list[str]:
        """The checks every successful execution must pass; returns the timeline's event types."""
        self.expect_end(status, ExecutionStatus.SUCCEEDED)
        refs = status.external_object_refs or []
        self.check(
            any(ref.system == "INTERNAL" and ref.object_type == "Task" for ref in refs),
            "external object ref INTERNAL/Task",
            [ref.model_dump(mode="json", exclude_none=True) for ref in refs],
        )
        entries = self.ask(200, lambda: self.api.timeline(intent_id)).entries
        types = [entry.event_type for entry in entries]
        in_order = "EXECUTION_STARTED" in types and "ACTION_EXECUTED" in types
        in_order = in_order and types.index("EXECUTION_STARTED") < types.index("ACTION_EXECUTED")
        self.check(in_order, "timeline: EXECUTION_STARTED before ACTION_EXECUTED", types)
        signal_id = f"exec-{intent_id}-{self.account}-ACTION_EXECUTED"
        signals = [e.data.get("signalId") for e in entries if e.event_type == "SIGNAL"]
        self.check(signal_id in signals, f"timeline: SIGNAL {signal_id}", signals)
        if self.db_url is not None:
            self.verify_rows(self.db_url, intent_id)
        return types

    def verify_rows(self, db_url: str, intent_id: str) -> None:
        """One outcome row and one internal task row (read-only queries)."""
        from fulfill.store.db import Database
        from fulfill.store.tables import execution_outcomes, internal_tasks

        database = Database(db_url)
        try:
            for table, what in ((execution_outcomes, "outcome row"), (internal_tasks, "internal task row")):
                rows = _count(database, table, self.tenant, intent_id)
                self.check(rows == 1, f"database: one {what}", rows)
        except SQLAlchemyError as exc:
            self.check(False, f"database readable at --db ({type(exc).__name__})")
        finally:
            database.dispose()

    # --- the paths ---------------------------------------------------------------------

    def path_b2(self) -> None:
        intent_id = self.create("b2", approved=True)
        self.send_event(intent_id)
        self.verify_success(intent_id, self.wait_finished(intent_id))

    def path_b1(self) -> None:
        intent_id = self.create("b1", approved=False)
        self.approve(intent_id)
        self.verify_success(intent_id, self.wait_finished(intent_id))

    def switches(self) -> _Switches:
        return _GlobalStop(self.api) if self.global_stop else _TenantExecution(self.api, self.tenant)

    def path_kill_switch(self) -> None:
        """Stop executions with a switch, check that this path's intent is cancelled, and put the
        switch back as it was. The tenant's own switch unless the global stop was asked for."""
        switches = self.switches()
        if self.global_stop:
            key, stop, what = "global_stop", True, "global stop on"
        else:
            key, stop, what = "execution_enabled", False, f"execution of tenant {self.tenant} off"
        previous = self.ask(200, switches.read)
        saved = {key: getattr(previous, key), "disabled_action_types": previous.disabled_action_types}
        try:
            stored = self.ask(200, lambda: switches.write({**saved, key: stop}))
            self.check(getattr(stored, key) is stop, what, stored.model_dump(mode="json"))
            intent_id = self.create("killswitch", approved=False)
            self.approve(intent_id)
            status = self.wait_finished(intent_id)
        finally:
            try:
                restored = self.ask(200, lambda: switches.write(saved))
                shown = {name: getattr(restored, name) for name in saved}  # without revision, updated_at
                self.check(shown == saved, "kill switches restored", restored.model_dump(mode="json"))
            except E2EError as exc:
                self.check(False, f"kill switches restored: {exc}")
        self.expect_end(status, ExecutionStatus.CANCELLED, "KILL_SWITCH_ENABLED")

    def path_expired(self) -> None:
        intent_id = self.create("expired", approved=True, expires_at=_utc_iso(-60))
        self.send_event(intent_id)
        self.expect_end(self.wait_finished(intent_id), ExecutionStatus.EXPIRED, "INTENT_EXPIRED")

    def path_duplicate(self) -> None:
        intent_id = self.create("duplicate", approved=True)
        for _ in range(3):
            self.send_event(intent_id)
        status = self.wait_finished(intent_id)
        types = self.verify_success(intent_id, status)
        self.check(status.attempt_count == 1, "attempt_count 1", status.attempt_count)
        started = types.count("EXECUTION_STARTED")
        self.check(started == 1, "timeline: exactly one EXECUTION_STARTED", started)


class _SwitchState(Protocol):
    """What the kill-switch path reads of either switch's answer."""

    @property
    def disabled_action_types(self) -> list[str]: ...

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


class _Switches(Protocol):
    """The kill switch the kill-switch path turns, read and written through the API."""

    def read(self) -> _SwitchState: ...

    def write(self, body: dict[str, Any]) -> _SwitchState: ...


@dataclass
class _GlobalStop:
    api: FulfillClient

    def read(self) -> KillSwitches:
        return self.api.kill_switches()

    def write(self, body: dict[str, Any]) -> KillSwitches:
        return self.api.put_kill_switches(body)


@dataclass
class _TenantExecution:
    api: FulfillClient
    tenant: str

    def read(self) -> TenantExecution:
        return self.api.tenant_execution(self.tenant)

    def write(self, body: dict[str, Any]) -> TenantExecution:
        return self.api.put_tenant_execution(self.tenant, body)


def _describe(response: httpx.Response) -> str:
    """``HTTP 422 CODE: detail`` from a problem document, or the start of the body."""
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if isinstance(problem, dict) and ("detail" in problem or "code" in problem):
        reason = ": ".join(str(problem[key]) for key in ("code", "detail") if problem.get(key))
    else:
        reason = response.text[:200]
    return f"HTTP {response.status_code} {reason}".rstrip()


def _count(database: Any, table: Table, tenant: str, intent_id: str) -> int:
    query = (
        select(func.count())
        .select_from(table)
        .where(table.c.tenant_id == tenant, table.c.action_intent_id == intent_id)
    )
    with database.read() as conn:
        return int(conn.execute(query).scalar_one())


def run_e2e(
    url: str,
    token: str,
    account_id: str,
    console: Console,
    *,
    db_url: str | None = None,
    global_stop: bool = False,
    approver_token: str | None = None,
) -> bool:
    """Run every path against the service at ``url``; True only when every check passed.

    ``approver_token``: another person's token of the same tenant, for the approvals (nobody
    approves their own proposal); by default ``token``, which the service refuses on an intent
    its own subject proposed (403 SELF_APPROVAL).

    The kill-switch path switches off the token's own tenant (read from the token's claims), or,
    with ``global_stop``, turns on the global stop, which stops every tenant meanwhile.

    Raises ConfigurationError for a malformed URL or token (nothing has been sent then).
    """
    base_url = check_url(url)
    tenant = tenant_of(token)
    with (
        FulfillClient(base_url, token, timeout=30.0) as api,
        FulfillClient(base_url, approver_token or token, timeout=30.0) as approver,
    ):
        run = _Run(api, approver, console, tenant, account_id, db_url, global_stop)
        console.print(
            f"[bold]fulfill e2e[/bold] against {escape(base_url)} (tenant {escape(tenant)}, "
            f"account {escape(account_id)}, database checks {'on' if db_url else 'off'})"
        )
        paths: list[tuple[str, Callable[[], None]]] = [
            ("B2 seed + verify: imported intent + ACTION_APPROVED event", run.path_b2),
            ("B1 create + approve", run.path_b1),
            (
                "kill switch: global stop cancels the execution"
                if global_stop
                else "kill switch: the tenant's switch cancels the execution",
                run.path_kill_switch,
            ),
            ("expired: an expired intent does not run", run.path_expired),
            ("duplicate: the same event 3 times executes once", run.path_duplicate),
        ]
        for title, path in paths:
            console.print(f"[bold]{escape(title)}[/bold]")
            try:
                path()
            except E2EError as exc:
                run.check(False, f"{title.split(':')[0]} did not complete: {exc}")
    if run.failures:
        console.print(f"[bold red]e2e FAILED: {run.failures} of {run.checks} checks failed[/bold red]")
    else:
        console.print(f"[bold green]e2e passed: {run.checks} checks[/bold green]")
    return run.failures == 0


def run_embedded(account_id: str, console: Console, *, global_stop: bool = False) -> bool:
    """Start a service on a temporary SQLite database, run every path (with database checks), stop it."""
    from fulfill.config import Settings
    from fulfill.server import BackgroundServer
    from fulfill.tokens import mint_token

    with tempfile.TemporaryDirectory(prefix="fulfill-e2e-", ignore_cleanup_errors=True) as tmpdir:
        database_url = f"sqlite:///{Path(tmpdir) / 'e2e.db'}"
        alphabet = string.ascii_letters + string.digits
        settings = Settings(
            database_url=database_url,
            host="127.0.0.1",
            port=0,
            jwt_secret="".join(secrets.choice(alphabet) for _ in range(48)),
            log_level="WARNING",
        )
        server = BackgroundServer(settings)
        try:
            try:
                server.start()
            except RuntimeError as exc:
                console.print(f"[red]✘ the embedded service did not start: {escape(str(exc))}[/red]")
                return False
            console.print(f"embedded service on {server.url} ({database_url})")
            try:
                wait_ready(server.url, timeout=POLL_TIMEOUT_SECONDS)
            except RuntimeError:
                console.print("[red]✘ the embedded service did not become ready within 60 s[/red]")
                return False
            # The global stop affects every tenant, so only a platform administrator may switch it.
            scopes = list(USER_SCOPES if global_stop else TENANT_SCOPES)
            token = mint_token(server.settings, tenant_id=E2E_TENANT, scopes=scopes, subject="fulfill-e2e")
            approver = mint_token(
                server.settings, tenant_id=E2E_TENANT, scopes=scopes, subject="fulfill-e2e-approver"
            )
            return run_e2e(
                server.url,
                token,
                account_id,
                console,
                db_url=database_url,
                global_stop=global_stop,
                approver_token=approver,
            )
        finally:
            server.stop()
