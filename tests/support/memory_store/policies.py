"""``uow.policies`` in memory: every version of every policy, keyed (owner, policy_id, version)."""

from __future__ import annotations

from fulfill.domain.policies import Policy, PolicyVersion, evaluation_order
from tests.support.memory_store.tables import Tables


class MemoryPoliciesRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def _versions(self, tenant_id: str | None, policy_id: str) -> list[PolicyVersion]:
        found = [
            (version, stored)
            for (owner, pid, version), stored in self._t.policies.items()
            if owner == tenant_id and pid == policy_id
        ]
        return [stored for _, stored in sorted(found, key=lambda item: item[0])]

    def insert_version(self, policy: Policy, *, deleted_at: str | None = None) -> bool:
        key = (policy.tenant_id, policy.policy_id, policy.version)
        if key in self._t.policies:
            return False
        self._t.policies[key] = PolicyVersion(policy, deleted_at)
        return True

    def get_current(self, tenant_id: str | None, policy_id: str) -> Policy | None:
        versions = self._versions(tenant_id, policy_id)
        if not versions or versions[-1].deleted_at is not None:
            return None
        return versions[-1].policy

    def list_versions(self, tenant_id: str | None, policy_id: str) -> list[PolicyVersion]:
        return self._versions(tenant_id, policy_id)

    def list_effective(self, tenant_id: str) -> list[Policy]:
        ids = {(owner, pid) for (owner, pid, _) in self._t.policies if owner in (tenant_id, None)}
        current = (self.get_current(owner, pid) for owner, pid in ids)
        return evaluation_order(policy for policy in current if policy is not None)
