"""Chain of custody: signing keys, receipts, the audit log and its checkpoints, scrub results.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from avidence.server.catalog.schema import UTCDateTime

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.String(32)),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_signing_keys"),
    )
    op.create_table(
        "receipts",
        sa.Column("evidence_id", sa.String(32)),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("evidence_id", name="pk_receipts"),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"], name="fk_receipts_evidence_id"),
        sa.ForeignKeyConstraint(["key_id"], ["signing_keys.id"], name="fk_receipts_key_id"),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object", sa.String(200), nullable=False),
        sa.Column("case_id", sa.String(128)),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("client", sa.String(64)),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
        sa.UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),
        sa.UniqueConstraint("hash", name="uq_audit_log_hash"),
    )
    op.create_index("ix_audit_log_case_id", "audit_log", ["case_id"])
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger(), autoincrement=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_checkpoints"),
    )
    with op.batch_alter_table("evidence") as batch:
        batch.add_column(
            sa.Column("integrity", sa.String(16), nullable=False, server_default="unchecked")
        )
        batch.add_column(sa.Column("checked_at", UTCDateTime()))


def downgrade() -> None:
    with op.batch_alter_table("evidence") as batch:
        batch.drop_column("checked_at")
        batch.drop_column("integrity")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_log")
    op.drop_table("receipts")
    op.drop_table("signing_keys")
