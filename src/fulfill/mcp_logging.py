"""The MCP SDK's servers configure logging when they are built: ``logging.basicConfig`` with a Rich
handler at the server's level, which does nothing once the root logger has a handler (fulfill's,
from ``fulfill.logging_setup``) yet imports Rich's console first (~1.2 MiB resident in a server
process that never prints through it). Importing this module, as every module that builds an MCP
server does, leaves the configuration of logging to fulfill."""

from __future__ import annotations

import mcp.server.mcpserver.server as _mcp_server


def _leave_logging_to_fulfill(level: str = "INFO") -> None:
    """What an MCP server does to the process's logging when built: nothing (fulfill configures it)."""


_mcp_server.configure_logging = _leave_logging_to_fulfill  # type: ignore[attr-defined]
