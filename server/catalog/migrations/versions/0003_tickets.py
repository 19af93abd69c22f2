"""Access tickets: the tickets, the evidence each covers, and their view sessions.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from avidence.server.catalog.schema import UTCDateTime

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.String(32)),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("case_id", sa.String(128)),
        sa.Column("can_download", sa.Boolean(), nullable=False),
        sa.Column("max_views", sa.Integer()),
        sa.Column("views_used", sa.Integer(), nullable=False),
        sa.Column("access_code_hash", sa.String(200)),
        sa.Column("code_failures", sa.Integer(), nullable=False),
        sa.Column("code_locked_until", UTCDateTime()),
        sa.Column("issuer", sa.String(200), nullable=False),
        sa.Column("issuer_token", sa.String(32)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime()),
        sa.Column("revoked_by", sa.String(200)),
        sa.Column("last_used_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_tickets"),
        sa.UniqueConstraint("token_hash", name="uq_tickets_token_hash"),
        sa.ForeignKeyConstraint(["issuer_token"], ["tokens.id"], name="fk_tickets_issuer_token"),
    )
    op.create_table(
        "ticket_evidence",
        sa.Column("ticket_id", sa.String(32), nullable=False),
        sa.Column("evidence_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id", "evidence_id", name="pk_ticket_evidence"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name="fk_ticket_evidence_ticket_id"),
        sa.ForeignKeyConstraint(
            ["evidence_id"], ["evidence.id"], name="fk_ticket_evidence_evidence_id"
        ),
    )
    op.create_index("ix_ticket_evidence_evidence_id", "ticket_evidence", ["evidence_id"])
    op.create_table(
        "ticket_views",
        sa.Column("id", sa.String(32)),
        sa.Column("ticket_id", sa.String(32), nullable=False),
        sa.Column("evidence_id", sa.String(32), nullable=False),
        sa.Column("client", sa.String(64)),
        sa.Column("user_agent", sa.String(300)),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("first_byte_at", UTCDateTime()),
        sa.Column("last_byte_at", UTCDateTime()),
        sa.Column("bytes_served", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ticket_views"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name="fk_ticket_views_ticket_id"),
        sa.ForeignKeyConstraint(
            ["evidence_id"], ["evidence.id"], name="fk_ticket_views_evidence_id"
        ),
    )
    op.create_index("ix_ticket_views_ticket_id", "ticket_views", ["ticket_id"])


def downgrade() -> None:
    op.drop_index("ix_ticket_views_ticket_id", "ticket_views")
    op.drop_table("ticket_views")
    op.drop_index("ix_ticket_evidence_evidence_id", "ticket_evidence")
    op.drop_table("ticket_evidence")
    op.drop_table("tickets")
