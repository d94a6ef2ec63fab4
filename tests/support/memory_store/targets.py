"""``uow.targets`` in memory (``fulfill.store.targets``): gateway targets, the catalog revision and
the marks of calls to targets that do not deduplicate. Target secrets are not held in memory."""

from __future__ import annotations

from fulfill.domain.ports import ToolCallOutcome
from fulfill.domain.records import RemoteCallMark
from fulfill.domain.targets import GatewayTarget
from tests.support.memory_store.tables import Tables


class MemoryTargetsRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def get_target(self, name: str) -> GatewayTarget | None:
        target: GatewayTarget | None = self._t.targets.get(name)
        return target

    def list_targets(self) -> list[GatewayTarget]:
        return [self._t.targets[name] for name in sorted(self._t.targets)]

    def insert_target(self, target: GatewayTarget) -> bool:
        if target.name in self._t.targets:
            return False
        self._t.targets[target.name] = target
        self._t.catalog_revision += 1
        return True

    def replace_target(self, target: GatewayTarget) -> bool:
        if target.name not in self._t.targets:
            return False
        self._t.targets[target.name] = target
        self._t.catalog_revision += 1
        return True

    def delete_target(self, name: str, *, now: str) -> bool:
        if self._t.targets.pop(name, None) is None:
            return False
        self._t.catalog_revision += 1
        return True

    def catalog_revision(self) -> int:
        return self._t.catalog_revision

    def touch_catalog(self, now: str) -> None:
        self._t.catalog_revision += 1

    def get_secret(self, target_name: str) -> dict[str, str] | None:
        raise NotImplementedError("the in-memory store holds no target secrets")

    def put_secret(self, target_name: str, secret: dict[str, str], *, now: str) -> None:
        raise NotImplementedError("the in-memory store holds no target secrets")

    def all_secrets(self) -> dict[str, dict[str, str]]:
        return {}

    def reseal_secret(self, target_name: str, *, old: dict[str, str], new: dict[str, str], now: str) -> bool:
        raise NotImplementedError("the in-memory store holds no target secrets")

    def secret_key_ids_by_target(self) -> dict[str, str]:
        return {}

    def delete_secret(self, target_name: str) -> None:
        return None

    # --- marks of calls to targets that do not deduplicate -----------------------------------

    def get_remote_call(
        self, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
    ) -> RemoteCallMark | None:
        mark: RemoteCallMark | None = self._t.remote_calls.get(
            (tenant_id, account_id, action_intent_id, attempt_count)
        )
        return mark

    def mark_remote_call(
        self,
        *,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        attempt_count: int,
        tool_name: str,
        idempotency_key: str,
        now: str,
    ) -> bool:
        key = (tenant_id, account_id, action_intent_id, attempt_count)
        if key in self._t.remote_calls:
            return False
        self._t.remote_calls[key] = RemoteCallMark(tool_name, idempotency_key, None)
        return True

    def settle_remote_call(
        self,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        attempt_count: int,
        answer: ToolCallOutcome,
    ) -> None:
        key = (tenant_id, account_id, action_intent_id, attempt_count)
        mark = self._t.remote_calls.get(key)
        if mark is not None:
            self._t.remote_calls[key] = RemoteCallMark(mark.tool_name, mark.idempotency_key, answer)

    def clear_remote_call(
        self, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
    ) -> None:
        self._t.remote_calls.pop((tenant_id, account_id, action_intent_id, attempt_count), None)
