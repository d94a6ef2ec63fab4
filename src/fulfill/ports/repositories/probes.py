"""``uow.probes``: the reconcile probes of AMBIGUOUS attempts (``store/probes.py``)."""

from __future__ import annotations

from typing import Protocol

from fulfill.domain.probes import DueProbe, ProbeRecord


class ProbesRepository(Protocol):
    def due_probes(self, *, now_epoch: float, first_after_seconds: float, limit: int) -> list[DueProbe]: ...

    def claim_probe(self, due: DueProbe, *, lease_until_epoch: float, now: str) -> bool: ...

    def record_probe(
        self,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        attempt_count: int,
        record: ProbeRecord,
        *,
        now: str,
    ) -> None: ...

    def get_probe(
        self, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
    ) -> ProbeRecord | None: ...

    def resent_before(self, tenant_id: str, account_id: str, action_intent_id: str) -> bool: ...
