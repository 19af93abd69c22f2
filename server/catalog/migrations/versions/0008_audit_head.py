"""The audit log's head in one row: every append takes its lock inside the action's transaction.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"

GENESIS = "0" * 64


def upgrade() -> None:
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    bind = op.get_bind()
    last = bind.execute(
        sa.text("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    ).first()
    op.bulk_insert(
        head, [{"id": 1, "seq": last.seq if last else 0, "hash": last.hash if last else GENESIS}]
    )


def downgrade() -> None:
    op.drop_table("audit_head")
