"""Searching the evidence an agency may see: by case, item, filename, uploader, owner, kind,
metadata field, time received, retention state and integrity, and lookup by digest ("do we
already hold this recording?"). Pages are keyset pages, newest first: the cursor carries the
last row's (received_at, id), so page 1,000 costs what page 1 costs and rows received while a
clerk pages through never shift or repeat what was shown."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..catalog.connect import connected
from ..catalog.schema import evidence, evidence_retention
from ..catalog.schema_exchange import case_evidence
from ..digits import decimal
from ..failures import Code, DomainError
from ..retention.records import purged_evidence
from .records import Db, Evidence, from_row, visible_to

if TYPE_CHECKING:
    from ..tokens import Principal

DIGESTS = ("blake3", "sha256", "sm3")
STATES = ("active", "deleted", "purged", "any")
INTEGRITY = ("unchecked", "ok", "failed")
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
# Exact-match filters on columns of the record, by query parameter.
_COLUMNS = {"item": "item", "filename": "filename", "uploader": "uploader", "agency": "agency_id"}
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_META = re.compile(r"meta\.([A-Za-z0-9_-]{1,64})")


class SearchError(DomainError):
    default_code = Code.INVALID


@dataclass(slots=True)
class Query:
    """A parsed search; `case_id` is the global case id (the handler resolves a number)."""

    case: str | None = None
    case_id: str | None = None
    equals: dict[str, str] = field(default_factory=dict)  # column name -> value
    filename_prefix: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # kind and meta.<field>
    received_after: datetime | None = None
    received_before: datetime | None = None
    state: str = "stored"  # active or deleted: what the agency still holds
    integrity: str | None = None
    digests: dict[str, str] = field(default_factory=dict)
    limit: int = DEFAULT_LIMIT
    after: tuple[datetime, str] | None = None


def _utc(moment: datetime) -> datetime:
    """`moment` in UTC (a naive one is taken as UTC). The catalog binds UTC: a time that has
    none, like 9999-12-31T23:59:59-14:00, raised OverflowError there and answered 500; a naive
    cursor raised ValueError. OverflowError here becomes the caller's 400."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _moment(name: str, text: str) -> datetime:
    try:
        return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except (ValueError, OverflowError):
        raise SearchError(f"{name}: an ISO 8601 time, e.g. 2026-12-06T03:00:00Z") from None


def encode_cursor(record: Evidence) -> str:
    raw = json.dumps([record.received_at.isoformat(), record.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(text: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        moment, last = json.loads(raw)
        return _utc(datetime.fromisoformat(moment)), str(last)
    except (binascii.Error, ValueError, TypeError, OverflowError):
        raise SearchError("after: a cursor from a previous page's `next`") from None


def parse(params: Mapping[str, str]) -> Query:
    """A Query from the request's parameters; SearchError names the first bad one."""
    query = Query()
    for name, value in params.items():
        if name == "case":
            query.case = value.strip()
        elif name in _COLUMNS:
            query.equals[_COLUMNS[name]] = value
        elif name == "filename_prefix":
            query.filename_prefix = value
        elif name == "kind":
            query.metadata["kind"] = value
        elif (meta := _META.fullmatch(name)) is not None:
            query.metadata[meta.group(1)] = value
        elif name == "received_after":
            query.received_after = _moment(name, value)
        elif name == "received_before":
            query.received_before = _moment(name, value)
        elif name == "state":
            if value not in STATES:
                raise SearchError(f"state: one of {', '.join(STATES)}")
            query.state = value
        elif name == "integrity":
            if value not in INTEGRITY:
                raise SearchError(f"integrity: one of {', '.join(INTEGRITY)}")
            query.integrity = value
        elif name in DIGESTS:
            if not _HEX64.fullmatch(value):
                raise SearchError(f"{name}: 64 hexadecimal digits")
            query.digests[name] = value.lower()
        elif name == "limit":
            limit = decimal(value)
            if limit is None or not 1 <= limit <= MAX_LIMIT:
                raise SearchError(f"limit: a number from 1 to {MAX_LIMIT}")
            query.limit = limit
        elif name == "after":
            query.after = _cursor(value)
        else:
            raise SearchError(
                f"unknown parameter {name!r}: search by case, item, filename, filename_prefix, "
                "uploader, agency, kind, meta.<field>, received_after, received_before, state, "
                "integrity, blake3, sha256 or sm3 (limit, after to page)"
            )
    return query


def _where(query: Query, principal: Principal) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = [visible_to(principal.agency_id)]
    if principal.role == "uploader":
        clauses.append(evidence.c.uploader == principal.token_id)
    if query.case_id is not None:
        members = sa.select(case_evidence.c.evidence_id).where(
            case_evidence.c.case_id == query.case_id
        )
        clauses.append(evidence.c.id.in_(members))
    clauses += [evidence.c[column] == value for column, value in query.equals.items()]
    if query.filename_prefix:
        escaped = re.sub(r"([\\%_])", r"\\\1", query.filename_prefix)
        clauses.append(evidence.c.filename.like(escaped + "%", escape="\\"))
    clauses += [
        evidence.c.metadata[name].as_string() == value for name, value in query.metadata.items()
    ]
    if query.received_after is not None:
        clauses.append(evidence.c.received_at >= query.received_after)
    if query.received_before is not None:
        clauses.append(evidence.c.received_at < query.received_before)
    if query.integrity is not None:
        clauses.append(evidence.c.integrity == query.integrity)
    clauses += [evidence.c[name] == value for name, value in query.digests.items()]
    state = evidence_retention.c.state
    kept = sa.select(evidence_retention.c.evidence_id)
    if query.state == "stored":
        clauses.append(~purged_evidence(evidence.c.id))
    elif query.state == "active":
        clauses.append(evidence.c.id.not_in(kept.where(state != "active")))
    elif query.state != "any":
        clauses.append(evidence.c.id.in_(kept.where(state == query.state)))
    if query.after is not None:
        moment, last = query.after
        clauses.append(
            sa.or_(
                evidence.c.received_at < moment,
                sa.and_(evidence.c.received_at == moment, evidence.c.id < last),
            )
        )
    return clauses


async def search(db: Db, principal: Principal, query: Query) -> tuple[list[Evidence], str | None]:
    """One page of matching records, newest first, and the cursor of the next page (or None)."""
    select = (
        sa.select(evidence)
        .where(*_where(query, principal))
        .order_by(evidence.c.received_at.desc(), evidence.c.id.desc())
        .limit(query.limit + 1)
    )
    async with connected(db) as conn:
        rows = (await conn.execute(select)).all()
    found = [from_row(row) for row in rows[: query.limit]]
    more = len(rows) > query.limit
    return found, encode_cursor(found[-1]) if more and found else None


def describe() -> dict[str, Any]:
    """The parameters, for the OpenAPI document."""
    return {
        "case": "case id or number (the caller's agency)",
        "item": "item label, exact",
        "filename": "file name, exact",
        "filename_prefix": "file name starts with",
        "uploader": "uploader token id",
        "agency": "owning agency id",
        "kind": "evidence kind (metadata `kind`)",
        "meta.<field>": "a metadata field, exact",
        "received_after": "ISO 8601, inclusive",
        "received_before": "ISO 8601, exclusive",
        "state": "active, deleted, purged or any (default: active and deleted)",
        "integrity": "unchecked, ok or failed",
        "blake3": "digest, 64 hex digits",
        "sha256": "digest, 64 hex digits",
        "sm3": "digest, 64 hex digits",
        "limit": f"page size, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT})",
        "after": "the previous page's `next` cursor",
    }
