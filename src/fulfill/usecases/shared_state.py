"""What ``/metrics`` reads from the database at each scrape: the state every process shares.

Cheap, indexed reads: the connectors' limits and circuits, the attempts past their budget, the
AMBIGUOUS executions by age and the age of the oldest, the
outbox backlog and its oldest message, and the kill switches. Tenant ids are read into labels only
when ``FULFILL_METRICS_TENANT_LABELS`` is on.
"""

from __future__ import annotations

from collections.abc import Iterable

from fulfill.domain.outbox import destination_kind
from fulfill.domain.time import epoch_from_iso
from fulfill.metrics import SharedState
from fulfill.ports.store import Store
from fulfill.usecases import connectors


def read_shared_state(
    store: Store,
    *,
    now_epoch: float,
    known_connectors: Iterable[str],
    environment_stop: bool,
    tenant_labels: bool,
    ambiguous_alert_seconds: float = 3600.0,
) -> SharedState:
    samples = connectors.samples(store, known_connectors)
    with store.read() as uow:
        past_budget = uow.executions.attempts_past_budget(now_epoch)
        ambiguous = uow.executions.ambiguous_by_age(now_epoch)
        oldest_ambiguous = uow.executions.oldest_ambiguous_at()
        by_tenant = uow.executions.attempts_past_budget_by_tenant(now_epoch) if tenant_labels else None
        backlog = uow.outbox.pending_count()
        oldest = uow.outbox.oldest_pending_created_at()
        dead = uow.outbox.dead_letter_destinations()
        global_config = uow.killswitches.get_global()
        tenants = uow.killswitches.tenant_summary()
    return SharedState(
        connectors=samples,
        attempts_past_budget=past_budget,
        ambiguous_by_age=ambiguous,
        ambiguous_oldest_age_seconds=(
            max(0.0, now_epoch - epoch_from_iso(oldest_ambiguous)) if oldest_ambiguous else 0.0
        ),
        ambiguous_alert_threshold_seconds=ambiguous_alert_seconds,
        outbox_backlog=backlog,
        outbox_oldest_age_seconds=max(0.0, now_epoch - epoch_from_iso(oldest)) if oldest else 0.0,
        outbox_dead_letters=_by_kind(dead),
        global_stop=environment_stop or global_config.global_stop,
        tenants_stopped=len(tenants.stopped_tenants),
        disabled_action_types_global=len(global_config.disabled_action_types),
        disabled_action_types_tenant=tenants.disabled_action_types,
        tenant_attempts_past_budget=by_tenant,
        stopped_tenants=tenants.stopped_tenants if tenant_labels else None,
    )


def _by_kind(by_destination: dict[str, int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for destination, count in by_destination.items():
        kind = destination_kind(destination)
        counts[kind] = counts.get(kind, 0) + count
    return counts
