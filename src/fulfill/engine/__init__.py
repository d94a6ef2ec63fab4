"""The execution engine: the durable workflow, its steps, intake, outbox relay and reconciler."""
