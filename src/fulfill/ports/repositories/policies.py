"""Approval policies, every version kept: the repository port (``store/policies.py`` implements it over SQL).

``tenant_id`` None names the platform's policies (they apply to every tenant).
"""

from __future__ import annotations

from typing import Protocol

from fulfill.domain.policies import Policy, PolicyVersion


class PoliciesRepository(Protocol):
    def insert_version(self, policy: Policy, *, deleted_at: str | None = ...) -> bool:
        """Insert exactly this version of the policy and make it the current one; False (and nothing
        changed) when that version is already taken."""
        ...

    def get_current(self, tenant_id: str | None, policy_id: str) -> Policy | None:
        """The current version of a live policy of ``tenant_id`` (None: of the platform); None when
        there is no such policy or it was deleted."""
        ...

    def list_versions(self, tenant_id: str | None, policy_id: str) -> list[PolicyVersion]:
        """Every version of a policy of ``tenant_id`` (None: of the platform), oldest first; the
        deletion, if any, last."""
        ...

    def list_effective(self, tenant_id: str) -> list[Policy]:
        """The current version of every live policy of the tenant and of the platform, in evaluation
        order: the tenant's by (priority, policy_id), then the platform's."""
        ...
