"""Alembic environment: runs migrations on the engine fulfill hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from fulfill.store.tables import metadata

engine = context.config.attributes.get("engine")
if not isinstance(engine, Engine):
    raise RuntimeError("run migrations through fulfill (fulfill migrate), which supplies the engine")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
