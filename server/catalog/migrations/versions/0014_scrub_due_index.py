"""The scrub's choice of what is due reads an index: never-checked first, then the longest
unchecked, oldest received first, so choosing the next 100 of a million records does not sort
the table (measured by bench/catalog.py: 373 ms at 1M records before, growing with the table).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"

NAME = "ix_evidence_scrub_due"


def upgrade() -> None:
    # The scrub orders NULLS FIRST; PostgreSQL's default for ASC is NULLS LAST, SQLite's is first.
    op.create_index(
        NAME,
        "evidence",
        ["checked_at", "received_at", "id"],
        postgresql_ops={"checked_at": "NULLS FIRST"},
    )


def downgrade() -> None:
    op.drop_index(NAME, table_name="evidence")
