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
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
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
    # issue 7: every token acts for one agency (no FK: SQLite cannot add one to a table)
    Column("agency_id", String(32), nullable=False, server_default="agc_default"),
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
    # A final upload: ids of its partials; a consumed partial: the id of the final that joined it.
    Column("parts", JSON()),
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
    Column("agency_id", String(32), nullable=False, server_default="agc_default"),
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
    # the owning agency (issue 7); others see it only through `holdings`
    Column("agency_id", String(32), nullable=False, server_default="agc_default", index=True),
    # evidence search (migration 0010): keyset pages newest first, lookups by digest and name
    Index("ix_evidence_received", "received_at", "id"),
    Index("ix_evidence_agency_received", "agency_id", "received_at", "id"),
    Index("ix_evidence_uploader_received", "uploader", "received_at", "id"),
    Index("ix_evidence_sha256", "sha256"),
    Index("ix_evidence_sm3", "sm3"),
    Index("ix_evidence_filename", "filename"),
    # the scrub's next due (migration 0014): never checked first, then the longest unchecked
    Index(
        "ix_evidence_scrub_due",
        "checked_at",
        "received_at",
        "id",
        postgresql_ops={"checked_at": "NULLS FIRST"},
    ),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    Column("public_key_pem", Text(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # The successor certificate its predecessor signed (`keys.history`); a cache, as the key is.
    Column("certificate", JSON(), nullable=True),
)

# Wrapped data keys of sealed objects (`storage.sealed`): outside the bucket, so that deleting a
# row destroys an object's key (crypto-shredding) even when Object Lock keeps its ciphertext.
data_keys = Table(
    "data_keys",
    metadata,
    Column("storage_key", String(512), primary_key=True),
    Column("suite", String(16), nullable=False),
    Column("segment_size", Integer(), nullable=False),
    Column("object_id", String(32), nullable=False),  # hex of the header's 16 random bytes
    Column("kek_id", String(64), nullable=False),
    Column("wrapped", Text(), nullable=False),  # base64 of nonce | wrapped key | tag
    Column("stored_size", BigInteger(), nullable=True),  # set when the object is finished
    Column("runs", Text(), nullable=True),  # base64 of a joined object's sealed run table
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_data_keys_kek_id", "kek_id"),
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
    # The chain hash (audit/entries.py): NULL for SHA-256, 'sm3' under the gm suite (0016).
    Column("hash_algorithm", String(16)),
    Index("ix_audit_log_object", "object", "seq"),  # custody timelines (migration 0010)
)

# The head of the chain in one row (id 1). An append updates it first, which locks it until the
# action's transaction commits: appends are serialised without retries, on SQLite and PostgreSQL.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=False),
    Column("seq", BigInteger(), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("hash_algorithm", String(16)),  # the next entry's chain hash (NULL: SHA-256)
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger(), primary_key=True, autoincrement=False),
    Column("head_hash", String(64), nullable=False),
    Column("count", BigInteger(), nullable=False),
    Column("time", UTCDateTime(), nullable=False),
    Column("document", JSON(), nullable=False),
    # Base64 DER of the RFC 3161 TimeStampResp over the document (audit/tsa.py); NULL until the
    # configured TSA answered.
    Column("timestamp_token", Text()),
)

# Access tickets: only the SHA-256 of the link token is stored, like bearer tokens. The evidence a
# ticket covers is fixed when it is issued (a case ticket does not grow with the case).
tickets = Table(
    "tickets",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("recipient", String(200), nullable=False),
    Column("note", Text()),
    Column("case_id", String(128)),
    Column("can_download", Boolean(), nullable=False),
    Column("max_views", Integer()),
    Column("views_used", Integer(), nullable=False, default=0),
    Column("access_code_hash", String(200)),  # scrypt of the 6-digit code, salted
    Column("code_failures", Integer(), nullable=False, default=0),
    Column("code_locked_until", UTCDateTime()),
    Column("issuer", String(200), nullable=False),
    Column("issuer_token", String(32), ForeignKey("tokens.id")),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
    Column("revoked_by", String(200)),
    Column("last_used_at", UTCDateTime()),
    Column("agency_id", String(32), nullable=False, server_default="agc_default"),
)

ticket_evidence = Table(
    "ticket_evidence",
    metadata,
    Column("ticket_id", String(32), ForeignKey("tickets.id"), nullable=False),
    Column("evidence_id", String(32), ForeignKey("evidence.id"), nullable=False, index=True),
    Column("position", Integer(), nullable=False),
    PrimaryKeyConstraint("ticket_id", "evidence_id"),
)

# One row per view session (a player started on one evidence item); bytes are added as the
# session's streams end, so the issuer can see what was watched without reading the audit log.
ticket_views = Table(
    "ticket_views",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("ticket_id", String(32), ForeignKey("tickets.id"), nullable=False, index=True),
    Column("evidence_id", String(32), ForeignKey("evidence.id"), nullable=False),
    Column("client", String(64)),
    Column("user_agent", String(300)),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("first_byte_at", UTCDateTime()),
    Column("last_byte_at", UTCDateTime()),
    Column("bytes_served", BigInteger(), nullable=False, default=0),
    Column("requests", Integer(), nullable=False, default=0),
    # What the view allows (server/tickets/allowance.py): a time window and a byte budget, taken
    # by conditional UPDATEs of `bytes_reserved` before bytes go out; None on older views.
    Column("expires_at", UTCDateTime()),
    Column("byte_budget", BigInteger()),
    Column("bytes_reserved", BigInteger(), nullable=False, default=0),
    Column("ended_at", UTCDateTime()),
    Column("end_reason", String(16)),  # "time" or "bytes"
)

# Media work queued for workers (see server/jobs/queue.py): one row per (evidence, kind,
# profile). A running job holds a lease its worker renews with every heartbeat; a lease that
# runs out means the worker died, and the job is claimed again. `staged` lists the upload
# targets a run has opened in the store, so the next run can remove what a dead one left.
jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("evidence_id", String(32), ForeignKey("evidence.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # "analyse" or "derive"
    Column("profile", String(64), nullable=False, default=""),
    Column("state", String(16), nullable=False),  # queued, running, done, failed
    Column("attempts", Integer(), nullable=False, default=0),
    Column("run_after", UTCDateTime(), nullable=False),
    Column("worker", String(128)),
    Column("lease_until", UTCDateTime()),
    Column("heartbeat_at", UTCDateTime()),
    Column("progress", JSON()),
    Column("staged", JSON()),
    Column("error", Text()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Index("ix_jobs_evidence_id", "evidence_id", "kind", "profile", unique=True),
    Index("ix_jobs_state_run_after", "state", "run_after"),
)

# What ffprobe says an original is, and its continuity report; written once by the analyse job.
media = Table(
    "media",
    metadata,
    Column("evidence_id", String(32), ForeignKey("evidence.id"), primary_key=True),
    Column("probe", JSON(), nullable=False),
    Column("continuity", JSON()),
    Column("ffprobe_version", String(100), nullable=False),
    Column("analysed_at", UTCDateTime(), nullable=False),
)

# Derivatives never replace an original: each is its own object, with the provenance needed to
# reproduce it (the source's digests, the exact command line and the ffmpeg version).
derivatives = Table(
    "derivatives",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("evidence_id", String(32), ForeignKey("evidence.id"), nullable=False, index=True),
    Column("job_id", String(32), ForeignKey("jobs.id"), nullable=False),
    Column("profile", String(64), nullable=False),
    Column("role", String(16), nullable=False),  # playable, playlist, segment, poster, sprite
    Column("angle", Integer(), nullable=False),
    Column("storage_key", String(512), nullable=False, unique=True),
    Column("content_type", String(100), nullable=False),
    Column("size", BigInteger(), nullable=False),
    Column("blake3", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("source_blake3", String(64), nullable=False),
    Column("source_sha256", String(64)),
    Column("command", JSON(), nullable=False),
    Column("ffmpeg_version", String(100), nullable=False),
    Column("details", JSON(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # A scrub's verdict on the stored copy, as `evidence.integrity` is on the original.
    Column("integrity", String(16), nullable=False, default="unchecked"),
    Column("checked_at", UTCDateTime()),
)

# Retention (server/retention/): one row per evidence record, written when the record is made.
# `retain_until` is None for classes kept forever. `state` moves active -> deleted (soft, still
# restorable, bytes kept) -> purged (bytes gone); `purge_after` backs off a purge the store
# refused (an S3 lock still running) so it is reported, not retried on every run.
evidence_retention = Table(
    "evidence_retention",
    metadata,
    Column("evidence_id", String(32), ForeignKey("evidence.id"), primary_key=True),
    Column("class_name", String(64), nullable=False),
    Column("retain_until", UTCDateTime()),
    Column("lock_mode", String(16), nullable=False, default=""),
    Column("locked_until", UTCDateTime()),
    Column("state", String(16), nullable=False, default="active"),
    Column("deleted_at", UTCDateTime()),
    Column("purge_attempts", Integer(), nullable=False, default=0),
    Column("purge_after", UTCDateTime()),
    Column("purge_error", Text()),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_evidence_retention_state", "state", "retain_until"),
)

# Legal holds on a whole case or one evidence record; lifted holds stay as history.
legal_holds = Table(
    "legal_holds",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("scope", String(16), nullable=False),  # "case" or "evidence"
    Column("target", String(128), nullable=False),
    Column("reason", Text(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("released_at", UTCDateTime()),
    Column("released_by", String(200)),
    Column("release_reason", Text()),
    Index("ix_legal_holds_scope", "scope", "target"),
)

# What remains of deleted evidence: enough to prove what existed, who deleted it, when and why.
tombstones = Table(
    "tombstones",
    metadata,
    Column("evidence_id", String(32), ForeignKey("evidence.id"), primary_key=True),
    Column("case_id", String(128), nullable=False, index=True),
    Column("item", String(128), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("size", BigInteger(), nullable=False),
    Column("blake3", String(64), nullable=False),
    Column("sha256", String(64)),
    Column("sm3", String(64)),
    Column("class_name", String(64), nullable=False),
    Column("objects", JSON(), nullable=False),  # [{key, role, size, blake3, sha256}]
    Column("deleted_by", String(200), nullable=False),
    Column("deleted_at", UTCDateTime(), nullable=False),
    Column("reason", Text(), nullable=False),
    Column("restored_at", UTCDateTime()),
    Column("restored_by", String(200)),
    Column("purged_at", UTCDateTime()),
)

# Storage quotas: scope "site" (this whole server) or "token:<token id>"; NULL means no limit.
quotas = Table(
    "quotas",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("max_bytes", BigInteger()),
    Column("max_upload", BigInteger()),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Periodic work that one replica of many should do per period (the integrity scrub): a replica
# runs a round only when it moved `next_at` forward itself (see server/schedules.py).
schedules = Table(
    "schedules",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("next_at", UTCDateTime(), nullable=False),
    Column("owner", String(128), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Agencies, cases, transfers and webhooks share this metadata (issue 7).
from . import schema_exchange as _exchange  # noqa: E402,F401
