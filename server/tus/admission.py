"""Per-token limits on creating uploads: how fast, and how many may be open at once.

One token created 2,403 uploads in 20 s: each is a catalog row, a staging object in the store and
an expiry sweep later, so a stolen or runaway uploader token could exhaust the catalog and the
store long before any byte quota notices (an upload with a deferred length promises no bytes).
A real uploader opens a handful of uploads (a file, or its few concatenation partials) at a time.

The rate is a token bucket per uploader token in this process (`upload_create_per_minute`, also
the burst); behind N replicas the effective rate is N times higher, which is still a limit. The
count of open uploads is read from the catalog, so it holds across replicas; concurrent creations
by one token can pass the count together, by at most the burst of the rate limit.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import clock
from ..catalog.schema import uploads
from ..catalog.uploads import UploadState
from ..errors import TooManyOpenUploads, UploadsTooFast
from ..limits import RateLimiter
from ..tokens import Principal
from .context import TusContext

OPEN_RETRY_AFTER = 60  # seconds: open uploads end when finished, terminated or expired


def creation_limiter(per_minute: int) -> RateLimiter:
    """A bucket per token refilled at `per_minute`/60 per second, holding up to `per_minute`."""
    return RateLimiter(rate=per_minute / 60.0, burst=max(1, per_minute))


async def open_uploads(engine: AsyncEngine, *, uploader: str, now: datetime) -> int:
    """Uploads of `uploader` still receiving bytes (expired ones no longer count)."""
    query = (
        sa.select(sa.func.count())
        .select_from(uploads)
        .where(
            uploads.c.uploader == uploader,
            uploads.c.state == UploadState.RECEIVING,
            sa.or_(uploads.c.expires_at.is_(None), uploads.c.expires_at > now),
        )
    )
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def admit(ctx: TusContext, principal: Principal) -> None:
    """Raise 429 with Retry-After when `principal` may not create an upload now."""
    settings = ctx.settings
    if settings.upload_create_per_minute and not ctx.creations.allow(principal.token_id):
        retry = ctx.creations.retry_after(principal.token_id)
        raise UploadsTooFast(headers={"Retry-After": str(retry)})
    if settings.max_open_uploads:
        count = await open_uploads(ctx.engine, uploader=principal.token_id, now=clock.now())
        if count >= settings.max_open_uploads:
            raise TooManyOpenUploads(
                f"this token has {count} unfinished uploads, the most allowed "
                f"(max_open_uploads = {settings.max_open_uploads})",
                headers={"Retry-After": str(OPEN_RETRY_AFTER)},
                details={"open_uploads": count, "max_open_uploads": settings.max_open_uploads},
            )
