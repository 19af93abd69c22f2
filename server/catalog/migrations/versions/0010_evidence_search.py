"""Evidence search: indexes for keyset pages (newest first, per agency or uploader) and for
lookups by digest and file name, so a search stays fast at millions of records; and the audit
log by object, which a custody timeline reads (without it, a full scan of the log).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"

INDEXES = {
    "ix_evidence_received": ["received_at", "id"],
    "ix_evidence_agency_received": ["agency_id", "received_at", "id"],
    "ix_evidence_uploader_received": ["uploader", "received_at", "id"],
    "ix_evidence_sha256": ["sha256"],
    "ix_evidence_sm3": ["sm3"],
    "ix_evidence_filename": ["filename"],
}


AUDIT_INDEX = ("ix_audit_log_object", ["object", "seq"])


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "evidence", columns)
    op.create_index(AUDIT_INDEX[0], "audit_log", AUDIT_INDEX[1])


def downgrade() -> None:
    op.drop_index(AUDIT_INDEX[0], table_name="audit_log")
    for name in INDEXES:
        op.drop_index(name, table_name="evidence")
