"""Local stand-ins for the external systems fulfill writes to (tests, demos, development)."""
