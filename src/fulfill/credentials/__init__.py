"""Credentials of outbound connectors: encrypted at rest, exchanged for access tokens on demand."""
