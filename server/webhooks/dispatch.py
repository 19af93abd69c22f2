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
from . import outbox, records, signature, targets

log = logging.getLogger("avidence.webhooks")

POLL_SECONDS = 2.0
MAX_BACKOFF = timedelta(hours=6)


def retry_at(settings: Settings, attempts_done: int) -> datetime | None:
    """When to try again after `attempts_done` failed tries, or None when they are used up."""
    if attempts_done >= settings.webhook_attempts:
        return None
    delay = timedelta(seconds=settings.webhook_backoff * 2 ** (attempts_done - 1))
    return datetime.now(UTC) + min(delay, MAX_BACKOFF)


async def send(
    session: aiohttp.ClientSession, due: records.Due, *, allow: targets.Allow | None = None
) -> tuple[int | None, str | None]:
    """POST one delivery; (status, None) on a 2xx answer, (status or None, reason) otherwise.

    The reason is shown to the agency's admin, so it is generic (`connection failed`, `timed
    out`, `answered 500`, `target not allowed`): socket errors would tell a caller which
    internal ports answer. The detail goes to the server log."""
    body = json.dumps(due.payload, ensure_ascii=False, sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "avidence-webhooks",
        "Avidence-Event": due.event,
        "Avidence-Delivery": due.id,
        signature.HEADER: signature.sign(due.secret, body),
    }
    try:
        targets.check_url(due.url, allow or targets.Allow())  # literals; names: the resolver
        async with session.post(due.url, data=body, headers=headers, allow_redirects=False) as r:
            await r.read()
            return r.status, None if 200 <= r.status < 300 else f"answered {r.status}"
    except targets.TargetRefused as exc:
        return None, _reason("target not allowed", due, exc)
    except aiohttp.ClientConnectorError as exc:
        refused = isinstance(exc.os_error, targets.TargetRefused)
        return None, _reason("target not allowed" if refused else "connection failed", due, exc)
    except TimeoutError as exc:
        return None, _reason("timed out", due, exc)
    except (aiohttp.ClientError, OSError) as exc:
        return None, _reason("connection failed", due, exc)


def _reason(reason: str, due: records.Due, exc: BaseException) -> str:
    log.warning(
        "webhook.send_failed delivery=%s reason=%s detail=%s",
        due.id,
        reason,
        f"{type(exc).__name__}: {exc}"[:500],
    )
    return reason


async def run_once(engine: AsyncEngine, settings: Settings, session: aiohttp.ClientSession) -> int:
    """Send what is due now; the number of deliveries tried."""
    lease = timedelta(seconds=settings.webhook_timeout * 3)
    allow = targets.parse_allow(settings.webhook_allow)
    due = await records.claim(engine, lease=lease)
    for item in due:
        status, error = await send(session, item, allow=allow)
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
    resolver = targets.CheckedResolver(targets.parse_allow(settings.webhook_allow))
    connector = aiohttp.TCPConnector(resolver=resolver)
    # trust_env stays off: an HTTP(S)_PROXY would connect to addresses nobody checked.
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
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
