"""Wire the tus endpoint into an app: context, routes, headers on every answer, upkeep task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..state import CATALOG, CUSTODY, METRICS, SETTINGS, STORE
from .admission import creation_limiter
from .context import TusContext
from .handlers import TusHandlers
from .headers import TUS_VERSION
from .locks import UploadLocks
from .maintenance import run_forever

TUS = web.AppKey("tus", TusContext)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup(app: web.Application) -> None:
    settings = app[SETTINGS]
    path = settings.tus_path
    app.cleanup_ctx.append(_context)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        return await TusHandlers(request.app[TUS]).dispatch(request)

    app.router.add_route("*", path, dispatch)
    app.router.add_route("*", path.rstrip("/"), dispatch)
    app.router.add_route("*", path + "{upload_id}", dispatch)


def tus_headers(path: str) -> Middleware:
    @web.middleware
    async def add(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path.startswith(path.rstrip("/")):
            # "The Tus-Resumable header MUST be included in every ... response"
            response.headers.setdefault("Tus-Resumable", TUS_VERSION)
        return response

    return add


async def _context(app: web.Application) -> AsyncIterator[None]:
    engine = app[CATALOG].engine
    ctx = TusContext(
        settings=app[SETTINGS],
        engine=engine,
        store=app[STORE],
        metrics=app[METRICS],
        locks=UploadLocks(engine),
        complete=app[CUSTODY].accept,
        creations=creation_limiter(app[SETTINGS].upload_create_per_minute),
    )
    app[TUS] = ctx
    upkeep = asyncio.create_task(run_forever(ctx), name="tus-upkeep")
    yield
    upkeep.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await upkeep
    await ctx.locks.close()
    for task in list(ctx.tasks.values()):
        task.cancel()
