"""``uow.probes`` in memory: not held. The steps and use cases tested in memory do not touch the
reconcile probes; every method says so when called."""

from __future__ import annotations

from fulfill.domain.probes import DueProbe, ProbeRecord

_NOT_HELD = "the in-memory store does not hold reconcile probes"


class MemoryProbesRepository:
    def __init__(self, tables: object) -> None:
        self._t = tables

    def due_probes(self, *, now_epoch: float, first_after_seconds: float, limit: int) -> list[DueProbe]:
        raise NotImplementedError(_NOT_HELD)

    def claim_probe(self, due: DueProbe, *, lease_until_epoch: float, now: str) -> bool:
        raise NotImplementedError(_NOT_HELD)

    def record_probe(
        self,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        attempt_count: int,
        record: ProbeRecord,
        *,
        now: str,
    ) -> None:
        raise NotImplementedError(_NOT_HELD)

    def get_probe(
        self, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
    ) -> ProbeRecord | None:
        raise NotImplementedError(_NOT_HELD)

    def resent_before(self, tenant_id: str, account_id: str, action_intent_id: str) -> bool:
        raise NotImplementedError(_NOT_HELD)
