"""What the integrity scrub has found, for the admin API: counts by outcome, the last check,
the next periodic round, and every original whose last check failed.

Read from the evidence rows (`integrity`, `checked_at`) and the scrub's schedule, not from the
audit log: the log holds the details of each check, but scanning it for a summary would grow
with every check ever made.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..catalog.schema import evidence, schedules
from ..retention.records import purged_evidence

FAILURES_SHOWN = 200


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


async def summary(engine: AsyncEngine, *, interval: float) -> dict[str, Any]:
    """Originals still stored, by their last check's outcome; `interval` is the setting."""
    stored = ~purged_evidence(evidence.c.id)
    async with engine.connect() as conn:
        counts = {
            str(state): int(count)
            for state, count in (
                await conn.execute(
                    sa.select(evidence.c.integrity, sa.func.count())
                    .where(stored)
                    .group_by(evidence.c.integrity)
                )
            ).all()
        }
        last = (await conn.execute(sa.select(sa.func.max(evidence.c.checked_at)))).scalar()
        round_ = (
            await conn.execute(sa.select(schedules).where(schedules.c.name == "scrub"))
        ).first()
        failed = (
            await conn.execute(
                sa.select(
                    evidence.c.id,
                    evidence.c.case_id,
                    evidence.c.filename,
                    evidence.c.agency_id,
                    evidence.c.checked_at,
                )
                .where(evidence.c.integrity == "failed", stored)
                .order_by(evidence.c.checked_at.desc())
                .limit(FAILURES_SHOWN)
            )
        ).all()
    return {
        "counts": {k: counts.get(k, 0) for k in ("ok", "failed", "unchecked")},
        "last_checked_at": _iso(last),
        "scrub_interval": interval,
        "last_round_at": _iso(round_.updated_at) if round_ is not None else None,
        "next_round_at": _iso(round_.next_at) if round_ is not None and interval > 0 else None,
        "failures": [
            {
                "evidence_id": row.id,
                "case_id": row.case_id,
                "filename": row.filename,
                "agency": row.agency_id,
                "checked_at": _iso(row.checked_at),
            }
            for row in failed
        ],
    }
