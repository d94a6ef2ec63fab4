"""What a use case works with: the parts of the running service it reads, and nothing else.

The engine's runtime provides them (and so does anything else with these attributes: a test's
context, a CLI's). The HTTP edge receives this type from its typed dependencies
(:mod:`fulfill.api.deps`) and passes it on; it never reaches into the service itself.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

from fulfill.config import Settings
from fulfill.domain.ports import Clock
from fulfill.ports.store import Store


class UseCaseContext(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Store: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def tool_schemas(self) -> Mapping[str, dict[str, Any]]:
        """Input JSON schema of every tool the gateway serves, by tool name."""
        ...

    @property
    def outbox_wakeup(self) -> threading.Event:
        """Set to make the outbox relay deliver now instead of at its next poll."""
        ...

    def connector_names(self) -> set[str]:
        """Every connector (and remote target) whose tools this process's gateway serves."""
        ...
