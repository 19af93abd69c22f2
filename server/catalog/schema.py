"""Tables of the catalog (SQLAlchemy Core), the source of truth for the Alembic migrations.

Times are timezone-aware UTC everywhere; `UTCDateTime` keeps them so on SQLite, which stores no
zone. A test compares this module with the migrated database so the two cannot drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored as UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime()),
    Column("revoked_at", UTCDateTime()),
    Column("last_used_at", UTCDateTime()),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("length", BigInteger()),  # None while the length is deferred
    Column("offset", BigInteger(), nullable=False, default=0),
    Column("metadata", JSON(), nullable=False),
    Column("concat", String(8), nullable=False, default=""),  # "", "partial" or "final"
    Column("parts", JSON()),  # ids of the partial uploads of a final upload
    Column("store", String(16), nullable=False),
    Column("storage_key", String(512), nullable=False),
    Column("store_handle", String(1024), nullable=False, default=""),
    Column("digests", JSON()),  # algorithm -> hex, once known
    Column("uploader", String(32), ForeignKey("tokens.id"), nullable=False),
    Column("evidence_id", String(32)),
    Column("error", Text()),
    Column("lock_owner", String(64)),
    Column("lock_until", UTCDateTime()),
    Column("lock_wanted", String(64)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime()),
    Index("ix_uploads_state_expires", "state", "expires_at"),
)

evidence = Table(
    "evidence",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("upload_id", String(32), ForeignKey("uploads.id"), nullable=False, unique=True),
    Column("case_id", String(128), nullable=False, index=True),
    Column("item", String(128), nullable=False, default=""),
    Column("filename", String(255), nullable=False, default=""),
    Column("filetype", String(128), nullable=False, default=""),
    Column("size", BigInteger(), nullable=False),
    Column("blake3", String(64), nullable=False, index=True),
    Column("sha256", String(64)),
    Column("sm3", String(64)),
    Column("uploader", String(32), ForeignKey("tokens.id"), nullable=False),
    Column("store", String(16), nullable=False),
    Column("storage_key", String(512), nullable=False, unique=True),
    Column("metadata", JSON(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("integrity", String(16), nullable=False, default="unchecked"),
    Column("checked_at", UTCDateTime()),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    Column("public_key_pem", Text(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

receipts = Table(
    "receipts",
    metadata,
    Column("evidence_id", String(32), ForeignKey("evidence.id"), primary_key=True),
    Column("key_id", String(32), ForeignKey("signing_keys.id"), nullable=False),
    Column("document", JSON(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# Append-only: no code path updates or deletes a row. Each row's `hash` covers its content and
# the previous row's hash; `prev_hash` is unique, so two writers cannot both extend one head.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger(), primary_key=True, autoincrement=False),
    Column("time", UTCDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("object", String(200), nullable=False),
    Column("case_id", String(128), index=True),
    Column("details", JSON(), nullable=False),
    Column("client", String(64)),
    Column("prev_hash", String(64), nullable=False, unique=True),
    Column("hash", String(64), nullable=False, unique=True),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger(), primary_key=True, autoincrement=False),
    Column("head_hash", String(64), nullable=False),
    Column("count", BigInteger(), nullable=False),
    Column("time", UTCDateTime(), nullable=False),
    Column("document", JSON(), nullable=False),
)
