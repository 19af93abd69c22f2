"""Schedules: which replica runs a periodic round (the integrity scrub) in each period.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from avidence.server.catalog.schema import UTCDateTime

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(64)),
        sa.Column("next_at", UTCDateTime(), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("schedules")
