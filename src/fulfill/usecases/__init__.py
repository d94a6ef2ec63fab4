"""Application use cases: what the API and the CLI do, without HTTP or terminal concerns."""
