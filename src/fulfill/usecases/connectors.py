"""Operating flow control: every connector's limits and circuit breaker (``platform:admin``).

A connector, or a remote target, is named by the part of its tools' names before the first dot.
Besides its own limits, which every tenant shares (taking turns, ``domain/fairness.py``), a
connector may hold a cap for one tenant alone: set by ``platform:admin`` (any tenant, any value,
or removed), or lowered by the tenant's own ``admin`` (never raised nor removed by it: a tenant
may throttle itself, never lift what the platform set).
Limits live in the database, so every process applies a change at its next admission, without a
restart. A name may be given limits before any tool of it exists (a target registered later
starts with them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from fulfill.domain.flowcontrol import (
    CIRCUIT_STATE_VALUES,
    CONNECTOR_NAME_PATTERN,
    MAX_CONCURRENCY,
    MAX_RATE_PER_SECOND,
    MIN_RATE_PER_SECOND,
    Circuit,
    CircuitState,
    ConnectorLimits,
    concurrency_problem,
    rate_problem,
)
from fulfill.domain.ports import Clock
from fulfill.domain.records import StoredLimits, TenantCap
from fulfill.domain.time import iso_from_epoch
from fulfill.metrics import ConnectorSample
from fulfill.ports.store import Store
from fulfill.usecases.errors import Forbidden, Invalid, NotFound

_NAME = re.compile(CONNECTOR_NAME_PATTERN)
_TENANT = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


class ConnectorLimitsBody(BaseModel):
    """``PUT /admin/connectors/{name}/limits``: both limits, each a number or null (no limit)."""

    model_config = ConfigDict(extra="forbid")

    rate_per_second: (
        Annotated[float, Field(strict=True, ge=MIN_RATE_PER_SECOND, le=MAX_RATE_PER_SECOND)] | None
    ) = Field(
        description="Calls that may start per second, across every process: a whole number from 1, "
        "or a fraction below 1 (0.5 = one call every 2 seconds); null = no rate limit."
    )
    concurrency: Annotated[int, Field(strict=True, ge=1, le=MAX_CONCURRENCY)] | None = Field(
        description="Calls that may be in flight at once, across every process; null = no limit of "
        "its own (each worker still runs at most FULFILL_WORKER_CONCURRENCY executions)."
    )


class CircuitView(BaseModel):
    state: CircuitState
    failures: int = Field(description="Target failures in a row (counted within the failure window).")
    opened_at: str | None = Field(description="When the circuit last opened; null while it never has.")


class ConnectorView(BaseModel):
    name: str
    rate_per_second: float | None = Field(description="null: no rate limit.")
    concurrency: int | None = Field(
        description="null: no limit of its own (each worker runs at most FULFILL_WORKER_CONCURRENCY)."
    )
    updated_at: str | None = Field(description="When the limits were last set; null: never (the defaults).")
    revision: int = Field(description="How many times the limits were written (0 = never).")
    circuit: CircuitView


def list_connectors(store: Store, known: Iterable[str]) -> list[ConnectorView]:
    """Every connector this service knows of (its tools' prefixes) or has stored state for."""
    with store.read() as uow:
        limits = uow.connectors.list_limits()
        circuits = uow.connectors.list_circuits()
    names = sorted(set(known) | set(limits) | set(circuits))
    return [
        _view(name, limits.get(name) or StoredLimits(ConnectorLimits()), circuits.get(name)) for name in names
    ]


def put_limits(store: Store, clock: Clock, name: str, body: ConnectorLimitsBody) -> ConnectorView:
    """Store a connector's limits; every process applies them at its next admission."""
    limits = validated_limits(name, body.rate_per_second, body.concurrency)
    with store.write() as uow:
        stored = uow.connectors.put_limits(name, limits, now=clock.now_iso())
        circuit = uow.connectors.get_circuit(name)
    return _view(name, stored, circuit)


def validated_limits(name: str, rate_per_second: float | None, concurrency: int | None) -> ConnectorLimits:
    """The limits, or :class:`Invalid` (422) with a code saying which part is wrong."""
    if not _NAME.match(name):
        raise Invalid(
            "a connector name is 1-64 letters, digits, '_' or '-' (the part of its tool names "
            "before the first dot)",
            code="INVALID_CONNECTOR_NAME",
        )
    if rate_per_second is not None and (problem := rate_problem(rate_per_second)):
        raise Invalid(problem, code="INVALID_RATE_PER_SECOND")
    if concurrency is not None and (problem := concurrency_problem(concurrency)):
        raise Invalid(problem, code="INVALID_CONCURRENCY")
    return ConnectorLimits(rate_per_second=rate_per_second, concurrency=concurrency)


def samples(store: Store, known: Iterable[str]) -> list[ConnectorSample]:
    """What ``/metrics`` reports of every connector's shared state."""
    return [
        ConnectorSample(
            name=view.name,
            rate=view.rate_per_second,
            concurrency=view.concurrency,
            circuit_state=CIRCUIT_STATE_VALUES[view.circuit.state],
            failures=view.circuit.failures,
        )
        for view in list_connectors(store, known)
    ]


def _view(name: str, stored: StoredLimits, circuit: Circuit | None) -> ConnectorView:
    circuit = circuit or Circuit()
    return ConnectorView(
        name=name,
        rate_per_second=stored.limits.rate_per_second,
        concurrency=stored.limits.concurrency,
        updated_at=stored.updated_at,
        revision=stored.revision,
        circuit=CircuitView(
            state=circuit.state,
            failures=circuit.failures,
            opened_at=iso_from_epoch(circuit.opened_at) if circuit.opened_at is not None else None,
        ),
    )


# --- a tenant's own cap on a connector ----------------------------------------------------------


class TenantCapBody(BaseModel):
    """A tenant's own cap on a connector, on top of the connector's limits: at least one of the two."""

    model_config = ConfigDict(extra="forbid")

    rate_per_second: (
        Annotated[float, Field(strict=True, ge=MIN_RATE_PER_SECOND, le=MAX_RATE_PER_SECOND)] | None
    ) = Field(
        default=None,
        description="Calls of this tenant that may start per second, across every process (a whole "
        "number from 1, or a fraction below 1); null = no rate cap of its own.",
    )
    concurrency: Annotated[int, Field(strict=True, ge=1, le=MAX_CONCURRENCY)] | None = Field(
        default=None,
        description="Calls of this tenant that may be in flight at once; null = no concurrency cap of its own.",
    )


class TenantCapView(BaseModel):
    name: str = Field(description="The connector or remote target.")
    tenant_id: str
    rate_per_second: float | None = Field(description="null: no rate cap of its own.")
    concurrency: int | None = Field(description="null: no concurrency cap of its own.")
    updated_at: str
    updated_by: str = Field(description="The subject of the token that last set it.")
    revision: int


def list_tenant_caps(
    store: Store, *, name: str | None = None, tenant_id: str | None = None
) -> list[TenantCapView]:
    with store.read() as uow:
        caps = uow.connectors.list_tenant_caps(tenant_id=tenant_id)
    return [_cap_view(cap) for cap in caps if name is None or cap.name == name]


def put_tenant_cap(
    store: Store,
    clock: Clock,
    name: str,
    tenant_id: str,
    body: TenantCapBody,
    *,
    by: str,
    lower_only: bool,
) -> TenantCapView:
    """Store a tenant's cap on a connector; every process applies it at its next admission.
    ``lower_only`` (a tenant's own admin): refused unless each part is at most the stored one."""
    cap = validated_limits(name, body.rate_per_second, body.concurrency)
    if not _TENANT.match(tenant_id):
        raise Invalid("a tenant id is 1-128 letters, digits or _ . : @ -", code="INVALID_TENANT_ID")
    if cap.unlimited:
        raise Invalid(
            "a tenant's cap needs rate_per_second or concurrency (to remove one, DELETE it)",
            code="EMPTY_TENANT_CAP",
        )
    with store.write() as uow:
        if lower_only:
            _check_lowers(uow.connectors.tenant_cap(name, tenant_id), cap)
        stored = uow.connectors.put_tenant_cap(name, tenant_id, cap, now=clock.now_iso(), by=by)
    return _cap_view(stored)


def delete_tenant_cap(store: Store, name: str, tenant_id: str) -> None:
    with store.write() as uow:
        if not uow.connectors.delete_tenant_cap(name, tenant_id):
            raise NotFound(f"tenant {tenant_id} has no cap of its own on {name}", code="TENANT_CAP_NOT_FOUND")


def _check_lowers(current: ConnectorLimits | None, wanted: ConnectorLimits) -> None:
    """A tenant's own admin may tighten its cap, never loosen it (nor lift a part of it)."""
    if current is None:
        return  # any cap on a tenant without one only lowers what it may do
    for part, now, then in (
        ("rate_per_second", current.rate_per_second, wanted.rate_per_second),
        ("concurrency", current.concurrency, wanted.concurrency),
    ):
        if now is not None and (then is None or then > now):
            raise Forbidden(
                f"a tenant admin may only lower its tenant's {part} (now {now:g}); raising or "
                "removing it needs platform:admin",
                code="TENANT_CAP_RAISE_FORBIDDEN",
            )


def _cap_view(cap: TenantCap) -> TenantCapView:
    return TenantCapView(
        name=cap.name,
        tenant_id=cap.tenant_id,
        rate_per_second=cap.cap.rate_per_second,
        concurrency=cap.cap.concurrency,
        updated_at=cap.updated_at,
        updated_by=cap.updated_by,
        revision=cap.revision,
    )
