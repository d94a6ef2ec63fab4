"""Connectors: one module per external system, each tool paired with its compensation."""
