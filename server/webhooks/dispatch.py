"""The sender: claims due deliveries from the catalog outbox, POSTs them signed, and schedules
retries with exponential backoff (`webhook_backoff` * 2^(attempt-1) seconds, at most
`webhook_attempts` tries). Runs in every server process; claims make each delivery go out once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import Settings
from ..state import CATALOG, SETTINGS
from . import outbox, records, signature

log = logging.getLogger("avidence.webhooks")

POLL_SECONDS = 2.0
MAX_BACKOFF = timedelta(hours=6)


def retry_at(settings: Settings, attempts_done: int) -> datetime | None:
    """When to try again after `attempts_done` failed tries, or None when they are used up."""
    if attempts_done >= settings.webhook_attempts:
        return None
    delay = timedelta(seconds=settings.webhook_backoff * 2 ** (attempts_done - 1))
    return datetime.now(UTC) + min(delay, MAX_BACKOFF)


async def send(session: aiohttp.ClientSession, due: records.Due) -> tuple[int | None, str | None]:
    """POST one delivery; (status, None) on a 2xx answer, (status or None, reason) otherwise."""
    body = json.dumps(due.payload, ensure_ascii=False, sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "avidence-webhooks",
        "Avidence-Event": due.event,
        "Avidence-Delivery": due.id,
        signature.HEADER: signature.sign(due.secret, body),
    }
    try:
        async with session.post(due.url, data=body, headers=headers, allow_redirects=False) as r:
            await r.read()
            return r.status, None if 200 <= r.status < 300 else f"answered {r.status}"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]


async def run_once(engine: AsyncEngine, settings: Settings, session: aiohttp.ClientSession) -> int:
    """Send what is due now; the number of deliveries tried."""
    lease = timedelta(seconds=settings.webhook_timeout * 3)
    due = await records.claim(engine, lease=lease)
    for item in due:
        status, error = await send(session, item)
        later = retry_at(settings, item.attempts + 1) if error else None
        await records.finish(engine, item.id, status=status, error=error, retry_at=later)
        log.log(
            logging.INFO if error is None else logging.WARNING,
            "webhook.%s delivery=%s event=%s status=%s attempt=%s error=%s",
            "delivered" if error is None else ("retry" if later else "failed"),
            item.id,
            item.event,
            status,
            item.attempts + 1,
            error or "-",
        )
    return len(due)


async def _loop(app: web.Application, wake: asyncio.Event) -> None:
    settings, engine = app[SETTINGS], app[CATALOG].engine
    timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            try:
                busy = await run_once(engine, settings, session)
            except Exception:
                log.exception("webhook.dispatch_failed")
                busy = 0
            if busy:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), POLL_SECONDS)
            wake.clear()


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Start sending once the catalog is open; stop before it closes."""
    wake = asyncio.Event()
    outbox.WAKE = wake
    task = asyncio.create_task(_loop(app, wake), name="webhook-dispatch")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if outbox.WAKE is wake:
        outbox.WAKE = None
