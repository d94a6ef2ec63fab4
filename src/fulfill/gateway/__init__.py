"""The MCP tool gateway (server side) and the engine's MCP client."""
