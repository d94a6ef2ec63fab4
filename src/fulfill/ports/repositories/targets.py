"""Stored gateway targets, the catalog revision, target secrets and remote call marks: the repository port (``store/targets.py`` implements it over SQL)."""

from __future__ import annotations

from typing import Protocol

from fulfill.domain.ports import ToolCallOutcome
from fulfill.domain.records import RemoteCallMark
from fulfill.domain.targets import GatewayTarget


class TargetsRepository(Protocol):
    def get_target(self, name: str) -> GatewayTarget | None: ...

    def list_targets(self) -> list[GatewayTarget]: ...

    def insert_target(self, target: GatewayTarget) -> bool:
        """Insert a new target; False when the name is taken."""
        ...

    def replace_target(self, target: GatewayTarget) -> bool:
        """Store a re-discovered target; False when it no longer exists."""
        ...

    def delete_target(self, name: str, *, now: str) -> bool: ...

    def catalog_revision(self) -> int: ...

    def touch_catalog(self, now: str) -> None:
        """Make every process reload its targets (e.g. after a target's secret was stored)."""
        ...

    def get_secret(self, target_name: str) -> dict[str, str] | None: ...

    def put_secret(self, target_name: str, secret: dict[str, str], *, now: str) -> None: ...

    def all_secrets(self) -> dict[str, dict[str, str]]:
        """Every stored target secret (still sealed), by target name."""
        ...

    def reseal_secret(self, target_name: str, *, old: dict[str, str], new: dict[str, str], now: str) -> bool:
        """Replace a sealed secret only if it is still the one that was read: the row is locked
        first, so a secret put meanwhile is never overwritten with the old one resealed."""
        ...

    def secret_key_ids_by_target(self) -> dict[str, str]:
        """Each target with a stored secret, and the id of the key that sealed it."""
        ...

    def delete_secret(self, target_name: str) -> None: ...

    def get_remote_call(
        self, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
    ) -> RemoteCallMark | None: ...

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
        """Write the mark before sending; False when one exists already (a call was in flight)."""
        ...

    def settle_remote_call(
        self,
        tenant_id: str,
        account_id: str,
        action_intent_id: str,
        attempt_count: int,
        answer: ToolCallOutcome,
    ) -> None: ...

    def clear_remote_call(
        self, tenant_id: str, account_id: str, action_intent_id: str, attempt_count: int
    ) -> None:
        """The call was not sent (refused before it left): the next try may send it."""
        ...
