"""What the storage holds and how it grows: bytes and counts by case, class, uploader and
store, derivatives, daily growth, and the uploads that never finished.

Abandoned uploads are cleaned up by the tus upkeep (`upload_expiry`); here they are counted:
`pending_cleanup` are past their expiry but not yet aborted, `expired` were aborted already.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..catalog.schema import derivatives, evidence, evidence_retention, tokens, uploads
from .records import Clock, utcnow

_STORED = sa.or_(evidence_retention.c.state.is_(None), evidence_retention.c.state != "purged")


def _base() -> sa.Select[Any]:
    return (
        sa.select(sa.func.count().label("count"), sa.func.coalesce(sa.func.sum(evidence.c.size), 0))
        .select_from(evidence)
        .outerjoin(evidence_retention, evidence_retention.c.evidence_id == evidence.c.id)
    )


async def _grouped(conn: AsyncConnection, column: Any, *, limit: int) -> list[dict[str, Any]]:
    query = (
        _base()
        .add_columns(column.label("key"))
        .where(_STORED)
        .group_by(column)
        .order_by(sa.func.sum(evidence.c.size).desc(), column)
        .limit(limit)
    )
    return [
        {"key": row.key if row.key is not None else "", "count": int(row[0]), "bytes": int(row[1])}
        for row in (await conn.execute(query)).all()
    ]


async def _uploaders(conn: AsyncConnection, *, limit: int) -> list[dict[str, Any]]:
    rows = await _grouped(conn, evidence.c.uploader, limit=limit)
    found = await conn.execute(sa.select(tokens.c.id, tokens.c.name))
    names = {str(row.id): str(row.name) for row in found.all()}
    return [{**row, "name": names.get(row["key"], "")} for row in rows]


async def _growth(conn: AsyncConnection, *, since: Any) -> list[dict[str, Any]]:
    """Evidence received per UTC day; bucketed here so SQLite and PostgreSQL agree."""
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    query = sa.select(evidence.c.received_at, evidence.c.size).where(
        evidence.c.received_at >= since
    )
    result = await conn.stream(query.execution_options(yield_per=5000))
    async for received_at, size in result:
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
                uploads.c.state == "receiving",
                sa.or_(uploads.c.expires_at.is_(None), uploads.c.expires_at >= now),
            ),
        ),
        (
            "pending_cleanup",
            (uploads.c.state.in_(("receiving", "complete")), uploads.c.expires_at < now),
        ),
        ("expired", (uploads.c.state == "expired",)),
        ("quarantined", (uploads.c.state == "quarantined",)),
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
        by_state = {
            (row.key or "active"): {"count": int(row[0]), "bytes": int(row[1])}
            for row in (
                await conn.execute(
                    _base()
                    .add_columns(evidence_retention.c.state.label("key"))
                    .group_by(evidence_retention.c.state)
                )
            ).all()
        }
        derived = (
            await conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(derivatives.c.size), 0))
                .select_from(derivatives)
                .outerjoin(
                    evidence_retention,
                    evidence_retention.c.evidence_id == derivatives.c.evidence_id,
                )
                .where(_STORED)
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
            "by_case": await _grouped(conn, evidence.c.case_id, limit=limit),
            "by_class": await _grouped(conn, evidence_retention.c.class_name, limit=limit),
            "by_uploader": await _uploaders(conn, limit=limit),
            "by_store": await _grouped(conn, evidence.c.store, limit=limit),
            "growth": await _growth(conn, since=since),
            "uploads": await _uploads(conn, now=now),
        }
