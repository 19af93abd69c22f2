"""Catalog records of media work: the probe and continuity report, and the derivatives.

`playable_derivative` is what the viewer asks: "is there a copy of this evidence a browser can
play, and where is it?" It answers with a storage key and a content type, or None while the
original has no such copy (not yet made, not media, or failed), in which case the viewer can
fall back to the original.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["created_at"] = self.created_at.isoformat().replace("+00:00", "Z")
        data["command_line"] = " ".join(_quote(a) for a in self.command)
        return data


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
    return [Derivative(**{n: getattr(r, n) for n in _COLUMNS}) for r in rows]


async def recorded_keys(engine: AsyncEngine, keys: list[str]) -> set[str]:
    """Which of `keys` belong to a recorded derivative (the others are leftovers)."""
    if not keys:
        return set()
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(derivatives.c.storage_key).where(derivatives.c.storage_key.in_(keys))
        )
        return {str(k) for k in rows.scalars()}


async def playable_derivative(
    engine: AsyncEngine, evidence_id: str, *, angle: int = 0
) -> tuple[str, str] | None:
    """(storage key, content type) of the browser-playable copy of an original, or None.

    `angle` picks the video stream of a multi-angle recording (0 is the first). When several
    profiles made playable copies, the first made wins (normally the built-in `mp4-h264`)."""
    return await _first_derivative(engine, evidence_id, roles=PLAYABLE_ROLES, angle=angle)


async def poster_derivative(engine: AsyncEngine, evidence_id: str) -> tuple[str, str] | None:
    """(storage key, content type) of the poster frame the viewer shows before playing."""
    return await _first_derivative(engine, evidence_id, roles=("poster",), angle=0)


async def _first_derivative(
    engine: AsyncEngine, evidence_id: str, *, roles: tuple[str, ...], angle: int
) -> tuple[str, str] | None:
    query = (
        sa.select(derivatives.c.storage_key, derivatives.c.content_type)
        .where(
            derivatives.c.evidence_id == evidence_id,
            derivatives.c.role.in_(roles),
            derivatives.c.angle == angle,
        )
        .order_by(derivatives.c.created_at, derivatives.c.id)
        .limit(1)
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return (str(row.storage_key), str(row.content_type)) if row is not None else None


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
