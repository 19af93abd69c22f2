"""The worker inside `serve`, for the one-box default (setting `embedded_worker`).

It starts after the catalog and store are open and stops before they close (aiohttp runs
cleanup contexts in reverse order), handing running jobs back to the queue. Multi-node
deployments set `embedded_worker = false` and run `avidence-server worker` processes instead.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from avidence.transcode.errors import TranscodeError

from ..state import CATALOG, SETTINGS, STORE
from .worker import Worker

WORKER = web.AppKey("worker", Worker)
log = logging.getLogger("avidence.jobs")


def setup(app: web.Application) -> None:
    """Run a worker with the app when the settings ask for one."""
    if app[SETTINGS].embedded_worker:
        app.cleanup_ctx.append(_run)


async def _run(app: web.Application) -> AsyncIterator[None]:
    worker = Worker(app[SETTINGS], catalog=app[CATALOG], store=app[STORE])
    try:
        await worker.start()
    except TranscodeError as exc:
        # Uploads must keep working without ffmpeg; jobs wait in the queue for a worker.
        log.error("worker.disabled reason=%s", exc.reason)
        yield
        return
    app[WORKER] = worker
    yield
    await worker.stop()
