"""Agencies, cases, transfers between agencies, webhooks; agency columns on existing tables.

Existing tokens, uploads, evidence and tickets belong to the default agency, and each case
number already used becomes a case of that agency, so an upgraded one-box server works as before.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from avidence.server.catalog.schema import UTCDateTime

revision = "0005"
down_revision = "0004"

DEFAULT = "agc_default"


def _agency_column() -> sa.Column[str]:
    return sa.Column("agency_id", sa.String(32), nullable=False, server_default=DEFAULT)


def upgrade() -> None:
    agencies = op.create_table(
        "agencies",
        sa.Column("id", sa.String(32)),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_agencies"),
        sa.UniqueConstraint("name", name="uq_agencies_name"),
    )
    now = datetime.now(UTC)
    op.bulk_insert(agencies, [{"id": DEFAULT, "name": "default", "created_at": now}])
    for table in ("tokens", "uploads", "evidence", "tickets"):
        op.add_column(table, _agency_column())
    op.create_index("ix_evidence_agency_id", "evidence", ["agency_id"])
    cases = op.create_table(
        "cases",
        sa.Column("id", sa.String(32)),
        sa.Column("agency_id", sa.String(32), nullable=False),
        sa.Column("number", sa.String(128), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cases"),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"], name="fk_cases_agency_id"),
        sa.UniqueConstraint("agency_id", "number", name="uq_cases_agency_id"),
    )
    case_agencies = op.create_table(
        "case_agencies",
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("agency_id", sa.String(32), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("case_id", "agency_id", name="pk_case_agencies"),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name="fk_case_agencies_case_id"),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"], name="fk_case_agencies_agency_id"),
    )
    case_evidence = op.create_table(
        "case_evidence",
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("evidence_id", sa.String(32), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("case_id", "evidence_id", name="pk_case_evidence"),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name="fk_case_evidence_case_id"),
        sa.ForeignKeyConstraint(
            ["evidence_id"], ["evidence.id"], name="fk_case_evidence_evidence_id"
        ),
    )
    op.create_index("ix_case_evidence_evidence_id", "case_evidence", ["evidence_id"])
    op.create_table(
        "holdings",
        sa.Column("agency_id", sa.String(32), nullable=False),
        sa.Column("evidence_id", sa.String(32), nullable=False),
        sa.Column("transfer_id", sa.String(32), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("acquired_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("agency_id", "evidence_id", name="pk_holdings"),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"], name="fk_holdings_agency_id"),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"], name="fk_holdings_evidence_id"),
    )
    op.create_index("ix_holdings_evidence_id", "holdings", ["evidence_id"])
    op.create_table(
        "transfers",
        sa.Column("id", sa.String(32)),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("from_agency", sa.String(32), nullable=False),
        sa.Column("to_agency", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("reason", sa.Text()),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("acknowledgement", sa.JSON()),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("decided_by", sa.String(200)),
        sa.Column("decided_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_transfers"),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name="fk_transfers_case_id"),
        sa.ForeignKeyConstraint(["from_agency"], ["agencies.id"], name="fk_transfers_from_agency"),
        sa.ForeignKeyConstraint(["to_agency"], ["agencies.id"], name="fk_transfers_to_agency"),
    )
    op.create_index("ix_transfers_case_id", "transfers", ["case_id"])
    op.create_index("ix_transfers_to_agency", "transfers", ["to_agency", "state"])
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(32)),
        sa.Column("agency_id", sa.String(32), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_webhooks"),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"], name="fk_webhooks_agency_id"),
    )
    op.create_index("ix_webhooks_agency_id", "webhooks", ["agency_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(32)),
        sa.Column("webhook_id", sa.String(32), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("last_status", sa.Integer()),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhooks.id"], name="fk_webhook_deliveries_webhook_id"
        ),
    )
    op.create_index("ix_webhook_deliveries_webhook_id", "webhook_deliveries", ["webhook_id"])
    op.create_index(
        "ix_webhook_deliveries_state", "webhook_deliveries", ["state", "next_attempt_at"]
    )
    _cases_for_existing_evidence(cases, case_agencies, case_evidence, now)


def _cases_for_existing_evidence(
    cases: sa.Table, case_agencies: sa.Table, case_evidence: sa.Table, now: datetime
) -> None:
    """Each case number evidence already carries becomes a case of the default agency."""
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, case_id FROM evidence ORDER BY received_at")).all()
    ids: dict[str, str] = {}
    for evidence_id, number in rows:
        if number not in ids:
            ids[number] = "case_" + secrets.token_hex(12)
            bind.execute(
                cases.insert().values(
                    id=ids[number],
                    agency_id=DEFAULT,
                    number=number,
                    title="",
                    status="open",
                    created_at=now,
                )
            )
            bind.execute(
                case_agencies.insert().values(case_id=ids[number], agency_id=DEFAULT, since=now)
            )
        bind.execute(
            case_evidence.insert().values(
                case_id=ids[number], evidence_id=evidence_id, added_at=now
            )
        )


def downgrade() -> None:
    for table in (
        "webhook_deliveries",
        "webhooks",
        "transfers",
        "holdings",
        "case_evidence",
        "case_agencies",
        "cases",
    ):
        op.drop_table(table)
    op.drop_index("ix_evidence_agency_id", "evidence")
    # A plain DROP COLUMN (SQLite 3.35+ has it): batch mode would re-create tables that
    # others reference, which SQLite refuses while foreign keys are enforced.
    for table in ("tickets", "evidence", "uploads", "tokens"):
        op.drop_column(table, "agency_id")
    op.drop_table("agencies")
