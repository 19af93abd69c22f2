"""Retention classes per evidence record, legal holds, tombstones and quotas.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from avidence.server.catalog.schema import UTCDateTime

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "evidence_retention",
        sa.Column("evidence_id", sa.String(32)),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("retain_until", UTCDateTime()),
        sa.Column("lock_mode", sa.String(16), nullable=False),
        sa.Column("locked_until", UTCDateTime()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("deleted_at", UTCDateTime()),
        sa.Column("purge_attempts", sa.Integer(), nullable=False),
        sa.Column("purge_after", UTCDateTime()),
        sa.Column("purge_error", sa.Text()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("evidence_id", name="pk_evidence_retention"),
        sa.ForeignKeyConstraint(
            ["evidence_id"], ["evidence.id"], name="fk_evidence_retention_evidence_id"
        ),
    )
    op.create_index("ix_evidence_retention_state", "evidence_retention", ["state", "retain_until"])
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.String(32)),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("released_at", UTCDateTime()),
        sa.Column("released_by", sa.String(200)),
        sa.Column("release_reason", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_legal_holds"),
    )
    op.create_index("ix_legal_holds_scope", "legal_holds", ["scope", "target"])
    op.create_table(
        "tombstones",
        sa.Column("evidence_id", sa.String(32)),
        sa.Column("case_id", sa.String(128), nullable=False),
        sa.Column("item", sa.String(128), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("blake3", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("sm3", sa.String(64)),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("objects", sa.JSON(), nullable=False),
        sa.Column("deleted_by", sa.String(200), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("restored_at", UTCDateTime()),
        sa.Column("restored_by", sa.String(200)),
        sa.Column("purged_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("evidence_id", name="pk_tombstones"),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"], name="fk_tombstones_evidence_id"),
    )
    op.create_index("ix_tombstones_case_id", "tombstones", ["case_id"])
    op.create_table(
        "quotas",
        sa.Column("scope", sa.String(64)),
        sa.Column("max_bytes", sa.BigInteger()),
        sa.Column("max_upload", sa.BigInteger()),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name="pk_quotas"),
    )


def downgrade() -> None:
    op.drop_table("quotas")
    op.drop_index("ix_tombstones_case_id", "tombstones")
    op.drop_table("tombstones")
    op.drop_index("ix_legal_holds_scope", "legal_holds")
    op.drop_table("legal_holds")
    op.drop_index("ix_evidence_retention_state", "evidence_retention")
    op.drop_table("evidence_retention")
