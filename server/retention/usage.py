"""What the storage holds and how it grows: bytes and counts by case, class, agency, uploader
and store, derivatives, daily growth, and the uploads that never finished.

Abandoned uploads are cleaned up by the tus upkeep (`upload_expiry`); here they are counted:
`pending_cleanup` are past their expiry but not yet aborted, `expired` were aborted already.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..catalog.schema import derivatives, evidence_retention, tokens, uploads
from ..catalog.schema_exchange import agencies
from ..catalog.uploads import UploadState
from ..evidence import tallies
from .records import Clock, utcnow


def _top(shares: list[tallies.Share], key: str, *, limit: int) -> list[dict[str, Any]]:
    """Count and bytes per value of `key` over stored originals, largest first."""
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for share in shares:
        if share.state != "purged":
            counts[getattr(share, key)] += share.count
            sizes[getattr(share, key)] += share.bytes
    ordered = sorted(counts, key=lambda k: (-sizes[k], k))[:limit]
    return [{"key": k, "count": counts[k], "bytes": sizes[k]} for k in ordered]


async def _named(
    conn: AsyncConnection, shares: list[tallies.Share], key: str, names_of: sa.Table, *, limit: int
) -> list[dict[str, Any]]:
    """`_top` by uploader token or owning agency, each row with its name from `names_of`
    (an agency's holdings of others' items are not its bytes)."""
    rows = _top(shares, key, limit=limit)
    found = await conn.execute(sa.select(names_of.c.id, names_of.c.name))
    names = {str(row.id): str(row.name) for row in found.all()}
    return [{**row, "name": names.get(row["key"], "")} for row in rows]


async def _growth(conn: AsyncConnection, *, since: Any) -> list[dict[str, Any]]:
    """Evidence received per UTC day; bucketed here so SQLite and PostgreSQL agree."""
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    async for received_at, size in tallies.received_since(conn, since):
        day = received_at.date().isoformat()
        counts[day] += 1
        sizes[day] += size
    return [{"day": d, "count": counts[d], "bytes": sizes[d]} for d in sorted(counts)]


async def _uploads(conn: AsyncConnection, *, now: Any) -> dict[str, Any]:
    def summary(*conditions: Any) -> sa.Select[Any]:
        return sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(uploads.c.offset), 0)).where(
            *conditions
        )

    out: dict[str, Any] = {}
    for name, conditions in (
        (
            "open",
            (
                uploads.c.state == UploadState.RECEIVING,
                sa.or_(uploads.c.expires_at.is_(None), uploads.c.expires_at >= now),
            ),
        ),
        (
            "pending_cleanup",
            (
                uploads.c.state.in_((UploadState.RECEIVING, UploadState.COMPLETE)),
                uploads.c.expires_at < now,
            ),
        ),
        ("expired", (uploads.c.state == UploadState.EXPIRED,)),
        ("quarantined", (uploads.c.state == UploadState.QUARANTINED,)),
    ):
        count, size = (await conn.execute(summary(*conditions))).one()
        out[name] = {"count": int(count), "bytes_received": int(size)}
    return out


async def report(
    engine: AsyncEngine, *, days: int = 30, limit: int = 50, clock: Clock = utcnow
) -> dict[str, Any]:
    """The whole usage report as JSON-ready data (the CLI prints it, the API returns it)."""
    now = clock()
    since = (now - timedelta(days=max(days - 1, 0))).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    async with engine.connect() as conn:
        shares = await tallies.shares(conn)
        by_state: dict[str, dict[str, int]] = {}
        for share in shares:
            tally = by_state.setdefault(share.state or "active", {"count": 0, "bytes": 0})
            tally["count"] += share.count
            tally["bytes"] += share.bytes
        derived = (
            await conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(derivatives.c.size), 0))
                .select_from(derivatives)
                .outerjoin(
                    evidence_retention,
                    evidence_retention.c.evidence_id == derivatives.c.evidence_id,
                )
                .where(tallies.STORED)
            )
        ).one()
        stored = {
            "count": sum(v["count"] for k, v in by_state.items() if k != "purged"),
            "bytes": sum(v["bytes"] for k, v in by_state.items() if k != "purged"),
        }
        return {
            "generated_at": now.isoformat().replace("+00:00", "Z"),
            "originals": stored,
            "derivatives": {"count": int(derived[0]), "bytes": int(derived[1])},
            "by_state": by_state,
            "by_case": _top(shares, "case", limit=limit),
            "by_class": _top(shares, "class_name", limit=limit),
            "by_agency": await _named(conn, shares, "agency", agencies, limit=limit),
            "by_uploader": await _named(conn, shares, "uploader", tokens, limit=limit),
            "by_store": _top(shares, "store", limit=limit),
            "growth": await _growth(conn, since=since),
            "uploads": await _uploads(conn, now=now),
        }
