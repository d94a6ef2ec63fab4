"""Pure rules and records: no I/O and nothing of fulfill outside this package (.importlinter)."""
