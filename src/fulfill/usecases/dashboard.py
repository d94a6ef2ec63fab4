"""The console's dashboard: what waits for a person, and how executions went over a window.

Every figure is read from the store in one read transaction (never from one process's memory),
so every process of a deployment shows the same. A tenant's user sees its tenant (and, with an
account-restricted token, its accounts); ``platform:admin`` sees every tenant, or one it picks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fulfill.domain.dashboard import (
    AGE_BUCKETS,
    MAX_LISTED,
    MAX_SAMPLES,
    AgeBucket,
    Bucket,
    ConnectorFigures,
    Latency,
    WaitingList,
    Window,
    connector_figures,
    durations,
    latency_of,
    parse_window,
    rebucket,
)
from fulfill.domain.killswitch import GLOBAL_SCOPE, KillSwitchScope
from fulfill.domain.scopes import Scope
from fulfill.domain.time import iso_from_epoch
from fulfill.ports.store import UnitOfWork
from fulfill.tokens import Principal
from fulfill.usecases.context import UseCaseContext
from fulfill.usecases.errors import Forbidden, Invalid

# Who may open the dashboard: anyone with one of the console's scopes.
DASHBOARD_SCOPES = (Scope.INTENTS_READ, Scope.EXECUTIONS_READ, Scope.ADMIN, Scope.PLATFORM_ADMIN)
MAX_TENANTS_LISTED = 500
_TENANT = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


@dataclass(frozen=True)
class SwitchState:
    """The kill switches as they apply to what the dashboard shows."""

    global_stop: bool  # stored, or FULFILL_GLOBAL_EXECUTION_STOP
    global_stop_by_configuration: bool
    global_disabled_action_types: list[str]
    stopped_tenants: list[str]  # of those shown
    tenant_disabled_action_types: list[str]  # of the one tenant shown (empty for every tenant)

    @property
    def anything_stopped(self) -> bool:
        return bool(
            self.global_stop
            or self.stopped_tenants
            or self.global_disabled_action_types
            or self.tenant_disabled_action_types
        )


@dataclass(frozen=True)
class Dashboard:
    window: Window
    tenant_id: str | None  # None: every tenant
    tenants: list[str]  # the tenants a platform admin may pick (empty for anyone else)
    since: str
    until: str
    buckets: list[Bucket]
    failures: dict[str, int]
    approval_wait: Latency
    approval_to_outcome: Latency
    connectors: list[ConnectorFigures]
    pending: list[AgeBucket]
    oldest_pending: str | None
    stuck: WaitingList
    unknown: WaitingList
    compensations: WaitingList
    dead_letters: int | None  # None: not shown (a token limited to some accounts)
    switches: SwitchState

    @property
    def executions(self) -> int:
        return sum(bucket.total for bucket in self.buckets)

    @property
    def pending_total(self) -> int:
        return sum(bucket.count for bucket in self.pending)


def _tenant_of(principal: Principal, wanted: str | None) -> str | None:
    """The tenant to show: a platform admin's pick (None: every tenant), else the token's own."""
    wanted = (wanted or "").strip() or None
    if principal.has_scope(Scope.PLATFORM_ADMIN):
        if wanted is not None and not _TENANT.match(wanted):
            raise Invalid("a tenant id is letters, digits, '_', '.', ':', '@' or '-'", code="INVALID_TENANT")
        return wanted
    if wanted is not None and wanted != principal.tenant_id:
        raise Forbidden("only platform:admin may see another tenant's dashboard", code="TENANT_NOT_ALLOWED")
    return principal.tenant_id


def read_dashboard(
    rt: UseCaseContext, principal: Principal, *, window: str | None = None, tenant: str | None = None
) -> Dashboard:
    """The dashboard for ``principal`` over ``window`` (``1h``, ``24h`` or ``7d``; else 422
    ``INVALID_WINDOW``); ``tenant``: a platform admin's filter (another tenant's user: 403)."""
    if not any(principal.has_scope(scope) for scope in DASHBOARD_SCOPES):
        raise Forbidden("the dashboard needs one of " + ", ".join(DASHBOARD_SCOPES), code="MISSING_SCOPE")
    try:
        chosen = parse_window(window)
    except ValueError as exc:
        raise Invalid(str(exc), code="INVALID_WINDOW") from None
    tenant_id = _tenant_of(principal, tenant)
    accounts = principal.account_ids if tenant_id == principal.tenant_id else None
    now = rt.clock.now()
    since_epoch = now - chosen.seconds
    since, until = iso_from_epoch(since_epoch), iso_from_epoch(now + 0.001)
    bounds = [iso_from_epoch(now - lower) for _, lower in AGE_BUCKETS]
    with rt.store.read() as uow:
        board = uow.dashboard
        per_minute = board.outcomes_per_minute(
            since=since, until=until, tenant_id=tenant_id, account_ids=accounts
        )
        failures = board.failures_by_class(
            since=since, until=until, tenant_id=tenant_id, account_ids=accounts
        )
        waits_total, waits = board.approval_waits(
            since=since, until=until, tenant_id=tenant_id, account_ids=accounts, limit=MAX_SAMPLES
        )
        runs_total, runs = board.approval_to_outcome(
            since=since, until=until, tenant_id=tenant_id, account_ids=accounts, limit=MAX_SAMPLES
        )
        tool_counts = board.tool_outcome_counts(
            since=since, until=until, tenant_id=tenant_id, account_ids=accounts
        )
        timings = board.tool_timings(
            since=since, until=until, tenant_id=tenant_id, account_ids=accounts, limit=MAX_SAMPLES
        )
        retried = board.retried_tries(since=since, until=until, tenant_id=tenant_id, account_ids=accounts)
        pending, oldest = board.pending_by_age(
            bounds=bounds, now_epoch=now, tenant_id=tenant_id, account_ids=accounts
        )
        stuck = board.stuck_attempts(
            now_epoch=now, tenant_id=tenant_id, account_ids=accounts, limit=MAX_LISTED
        )
        unknown = board.unknown_outcomes(tenant_id=tenant_id, account_ids=accounts, limit=MAX_LISTED)
        compensations = board.compensations_for_a_person(
            tenant_id=tenant_id, account_ids=accounts, limit=MAX_LISTED
        )
        dead_letters = board.dead_letter_count(tenant_id=tenant_id) if accounts is None else None
        tenants = board.tenants(limit=MAX_TENANTS_LISTED) if principal.has_scope(Scope.PLATFORM_ADMIN) else []
        switches = _switches(uow, rt, tenant_id)
    timed_calls = sum(n for _, _, n in tool_counts)
    return Dashboard(
        window=chosen,
        tenant_id=tenant_id,
        tenants=tenants,
        since=since,
        until=iso_from_epoch(now),
        buckets=rebucket(
            per_minute, since_epoch=since_epoch, until_epoch=now + 0.001, bucket_seconds=chosen.bucket_seconds
        ),
        failures=dict(sorted(failures.items(), key=lambda item: (-item[1], item[0]))),
        approval_wait=latency_of(durations(waits), sampled=waits_total > len(waits)),
        approval_to_outcome=latency_of(durations(runs), sampled=runs_total > len(runs)),
        connectors=connector_figures(tool_counts, retried, timings, sampled=timed_calls > len(timings)),
        pending=[AgeBucket(label, count) for (label, _), count in zip(AGE_BUCKETS, pending, strict=True)],
        oldest_pending=oldest,
        stuck=stuck,
        unknown=unknown,
        compensations=compensations,
        dead_letters=dead_letters,
        switches=switches,
    )


def _switches(work: UnitOfWork, rt: UseCaseContext, tenant_id: str | None) -> SwitchState:
    stored_global = work.killswitches.get_switches(GLOBAL_SCOPE)
    if tenant_id is None:
        stopped = work.killswitches.tenant_summary().stopped_tenants
        tenant_types: list[str] = []
    else:
        own = work.killswitches.get_switches(KillSwitchScope.of_tenant(tenant_id))
        stopped = [tenant_id] if own.settings.stopped else []
        tenant_types = list(own.settings.disabled_action_types)
    by_configuration = bool(rt.settings.global_execution_stop)
    return SwitchState(
        global_stop=stored_global.settings.stopped or by_configuration,
        global_stop_by_configuration=by_configuration,
        global_disabled_action_types=list(stored_global.settings.disabled_action_types),
        stopped_tenants=sorted(stopped),
        tenant_disabled_action_types=tenant_types,
    )
