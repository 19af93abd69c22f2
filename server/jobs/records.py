"""Catalog records of media work: the probe and continuity report, and the derivatives.

`playable_copy` is what the viewer asks: "is there a copy of this evidence a browser can play,
and what is it?" It answers with the derivative's record (key, type, size, digests, provenance
and the scrub's verdict on it), or None while the original has no such copy (not yet made, not
media, or failed), in which case the viewer falls back to the original.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..catalog.connect import connected
from ..catalog.schema import derivatives, media

PLAYABLE_ROLES = ("playable",)


@dataclass(slots=True, frozen=True)
class Derivative:
    """One stored derivative object and how it was made."""

    id: str
    evidence_id: str
    job_id: str
    profile: str
    role: str
    angle: int
    storage_key: str
    content_type: str
    size: int
    blake3: str
    sha256: str
    source_blake3: str
    source_sha256: str | None
    command: list[str]
    ffmpeg_version: str
    details: dict[str, Any]
    created_at: datetime
    integrity: str = "unchecked"  # "ok" or "failed" once a scrub has re-read the copy
    checked_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["created_at"] = _iso(self.created_at)
        data["checked_at"] = _iso(self.checked_at) if self.checked_at is not None else None
        data["command_line"] = " ".join(_quote(a) for a in self.command)
        return data


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _quote(arg: str) -> str:
    safe = arg and all(c.isalnum() or c in "-_.:/+=,@%" for c in arg)
    return arg if safe else "'" + arg.replace("'", "'\\''") + "'"


_COLUMNS = [f.name for f in fields(Derivative)]


def new_derivative_id() -> str:
    return "dv_" + secrets.token_hex(12)


async def insert_derivative(conn: AsyncConnection, record: Derivative) -> None:
    await conn.execute(derivatives.insert().values({n: getattr(record, n) for n in _COLUMNS}))


async def derivatives_of(engine: AsyncEngine, evidence_id: str) -> list[Derivative]:
    query = (
        sa.select(derivatives)
        .where(derivatives.c.evidence_id == evidence_id)
        .order_by(derivatives.c.profile, derivatives.c.angle, derivatives.c.storage_key)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_record(r) for r in rows]


def _record(row: Any) -> Derivative:
    return Derivative(**{n: getattr(row, n) for n in _COLUMNS})


async def recorded_keys(engine: AsyncEngine, keys: list[str]) -> set[str]:
    """Which of `keys` belong to a recorded derivative (the others are leftovers)."""
    if not keys:
        return set()
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(derivatives.c.storage_key).where(derivatives.c.storage_key.in_(keys))
        )
        return {str(k) for k in rows.scalars()}


async def playable_copy(
    engine: AsyncEngine | AsyncConnection, evidence_id: str, *, angle: int = 0
) -> Derivative | None:
    """The browser-playable copy of an original, or None.

    `angle` picks the video stream of a multi-angle recording (0 is the first). When several
    profiles made playable copies, the first made wins (normally the built-in `mp4-h264`)."""
    return await _first_derivative(engine, evidence_id, roles=PLAYABLE_ROLES, angle=angle)


async def poster_derivative(
    engine: AsyncEngine | AsyncConnection, evidence_id: str
) -> tuple[str, str] | None:
    """(storage key, content type) of the poster frame the viewer shows before playing."""
    found = await _first_derivative(engine, evidence_id, roles=("poster",), angle=0)
    return (found.storage_key, found.content_type) if found is not None else None


async def _first_derivative(
    engine: AsyncEngine | AsyncConnection, evidence_id: str, *, roles: tuple[str, ...], angle: int
) -> Derivative | None:
    query = (
        sa.select(derivatives)
        .where(
            derivatives.c.evidence_id == evidence_id,
            derivatives.c.role.in_(roles),
            derivatives.c.angle == angle,
        )
        .order_by(derivatives.c.created_at, derivatives.c.id)
        .limit(1)
    )
    async with connected(engine) as conn:
        row = (await conn.execute(query)).first()
    return _record(row) if row is not None else None


async def playable_derivative(
    engine: AsyncEngine | AsyncConnection, evidence_id: str, *, angle: int = 0
) -> tuple[str, str] | None:
    """(storage key, content type) of the playable copy (`playable_copy`), or None."""
    found = await playable_copy(engine, evidence_id, angle=angle)
    return (found.storage_key, found.content_type) if found is not None else None


async def save_media(
    conn: AsyncConnection,
    evidence_id: str,
    *,
    probe: dict[str, Any],
    continuity: dict[str, Any] | None,
    ffprobe_version: str,
    at: datetime,
) -> None:
    """Record the analysis; a repeated analysis (a retried job) replaces the earlier one."""
    await conn.execute(media.delete().where(media.c.evidence_id == evidence_id))
    await conn.execute(
        media.insert().values(
            evidence_id=evidence_id,
            probe=probe,
            continuity=continuity,
            ffprobe_version=ffprobe_version,
            analysed_at=at,
        )
    )


async def media_of(engine: AsyncEngine, evidence_id: str) -> dict[str, Any] | None:
    """{"probe", "continuity", "ffprobe_version", "analysed_at"} or None before analysis."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(sa.select(media).where(media.c.evidence_id == evidence_id))
        ).first()
    if row is None:
        return None
    return {
        "probe": row.probe,
        "continuity": row.continuity,
        "ffprobe_version": row.ffprobe_version,
        "analysed_at": row.analysed_at.isoformat().replace("+00:00", "Z"),
    }
