"""Data keys: the wrapped key of every sealed object, kept outside the bucket.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from avidence.server.catalog.schema import UTCDateTime

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("storage_key", sa.String(512), nullable=False),
        sa.Column("suite", sa.String(16), nullable=False),
        sa.Column("segment_size", sa.Integer(), nullable=False),
        sa.Column("object_id", sa.String(32), nullable=False),
        sa.Column("kek_id", sa.String(64), nullable=False),
        sa.Column("wrapped", sa.Text(), nullable=False),
        sa.Column("stored_size", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("storage_key", name="pk_data_keys"),
    )
    op.create_index("ix_data_keys_kek_id", "data_keys", ["kek_id"])


def downgrade() -> None:
    op.drop_index("ix_data_keys_kek_id", table_name="data_keys")
    op.drop_table("data_keys")
