"""Storage quotas per uploader token and for the whole site, checked when an upload is created.

Used bytes are the stored originals not purged plus what open uploads have declared (their
length, or the bytes received so far for deferred lengths), so a quota cannot be outrun by
starting many uploads at once. Two creations racing may both pass: the overshoot is bounded by
one upload each, which is the price of not locking every creation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..audit.events import QuotaSet
from ..audit.unit import unit_of_work
from ..catalog.schema import quotas, tokens, uploads
from ..catalog.uploads import ConcatKind, UploadState
from ..config import Settings
from ..errors import QuotaExceeded, QuotaUploadTooLarge
from ..evidence import tallies
from .records import Clock, iso, utcnow

# Quotas are stored in signed 64-bit columns (SQLite INTEGER, PostgreSQL BIGINT): a larger
# number failed in the driver and answered 500.
LARGEST = 2**63 - 1
OPEN_STATES = (UploadState.RECEIVING, UploadState.VERIFYING, UploadState.COMPLETE)


class QuotaError(ValueError):
    """A quota setting that cannot be stored; the message is for the admin."""


@dataclass(slots=True, frozen=True)
class Limit:
    """The effective limits of one scope and where they come from."""

    scope: str
    max_bytes: int | None
    max_upload: int | None
    source: str  # "catalog", "settings" or "none"

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "max_bytes": self.max_bytes,
            "max_upload": self.max_upload,
            "source": self.source,
        }


async def used_bytes(conn: AsyncConnection, *, uploader: str | None) -> int:
    """Bytes stored (not purged) plus bytes promised by open uploads, of one uploader or all."""
    pending = sa.select(
        sa.func.coalesce(sa.func.sum(sa.func.coalesce(uploads.c.length, uploads.c.offset)), 0)
    ).where(uploads.c.state.in_(OPEN_STATES), uploads.c.concat != ConcatKind.FINAL)
    if uploader is not None:
        pending = pending.where(uploads.c.uploader == uploader)
    stored = await tallies.stored_bytes(conn, uploader=uploader)
    return stored + int((await conn.execute(pending)).scalar() or 0)


async def limit_of(conn: AsyncConnection, settings: Settings, scope: str) -> Limit:
    row = (await conn.execute(sa.select(quotas).where(quotas.c.scope == scope))).first()
    if row is not None:
        return Limit(scope, row.max_bytes, row.max_upload, "catalog")
    default = settings.quota_site_bytes if scope == "site" else settings.quota_uploader_bytes
    return Limit(scope, default or None, None, "settings" if default else "none")


async def check(engine: AsyncEngine, settings: Settings, *, uploader: str, length: int) -> None:
    """Raise QuotaUploadTooLarge (413) or QuotaExceeded (507), naming the quota, when an upload
    of `length` bytes by `uploader` would not fit."""
    async with engine.connect() as conn:
        for scope, who in ((f"token:{uploader}", uploader), ("site", None)):
            limit = await limit_of(conn, settings, scope)
            if limit.max_upload is not None and length > limit.max_upload:
                raise QuotaUploadTooLarge(
                    f"quota {scope} allows uploads of at most {limit.max_upload} bytes; "
                    f"this one declares {length}",
                    details={"quota": {**limit.to_json(), "requested": length}},
                )
            if limit.max_bytes is None:
                continue
            used = await used_bytes(conn, uploader=who)
            if used + length > limit.max_bytes:
                raise QuotaExceeded(
                    f"quota {scope} is {limit.max_bytes} bytes: {used} used, "
                    f"{length} more requested",
                    details={"quota": {**limit.to_json(), "used": used, "requested": length}},
                )


async def _check_scope(conn: AsyncConnection, scope: str) -> None:
    if scope == "site":
        return
    token_id = scope.removeprefix("token:")
    found = (await conn.execute(sa.select(tokens.c.id).where(tokens.c.id == token_id))).first()
    if not scope.startswith("token:") or found is None:
        raise QuotaError(
            f"quota scope must be `site` or `token:TOKEN_ID` of a token, not {scope!r}"
        )


async def set_limit(
    engine: AsyncEngine,
    scope: str,
    *,
    max_bytes: int | None,
    max_upload: int | None,
    actor: str,
    clock: Clock = utcnow,
) -> Limit:
    """Store (or with both None, remove) the quota of `scope`; audited."""
    for name, value in (("max_bytes", max_bytes), ("max_upload", max_upload)):
        if value is not None and value < 0:
            raise QuotaError(f"{name} must be zero or positive")
        if value is not None and value > LARGEST:
            raise QuotaError(f"{name} must be at most {LARGEST} bytes")
    now = clock()
    async with unit_of_work(engine) as unit:
        conn = unit.conn
        await _check_scope(conn, scope)
        await conn.execute(quotas.delete().where(quotas.c.scope == scope))
        if max_bytes is not None or max_upload is not None:
            await conn.execute(
                quotas.insert().values(
                    scope=scope,
                    max_bytes=max_bytes,
                    max_upload=max_upload,
                    updated_by=actor,
                    updated_at=now,
                )
            )
        unit.record(
            QuotaSet(
                actor=actor,
                object=f"quota:{scope}",
                max_bytes=max_bytes,
                max_upload=max_upload,
                time=now,
            )
        )
    source = "catalog" if max_bytes is not None or max_upload is not None else "none"
    return Limit(scope, max_bytes, max_upload, source)


async def listing(engine: AsyncEngine, settings: Settings) -> list[dict[str, Any]]:
    """Every stored quota with its use, then the settings' defaults."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(quotas).order_by(quotas.c.scope))).all()
        out = []
        for row in rows:
            who = None if row.scope == "site" else row.scope.removeprefix("token:")
            out.append(
                {
                    **Limit(row.scope, row.max_bytes, row.max_upload, "catalog").to_json(),
                    "used": await used_bytes(conn, uploader=who),
                    "updated_by": row.updated_by,
                    "updated_at": iso(row.updated_at),
                }
            )
        if "site" not in {r.scope for r in rows}:
            site = await limit_of(conn, settings, "site")
            out.append({**site.to_json(), "used": await used_bytes(conn, uploader=None)})
    return out
