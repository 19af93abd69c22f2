"""Alembic environment: always run in-process on a connection the Catalog hands over."""

from __future__ import annotations

from alembic import context

from avidence.server.catalog.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `avidence-server migrate`, not the alembic command")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
