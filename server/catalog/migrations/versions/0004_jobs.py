"""Media jobs, probes with continuity reports, and derivatives with their provenance.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from avidence.server.catalog.schema import UTCDateTime

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32)),
        sa.Column("evidence_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", UTCDateTime(), nullable=False),
        sa.Column("worker", sa.String(128)),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("heartbeat_at", UTCDateTime()),
        sa.Column("progress", sa.JSON()),
        sa.Column("staged", sa.JSON()),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("finished_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"], name="fk_jobs_evidence_id"),
    )
    op.create_index("ix_jobs_evidence_id", "jobs", ["evidence_id", "kind", "profile"], unique=True)
    op.create_index("ix_jobs_state_run_after", "jobs", ["state", "run_after"])
    op.create_table(
        "media",
        sa.Column("evidence_id", sa.String(32)),
        sa.Column("probe", sa.JSON(), nullable=False),
        sa.Column("continuity", sa.JSON()),
        sa.Column("ffprobe_version", sa.String(100), nullable=False),
        sa.Column("analysed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("evidence_id", name="pk_media"),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"], name="fk_media_evidence_id"),
    )
    op.create_table(
        "derivatives",
        sa.Column("id", sa.String(32)),
        sa.Column("evidence_id", sa.String(32), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("angle", sa.Integer(), nullable=False),
        sa.Column("storage_key", sa.String(512), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("blake3", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("source_blake3", sa.String(64), nullable=False),
        sa.Column("source_sha256", sa.String(64)),
        sa.Column("command", sa.JSON(), nullable=False),
        sa.Column("ffmpeg_version", sa.String(100), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_derivatives"),
        sa.ForeignKeyConstraint(
            ["evidence_id"], ["evidence.id"], name="fk_derivatives_evidence_id"
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_derivatives_job_id"),
        sa.UniqueConstraint("storage_key", name="uq_derivatives_storage_key"),
    )
    op.create_index("ix_derivatives_evidence_id", "derivatives", ["evidence_id"])


def downgrade() -> None:
    op.drop_index("ix_derivatives_evidence_id", "derivatives")
    op.drop_table("derivatives")
    op.drop_table("media")
    op.drop_index("ix_jobs_state_run_after", "jobs")
    op.drop_index("ix_jobs_evidence_id", "jobs")
    op.drop_table("jobs")
