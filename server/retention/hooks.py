"""Where retention meets the rest of the server: an original is locked as it is finished, a new
record gets its class, a record arriving in a held case is held, derivatives are locked and
held like their original. Each hook is one call at its site, so the sites stay readable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from avidence.storage import errors as store_errors
from avidence.storage.base import Store

from ..config import Settings
from . import holds, locks, records
from .classes import as_mode, load_policy
from .records import Clock, utcnow

log = logging.getLogger("avidence.retention")


async def lock_original(
    store: Store,
    settings: Settings,
    key: str,
    metadata: Mapping[str, str],
    *,
    clock: Clock = utcnow,
) -> None:
    """Storage retention on a just-published original, by the class its metadata gives it."""
    policy = load_policy(settings)
    now = clock()
    lock = policy.lock_for(policy.classify(metadata), start=now, now=now)
    if lock is not None:
        await locks.retain(store, [key], mode=lock[0], until=lock[1])


async def classify_new(
    conn: AsyncConnection,
    settings: Settings,
    *,
    evidence_id: str,
    metadata: Mapping[str, str],
    received_at: datetime,
) -> records.Retention:
    """The retention row of a new record, written in the transaction that creates it."""
    return await records.assign(
        conn,
        evidence_id=evidence_id,
        metadata=metadata,
        received_at=received_at,
        policy=load_policy(settings),
        now=received_at,
    )


async def evidence_created(engine: AsyncEngine, store: Store, evidence_id: str) -> None:
    """Mirror a case hold onto a record that arrived after the hold; never fails the upload."""
    try:
        await holds.mirror_new_evidence(engine, store, evidence_id)
    except store_errors.StoreError as exc:
        log.warning("hold.mirror_failed evidence=%s error=%s", evidence_id, exc)


async def derivatives_stored(
    engine: AsyncEngine,
    store: Store,
    evidence_id: str,
    keys: Sequence[str],
    *,
    clock: Clock = utcnow,
) -> None:
    """Lock and hold new derivatives exactly like their original."""
    if not keys:
        return
    try:
        current = await records.get(engine, evidence_id)
        if current is not None and current.locked_until and current.locked_until > clock():
            mode = as_mode(current.lock_mode)
            await locks.retain(store, keys, mode=mode, until=current.locked_until)
        async with engine.connect() as conn:
            held = await holds.is_held(conn, evidence_id)
        if held:
            await locks.legal_hold(store, keys, on=True)
    except store_errors.StoreError as exc:
        log.warning("derivative.lock_failed evidence=%s error=%s", evidence_id, exc)
