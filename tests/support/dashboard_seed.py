"""Executions, approvals and things waiting for a person, written straight into the store for the
dashboard's tests (two tenants with different numbers), with what was written to compare with."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import update

from fulfill.domain.errors import ErrorClass
from fulfill.domain.killswitch import KillSwitchScope, SwitchSettings
from fulfill.domain.ledger import tool_call_try_failed_entry, unknown_outcome_entry
from fulfill.domain.models import (
    ActionOutcomeV1,
    ApprovalStatus,
    AttemptStatus,
    ExecutionAttempt,
    ExecutionStatus,
)
from fulfill.domain.time import iso_from_epoch
from fulfill.store import executions, killswitches, outbox
from fulfill.store.tables import execution_attempts, execution_outcomes, outbox_deliveries
from tests.support.harness import Harness, seed_intent


@dataclass
class Seeded:
    """What was written for one tenant, to compare the dashboard with."""

    statuses_1h: dict[str, int] = field(default_factory=dict)
    statuses_24h: dict[str, int] = field(default_factory=dict)
    failures_1h: dict[str, int] = field(default_factory=dict)
    waits_1h: list[float] = field(default_factory=list)
    approval_to_outcome_1h: list[float] = field(default_factory=list)
    pending_ages: list[float] = field(default_factory=list)
    tool_1h: dict[str, list[float]] = field(default_factory=dict)  # connector → durations
    tool_errors_1h: dict[str, int] = field(default_factory=dict)
    retried_1h: dict[str, int] = field(default_factory=dict)
    intent_ids: list[str] = field(default_factory=list)


class Seeder:
    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.now = harness.service.clock.now()
        self.n = 0

    def _id(self, tenant: str) -> str:
        self.n += 1
        return f"{tenant}-dash-{self.n:03d}"

    def execution(
        self,
        seeded: Seeded,
        tenant: str,
        *,
        ago: float,
        status: ExecutionStatus,
        wait: float = 30.0,
        run: float = 2.0,
        tool: str = "internal.create_task",
        error_class: ErrorClass | None = None,
        error_code: str | None = None,
        account: str = "acc-1",
        attempt_status: AttemptStatus | None = None,
    ) -> str:
        """An intent created ``wait + run + ago`` seconds ago, approved ``wait`` later by a person,
        its first attempt running ``run`` seconds and recorded ``ago`` seconds ago."""
        intent_id = self._id(tenant)
        completed = self.now - ago
        approved = completed - run
        created = approved - wait
        seed_intent(
            self.harness,
            intent_id,
            tenant_id=tenant,
            account_id=account,
            approved_by="alice",
            approval_timestamp=iso_from_epoch(approved),
            created_at=iso_from_epoch(created),
            updated_at=iso_from_epoch(approved),
        )
        attempt = ExecutionAttempt(
            tenant_id=tenant,
            account_id=account,
            action_intent_id=intent_id,
            attempt_count=1,
            attempt_id=f"{intent_id}-a1",
            workflow_id=f"wf-{intent_id}",
            status=attempt_status or AttemptStatus(status.value),
            trace_id="trace",
            started_at=iso_from_epoch(approved),
            updated_at=iso_from_epoch(completed),
            completed_at=iso_from_epoch(completed),
        )
        outcome = ActionOutcomeV1(
            tenant_id=tenant,
            account_id=account,
            action_intent_id=intent_id,
            attempt_count=1,
            status=status,
            error_class=error_class,
            error_code=error_code,
            tool_name=tool,
            tool_run_ref="run",
            started_at=iso_from_epoch(approved),
            completed_at=iso_from_epoch(completed),
            trace_id="trace",
        )
        with self.harness.db.write() as conn:
            assert executions.insert_attempt(conn, attempt, deadline_epoch=approved + 300)
            assert executions.insert_outcome(conn, outcome)
            if error_code == "UNKNOWN_OUTCOME":
                assert executions.append_ledger(conn, unknown_outcome_entry(outcome))
        seeded.intent_ids.append(intent_id)
        if ago < 3600:
            seeded.statuses_1h[status.value] = seeded.statuses_1h.get(status.value, 0) + 1
            seeded.waits_1h.append(wait)
            seeded.approval_to_outcome_1h.append(run)
            if status is ExecutionStatus.FAILED:
                key = error_class.value if error_class else ""
                seeded.failures_1h[key] = seeded.failures_1h.get(key, 0) + 1
            if status in (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED):
                connector = tool.split(".")[0]
                seeded.tool_1h.setdefault(connector, []).append(run)
                if status is ExecutionStatus.FAILED:
                    seeded.tool_errors_1h[connector] = seeded.tool_errors_1h.get(connector, 0) + 1
        if ago < 86_400:
            seeded.statuses_24h[status.value] = seeded.statuses_24h.get(status.value, 0) + 1
        return intent_id

    def pending(
        self, seeded: Seeded, tenant: str, *, age: float, account: str = "acc-1", expired: bool = False
    ) -> str:
        """An intent waiting for approval since ``age`` seconds; ``expired``: its window ended a
        minute ago (it waits for nobody any more, and is not counted)."""
        intent_id = self._id(tenant)
        expiry = {"expires_at": iso_from_epoch(self.now - 60), "expires_at_epoch": int(self.now - 60)}
        seed_intent(
            self.harness,
            intent_id,
            tenant_id=tenant,
            account_id=account,
            approval_status=ApprovalStatus.PENDING_APPROVAL,
            approved_by=None,
            approval_timestamp=None,
            created_at=iso_from_epoch(self.now - age),
            updated_at=iso_from_epoch(self.now - age),
            **(expiry if expired else {}),
        )
        if not expired:
            seeded.pending_ages.append(age)
        return intent_id

    def retried_try(self, seeded: Seeded, tenant: str, intent_id: str, *, will_retry: bool) -> None:
        self.n += 1
        entry = tool_call_try_failed_entry(
            timestamp=iso_from_epoch(self.now - 100),
            tenant_id=tenant,
            account_id="acc-1",
            action_intent_id=intent_id,
            attempt=1,
            trace_id="trace",
            tool_name="crm.update_record",
            try_number=self.n,
            max_tries=None if will_retry else self.n,
            error_class="RATE_LIMIT",
            error_code="RATE_LIMIT",
            error_message="slow down",
        )
        with self.harness.db.write() as conn:
            assert executions.append_ledger(conn, entry)
        if will_retry:
            seeded.retried_1h["crm"] = seeded.retried_1h.get("crm", 0) + 1

    def dead_letter(self, tenant: str) -> None:
        self.n += 1
        message_id = f"msg-{tenant}-{self.n}"
        with self.harness.db.write() as conn:
            outbox.enqueue(
                conn,
                message_id=message_id,
                topic="execution.finished",
                tenant_id=tenant,
                payload={"x": 1},
                destinations=["webhook"],
                now=iso_from_epoch(self.now),
                now_epoch=self.now + 3600,
            )
            conn.execute(
                update(outbox_deliveries)
                .where(outbox_deliveries.c.message_id == message_id)
                .values(status="DEAD_LETTER", dead_lettered_at=iso_from_epoch(self.now))
            )


def seed_two_tenants(harness: Harness) -> tuple[dict[str, Seeded], dict[str, list[str]]]:
    """Two tenants with different executions, approvals, and things waiting for a person: what
    was written for each, and the ids of the executions that wait for a person (t1's)."""
    seeder = Seeder(harness)
    data = {"t1": Seeded(), "t2": Seeded()}
    special: dict[str, list[str]] = {"stuck": [], "unknown": [], "compensation": [], "expired": []}
    t1, t2 = data["t1"], data["t2"]
    # t1: 14 outcomes in the last hour, waits of 10..140 s, runs of 1..14 s, across two connectors
    plan = [
        (ExecutionStatus.SUCCEEDED, None, "internal.create_task"),
        (ExecutionStatus.SUCCEEDED, None, "internal.create_task"),
        (ExecutionStatus.FAILED, ErrorClass.DOWNSTREAM, "crm.update_record"),
        (ExecutionStatus.SUCCEEDED, None, "crm.update_record"),
        (ExecutionStatus.FAILED, ErrorClass.VALIDATION, "internal.create_task"),
        (ExecutionStatus.CANCELLED, None, "internal.create_task"),
        (ExecutionStatus.SUCCEEDED, None, "internal.create_task"),
        (ExecutionStatus.FAILED, ErrorClass.DOWNSTREAM, "crm.update_record"),
        (ExecutionStatus.EXPIRED, None, "internal.create_task"),
        (ExecutionStatus.SUCCEEDED, None, "crm.update_record"),
        (ExecutionStatus.SUCCEEDED, None, "internal.create_task"),
        (ExecutionStatus.FAILED, ErrorClass.TIMEOUT, "crm.update_record"),
        (ExecutionStatus.SUCCEEDED, None, "internal.create_task"),
        (ExecutionStatus.SUCCEEDED, None, "internal.create_task"),
    ]
    for i, (status, error_class, tool) in enumerate(plan):
        seeder.execution(
            t1,
            "t1",
            ago=60 + i * 200,
            status=status,
            wait=10.0 * (i + 1),
            run=1.0 + i,
            tool=tool,
            error_class=error_class,
            account="acc-1" if i % 2 == 0 else "acc-2",
        )
    # older ones: in the 24 h window only, and one past every window
    seeder.execution(t1, "t1", ago=5 * 3600, status=ExecutionStatus.FAILED, error_class=ErrorClass.AUTH)
    seeder.execution(t1, "t1", ago=8 * 86_400, status=ExecutionStatus.SUCCEEDED)
    # t1 waits for a person
    for age in (600, 2 * 3600, 3 * 86_400, 8 * 86_400):
        seeder.pending(t1, "t1", age=age)
    special["expired"] = [seeder.pending(t1, "t1", age=3 * 86_400, expired=True)]
    special["unknown"].append(
        seeder.execution(
            t1,
            "t1",
            ago=7200,
            status=ExecutionStatus.AMBIGUOUS,
            error_class=ErrorClass.UNKNOWN,
            error_code="UNKNOWN_OUTCOME",
            tool="tickets.close_ticket",
        )
    )
    stuck = seeder.execution(t1, "t1", ago=4000, status=ExecutionStatus.SUCCEEDED)
    with harness.db.write() as conn:  # its attempt never finished: still RUNNING past its deadline
        conn.execute(
            update(execution_attempts)
            .where(execution_attempts.c.action_intent_id == stuck)
            .values(status="RUNNING", completed_at=None)
        )
        conn.execute(
            update(execution_outcomes)
            .where(execution_outcomes.c.action_intent_id == stuck)
            .values(compensation_status="FAILED", compensation_retry_epoch=None)
        )
    special["stuck"].append(stuck)
    special["compensation"].append(stuck)
    seeder.retried_try(t1, "t1", special["unknown"][0], will_retry=True)
    seeder.retried_try(t1, "t1", special["unknown"][0], will_retry=True)
    seeder.retried_try(t1, "t1", special["unknown"][0], will_retry=False)
    seeder.dead_letter("t1")
    # t2: other numbers everywhere
    for i in range(5):
        seeder.execution(
            t2,
            "t2",
            ago=100 + i * 50,
            status=ExecutionStatus.FAILED if i == 0 else ExecutionStatus.SUCCEEDED,
            error_class=ErrorClass.RATE_LIMIT if i == 0 else None,
            wait=1000.0 + i,
            run=50.0,
            tool="mail.send",
        )
    seeder.pending(t2, "t2", age=30)
    seeder.dead_letter("t2")
    seeder.dead_letter("t2")
    with harness.db.write() as conn:
        killswitches.put_switches(
            conn,
            KillSwitchScope.of_tenant("t2"),
            SwitchSettings.from_fields(
                KillSwitchScope.of_tenant("t2"), {"execution_enabled": False, "disabled_action_types": []}
            ),
            now=iso_from_epoch(seeder.now),
        )
    return data, special
