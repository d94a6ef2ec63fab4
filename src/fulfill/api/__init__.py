"""The HTTP API (FastAPI): intents, events, execution status, health and metrics."""
