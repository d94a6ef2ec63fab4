"""fulfill: executes approved AI-agent actions exactly once, through an MCP tool gateway."""

__version__ = "0.1.0"
