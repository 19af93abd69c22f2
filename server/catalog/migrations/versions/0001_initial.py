"""Tokens, uploads and evidence.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from avidence.server.catalog.schema import UTCDateTime

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime()),
        sa.Column("revoked_at", UTCDateTime()),
        sa.Column("last_used_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_tokens"),
        sa.UniqueConstraint("secret_hash", name="uq_tokens_secret_hash"),
    )
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(32)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("length", sa.BigInteger()),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("concat", sa.String(8), nullable=False),
        sa.Column("parts", sa.JSON()),
        sa.Column("store", sa.String(16), nullable=False),
        sa.Column("storage_key", sa.String(512), nullable=False),
        sa.Column("store_handle", sa.String(1024), nullable=False),
        sa.Column("digests", sa.JSON()),
        sa.Column("uploader", sa.String(32), nullable=False),
        sa.Column("evidence_id", sa.String(32)),
        sa.Column("error", sa.Text()),
        sa.Column("lock_owner", sa.String(64)),
        sa.Column("lock_until", UTCDateTime()),
        sa.Column("lock_wanted", sa.String(64)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_uploads"),
        sa.ForeignKeyConstraint(["uploader"], ["tokens.id"], name="fk_uploads_uploader"),
    )
    op.create_index("ix_uploads_state_expires", "uploads", ["state", "expires_at"])
    op.create_table(
        "evidence",
        sa.Column("id", sa.String(32)),
        sa.Column("upload_id", sa.String(32), nullable=False),
        sa.Column("case_id", sa.String(128), nullable=False),
        sa.Column("item", sa.String(128), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("filetype", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("blake3", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("sm3", sa.String(64)),
        sa.Column("uploader", sa.String(32), nullable=False),
        sa.Column("store", sa.String(16), nullable=False),
        sa.Column("storage_key", sa.String(512), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_evidence"),
        sa.ForeignKeyConstraint(["upload_id"], ["uploads.id"], name="fk_evidence_upload_id"),
        sa.ForeignKeyConstraint(["uploader"], ["tokens.id"], name="fk_evidence_uploader"),
        sa.UniqueConstraint("upload_id", name="uq_evidence_upload_id"),
        sa.UniqueConstraint("storage_key", name="uq_evidence_storage_key"),
    )
    op.create_index("ix_evidence_case_id", "evidence", ["case_id"])
    op.create_index("ix_evidence_blake3", "evidence", ["blake3"])


def downgrade() -> None:
    op.drop_table("evidence")
    op.drop_table("uploads")
    op.drop_table("tokens")
