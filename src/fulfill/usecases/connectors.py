"""Operating flow control: every connector's limits and circuit breaker (``platform:admin``).

A connector, or a remote target, is named by the part of its tools' names before the first dot.
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
from fulfill.domain.time import iso_from_epoch
from fulfill.metrics import ConnectorSample
from fulfill.store import connectors
from fulfill.store.db import Database
from fulfill.usecases.errors import Invalid

_NAME = re.compile(CONNECTOR_NAME_PATTERN)


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


def list_connectors(db: Database, known: Iterable[str]) -> list[ConnectorView]:
    """Every connector this service knows of (its tools' prefixes) or has stored state for."""
    with db.read() as conn:
        limits = connectors.list_limits(conn)
        circuits = connectors.list_circuits(conn)
    names = sorted(set(known) | set(limits) | set(circuits))
    return [
        _view(name, limits.get(name) or connectors.StoredLimits(ConnectorLimits()), circuits.get(name))
        for name in names
    ]


def put_limits(db: Database, clock: Clock, name: str, body: ConnectorLimitsBody) -> ConnectorView:
    """Store a connector's limits; every process applies them at its next admission."""
    limits = validated_limits(name, body.rate_per_second, body.concurrency)
    with db.write() as conn:
        stored = connectors.put_limits(conn, name, limits, now=clock.now_iso())
        circuit = connectors.get_circuit(conn, name)
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


def samples(db: Database, known: Iterable[str]) -> list[ConnectorSample]:
    """What ``/metrics`` reports of every connector's shared state."""
    return [
        ConnectorSample(
            name=view.name,
            rate=view.rate_per_second,
            concurrency=view.concurrency,
            circuit_state=CIRCUIT_STATE_VALUES[view.circuit.state],
            failures=view.circuit.failures,
        )
        for view in list_connectors(db, known)
    ]


def _view(name: str, stored: connectors.StoredLimits, circuit: Circuit | None) -> ConnectorView:
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
