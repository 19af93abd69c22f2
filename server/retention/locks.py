"""Storage-level protection: S3 Object Lock retention and legal holds on an evidence record's
objects (the original and every derivative, so a copy never outlives or outlasts it).

Stores without the `Retainer` capability, or buckets without Object Lock, are left alone: the
catalog still enforces retention and holds, the storage just cannot add its own guarantee.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from avidence.storage import errors as store_errors
from avidence.storage.base import LockSupport, Retainer, Store

from .classes import LockMode

log = logging.getLogger("avidence.retention.locks")


async def support(store: Store) -> LockSupport:
    """What the store can lock; `object_lock=False` for stores with no such capability."""
    if not isinstance(store, Retainer):
        return LockSupport(object_lock=False)
    return await store.lock_support()


async def retain(store: Store, keys: Iterable[str], *, mode: LockMode, until: datetime) -> int:
    """Set retain-until on every key (never shortened by the store); how many were set."""
    if not mode or not isinstance(store, Retainer) or not (await support(store)).object_lock:
        return 0
    count = 0
    for key in keys:
        try:
            await store.set_retention(key, until=until, mode=mode)
        except store_errors.NotFound:
            continue  # a derivative removed by its job's clean-up: nothing left to protect
        count += 1
        log.info("object.locked key=%s mode=%s until=%s", key, mode, until.isoformat())
    return count


async def legal_hold(store: Store, keys: Iterable[str], *, on: bool) -> int:
    """Place or lift the S3 legal hold on every key; how many were changed."""
    if not isinstance(store, Retainer) or not (await support(store)).object_lock:
        return 0
    count = 0
    for key in keys:
        try:
            await store.set_legal_hold(key, on=on)
        except store_errors.NotFound:
            continue
        count += 1
        log.info("object.legal_hold key=%s on=%s", key, on)
    return count
