"""The audit chain's hash algorithm: each entry names it (NULL: SHA-256, as every entry written
before there was a choice), and the head row names the one the next entry uses, so a `gm`
deployment chains with SM3 after an audited switch.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"


def upgrade() -> None:
    for table in ("audit_log", "audit_head"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("hash_algorithm", sa.String(16), nullable=True))


def downgrade() -> None:
    for table in ("audit_head", "audit_log"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("hash_algorithm")
