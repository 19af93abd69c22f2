"""Derivatives are scrubbed like originals; a view has a time window and a byte budget.

`derivatives.integrity`/`checked_at` hold a scrub's verdict on each stored copy, as the evidence
row does for its original. `ticket_views` gains what one counted view allows: until when
(`expires_at`) and how many bytes (`byte_budget`), the bytes taken so far (`bytes_reserved`,
raised by one conditional UPDATE before bytes are sent, so replicas cannot overspend it), and
when and why it ended (`ended_at`, `end_reason`). Views started before this revision have no
budget (their grants ran out within 12 hours anyway).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from avidence.server.catalog.schema import UTCDateTime

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    with op.batch_alter_table("derivatives") as batch:
        batch.add_column(
            sa.Column("integrity", sa.String(16), nullable=False, server_default="unchecked")
        )
        batch.add_column(sa.Column("checked_at", UTCDateTime()))
    with op.batch_alter_table("ticket_views") as batch:
        batch.add_column(sa.Column("expires_at", UTCDateTime()))
        batch.add_column(sa.Column("byte_budget", sa.BigInteger()))
        batch.add_column(
            sa.Column("bytes_reserved", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("ended_at", UTCDateTime()))
        batch.add_column(sa.Column("end_reason", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("ticket_views") as batch:
        for name in ("end_reason", "ended_at", "bytes_reserved", "byte_budget", "expires_at"):
            batch.drop_column(name)
    with op.batch_alter_table("derivatives") as batch:
        batch.drop_column("checked_at")
        batch.drop_column("integrity")
