"""One writer per upload, in one process and across replicas sharing the catalog.

A lock is a lease on the upload's row (`lock_owner`, `lock_until`), renewed by a heartbeat. A new
request for a held upload asks the holder to let go (`lock_wanted`); the holder notices on its next
heartbeat, or at once when it lives in the same process, and ends its request. A holder that died
is recognised by its lease running out or, on the same host, by its process being gone, so a
server restarted after `kill -9` resumes at once. This works the same on SQLite and PostgreSQL.

HEAD takes the lock too (as tusd does), so it never answers while a request is still writing:
a client whose PATCH broke asks HEAD where to resume, and an offset read before the broken
request's bytes were written back would make its next PATCH a 409. A request between its
arrival and its lock is announced in this process (`arriving`), so HEAD waits for it as well.
Across replicas the lock row alone orders them: a holder on another node is asked to let go and
notices on its next heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import clock
from ..catalog.schema import uploads
from ..errors import Locked

log = logging.getLogger("avidence.tus.locks")

HOST = socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_is_dead(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    return (
        host == HOST
        and pid_text.isdigit()
        and int(pid_text) != os.getpid()
        and not _pid_alive(int(pid_text))
    )


class Lease:
    """A held lock; `lost` is set when another request took the upload over."""

    def __init__(self, locks: UploadLocks, upload_id: str, on_takeover: Callable[[], None]):
        self.locks = locks
        self.upload_id = upload_id
        self.on_takeover = on_takeover
        self.lost = asyncio.Event()
        self._heartbeat: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat(), name=f"lease-{self.upload_id}")

    def take_over(self) -> None:
        if not self.lost.is_set():
            self.lost.set()
            self.on_takeover()

    async def _beat(self) -> None:
        # The lease is renewed until `release`, even after a takeover was asked for: the old
        # writer may still be flushing, and the new one must not start before it has finished.
        owner, engine = self.locks.owner, self.locks.engine
        while True:
            await asyncio.sleep(self.locks.heartbeat.total_seconds())
            async with engine.begin() as conn:
                renewed = await conn.execute(
                    uploads.update()
                    .where(uploads.c.id == self.upload_id, uploads.c.lock_owner == owner)
                    .values(lock_until=clock.now() + self.locks.lease)
                )
                wanted = (
                    await conn.execute(
                        sa.select(uploads.c.lock_wanted).where(uploads.c.id == self.upload_id)
                    )
                ).scalar()
            if (renewed.rowcount == 0 or (wanted is not None and wanted != owner)) and not (
                self.lost.is_set()
            ):
                log.info("lock.taken_over upload=%s by=%s", self.upload_id, wanted)
                self.take_over()

    async def release(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        self.locks._local.pop(self.upload_id, None)
        try:
            async with self.locks.engine.begin() as conn:
                await conn.execute(
                    uploads.update()
                    .where(uploads.c.id == self.upload_id, uploads.c.lock_owner == self.locks.owner)
                    .values(lock_owner=None, lock_until=None, lock_wanted=None)
                )
        except (sa.exc.DBAPIError, ConnectionError, OSError) as exc:
            # The catalog is gone for now: the lease runs out by itself, and this process
            # retakes its own stale lease at once (see `acquire`). Do not hide the real error.
            log.warning("lock.release_failed upload=%s error=%s", self.upload_id, exc)


class UploadLocks:
    """The lock service of one app instance."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        lease: timedelta = timedelta(seconds=15),
        heartbeat: timedelta = timedelta(seconds=2),
    ) -> None:
        self.engine = engine
        self.lease = lease
        self.heartbeat = heartbeat
        self.owner = f"{HOST}:{os.getpid()}:{secrets.token_hex(4)}"
        self._local: dict[str, Lease] = {}
        self._arriving: dict[str, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def arriving(self, upload_id: str) -> Iterator[asyncio.Event]:
        """Announce a writer on its way to the upload's lock; the writer sets the event once it
        holds the lock, and it is set when the block ends in any case. `settle` waits for it."""
        event = asyncio.Event()
        waiting = self._arriving.setdefault(upload_id, set())
        waiting.add(event)
        try:
            yield event
        finally:
            event.set()
            waiting.discard(event)
            if not waiting:
                self._arriving.pop(upload_id, None)

    async def settle(self, upload_id: str, *, within: float) -> None:
        """Wait up to `within` seconds for the writers announced now to reach the lock."""
        events = list(self._arriving.get(upload_id, ()))
        if not events:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                for event in events:
                    await event.wait()

    async def acquire(
        self,
        upload_id: str,
        *,
        on_takeover: Callable[[], None],
        wait: float | None = None,
        patience: float = 0.0,
    ) -> Lease:
        """Take the upload's lock, asking a current holder to let go after `patience` seconds
        (a holder about to finish by itself keeps every byte it is still reading); 423 if it
        will not let go within `wait` seconds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + (wait if wait is not None else self.lease.total_seconds() + 3)
        asked = False
        while True:
            now = clock.now()
            ask = not asked and loop.time() - started >= patience
            async with self.engine.begin() as conn:
                taken = await conn.execute(
                    uploads.update()
                    .where(
                        uploads.c.id == upload_id,
                        sa.or_(
                            uploads.c.lock_owner.is_(None),
                            uploads.c.lock_until < now,
                            # Our own lease with no request of ours holding it: a release
                            # that could not reach the catalog.
                            sa.and_(
                                uploads.c.lock_owner == self.owner,
                                sa.literal(upload_id not in self._local),
                            ),
                        ),
                    )
                    .values(lock_owner=self.owner, lock_until=now + self.lease, lock_wanted=None)
                )
                holder = None
                if taken.rowcount == 0:
                    holder = (
                        await conn.execute(
                            sa.select(uploads.c.lock_owner).where(uploads.c.id == upload_id)
                        )
                    ).scalar()
                    if holder is not None and _holder_is_dead(holder):
                        log.info("lock.stolen_from_dead upload=%s holder=%s", upload_id, holder)
                        await conn.execute(
                            uploads.update()
                            .where(uploads.c.id == upload_id, uploads.c.lock_owner == holder)
                            .values(lock_owner=None, lock_until=None)
                        )
                        continue
                    if ask:
                        await conn.execute(
                            uploads.update()
                            .where(uploads.c.id == upload_id)
                            .values(lock_wanted=self.owner)
                        )
            if taken.rowcount == 1:
                lease = Lease(self, upload_id, on_takeover)
                self._local[upload_id] = lease
                lease.start()
                return lease
            if ask:
                asked = True
                local = self._local.get(upload_id)
                if local is not None:
                    local.take_over()
            if loop.time() >= deadline:
                raise Locked("the upload is in use by another request; retry shortly")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        for lease in list(self._local.values()):
            lease.take_over()
            await lease.release()
