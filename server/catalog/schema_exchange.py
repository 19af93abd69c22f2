"""Tables for agencies, cases, transfers between agencies and webhooks (issue 7).

Kept apart from `schema.py` so the exchange between agencies reads as one piece; `schema.py`
imports this module, so the tables share its metadata and the migration drift test sees them.
Agency columns on existing tables (tokens, uploads, evidence, tickets) live in `schema.py` and
default to the default agency, so a one-box set-up never has to name one.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from .schema import UTCDateTime, metadata

DEFAULT_AGENCY = "agc_default"

agencies = Table(
    "agencies",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

# A case as one agency numbers it; `id` is the global id every agency uses for it.
cases = Table(
    "cases",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("agency_id", String(32), ForeignKey("agencies.id"), nullable=False),
    Column("number", String(128), nullable=False),
    Column("title", String(300), nullable=False, default=""),
    Column("status", String(16), nullable=False),  # open, closed
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("agency_id", "number", name="uq_cases_agency_id"),
)

# The agencies that hold a case: its owner, and each agency that acknowledged a transfer of it.
case_agencies = Table(
    "case_agencies",
    metadata,
    Column("case_id", String(32), ForeignKey("cases.id"), nullable=False),
    Column("agency_id", String(32), ForeignKey("agencies.id"), nullable=False),
    Column("since", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("case_id", "agency_id"),
)

case_evidence = Table(
    "case_evidence",
    metadata,
    Column("case_id", String(32), ForeignKey("cases.id"), nullable=False),
    Column("evidence_id", String(32), ForeignKey("evidence.id"), nullable=False, index=True),
    Column("added_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("case_id", "evidence_id"),
)

# Evidence an agency holds without owning it: written when it acknowledges a transfer. `limits`
# are what the sender allowed (tickets, downloads, longest ticket) and bound what it may issue.
holdings = Table(
    "holdings",
    metadata,
    Column("agency_id", String(32), ForeignKey("agencies.id"), nullable=False),
    Column("evidence_id", String(32), ForeignKey("evidence.id"), nullable=False, index=True),
    Column("transfer_id", String(32), nullable=False),
    Column("limits", JSON(), nullable=False),
    Column("acquired_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("agency_id", "evidence_id"),
)

# `manifest` is the signed document as issued; `acknowledgement` the signed answer to it.
transfers = Table(
    "transfers",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("case_id", String(32), ForeignKey("cases.id"), nullable=False, index=True),
    Column("from_agency", String(32), ForeignKey("agencies.id"), nullable=False),
    Column("to_agency", String(32), ForeignKey("agencies.id"), nullable=False),
    Column("state", String(16), nullable=False),  # pending, acknowledged, rejected
    Column("note", Text()),
    Column("reason", Text()),
    Column("limits", JSON(), nullable=False),
    Column("manifest", JSON(), nullable=False),
    Column("acknowledgement", JSON()),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("decided_by", String(200)),
    Column("decided_at", UTCDateTime()),
    Index("ix_transfers_to_agency", "to_agency", "state"),
)

# The secret signs deliveries (HMAC), so the server keeps it; it is shown once, at creation.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("agency_id", String(32), ForeignKey("agencies.id"), nullable=False, index=True),
    Column("url", String(2000), nullable=False),
    Column("secret", String(100), nullable=False),
    Column("events", JSON(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("disabled_at", UTCDateTime()),
)

# The outbox: a delivery is written with the event, then sent (and retried) by a dispatcher, so
# an event is never lost to a receiver that is down or a server that restarts.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("webhook_id", String(32), ForeignKey("webhooks.id"), nullable=False, index=True),
    Column("event", String(64), nullable=False),
    Column("payload", JSON(), nullable=False),
    Column("state", String(16), nullable=False),  # pending, sending, delivered, failed
    Column("attempts", Integer(), nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_until", UTCDateTime()),
    Column("last_status", Integer()),
    Column("last_error", Text()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime()),
    Index("ix_webhook_deliveries_state", "state", "next_attempt_at"),
)
