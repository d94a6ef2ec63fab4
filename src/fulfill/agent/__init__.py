"""The agent's front door: an MCP server at ``/agent/mcp`` where a tool call proposes an action."""
