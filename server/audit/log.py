"""Appending to, checkpointing and verifying the audit chain.

Each entry carries the hash of the one before (`entries.py` defines what is hashed). A
checkpoint signs (seq, head hash, count, time) with the server key, so truncating the log after
a checkpoint, or rewriting it and recomputing every hash, is detectable with the public key
alone. `verify` walks the chain (`walk.py`) from the start, or from a checkpoint an earlier run
verified (`Anchor`), and checks every checkpoint from there on.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from avidence.client.canonical import PublicKeys, VerificationError

from ..catalog.schema import audit_checkpoints, audit_head, audit_log
from ..signing import Signer
from ..webhooks import outbox
from . import tsa, witness
from .entries import GENESIS, entry_body, entry_hash, iso
from .events import AuditEvent
from .tsa import TimeStamper
from .walk import walk
from .witness import Witness

__all__ = ["GENESIS", "Anchor", "Verdict", "append", "checkpoint", "entry_body", "entry_hash"]

log = logging.getLogger("avidence.audit")

async def read_head(conn: AsyncConnection) -> tuple[int, str]:
    row = (
        await conn.execute(
            sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        )
    ).first()
    return (int(row.seq), str(row.hash)) if row is not None else (0, GENESIS)


async def _lock_head(conn: AsyncConnection) -> tuple[int, str]:
    """Take the head row's lock (held until the caller's transaction ends) and read it.

    The lock is a write to the row: a row lock on PostgreSQL, the database's write lock on
    SQLite. A catalog that has no head row yet starts one from the log's last entry."""
    locked = (
        await conn.execute(
            audit_head.update()
            .where(audit_head.c.id == 1)
            .values(seq=audit_head.c.seq)
            .returning(audit_head.c.seq, audit_head.c.hash)
        )
    ).first()
    if locked is None:
        seq, digest = await read_head(conn)
        await conn.execute(audit_head.insert().values(id=1, seq=seq, hash=digest))
        return seq, digest
    return int(locked.seq), str(locked.hash)


async def append(conn: AsyncConnection, *events: AuditEvent) -> list[int]:
    """Chain `events` onto the log inside the caller's transaction and queue the webhook
    deliveries they call for; return their sequence numbers.

    Call it through `unit.unit_of_work`, at the end of the action's transaction: the head row
    stays locked until that transaction commits, so concurrent writers (tasks, processes,
    replicas) queue here instead of racing, and an entry commits exactly when its action does.
    """
    # Who hears of each entry is read before the lock, so the lock covers only the writes.
    plans = [await outbox.plan(conn, event) for event in events]
    seq, prev = await _lock_head(conn)
    numbers = []
    for event, plan in zip(events, plans, strict=True):
        seq += 1
        row = {
            "seq": seq,
            "time": event.time,
            "actor": event.actor[:200],
            "action": event.action,
            "object": event.object[:200],
            "case_id": event.case_id[:128] if event.case_id is not None else None,
            "details": event.details(),
            "client": event.client[:64] if event.client is not None else None,
            "prev_hash": prev,
        }
        row["hash"] = prev = entry_hash(entry_body(row))
        await conn.execute(audit_log.insert().values(**row))
        await outbox.queue(conn, plan, event, seq)
        numbers.append(seq)
    await conn.execute(audit_head.update().where(audit_head.c.id == 1).values(seq=seq, hash=prev))
    return numbers


async def checkpoint(
    engine: AsyncEngine,
    signer: Signer,
    *,
    witnesses: Sequence[Witness] = (),
    stamper: TimeStamper | None = None,
) -> dict[str, Any] | None:
    """Sign the current head and hand it to the witnesses; with a TSA, time-stamp it and every
    checkpoint still waiting for a time-stamp (a TSA that does not answer is logged, not
    raised). None when the log is empty or the head is already signed."""
    document = await _sign_head(engine, signer, witnesses)
    if stamper is not None:
        await tsa.stamp_pending(engine, stamper)
    return document


async def _sign_head(
    engine: AsyncEngine, signer: Signer, witnesses: Sequence[Witness]
) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        seq, head = await read_head(conn)
        last = (await conn.execute(sa.select(sa.func.max(audit_checkpoints.c.seq)))).scalar()
    if seq == 0 or last == seq:
        return None
    now = datetime.now(UTC)
    document = signer.sign(
        "checkpoint", {"seq": seq, "head_hash": head, "count": seq, "time": iso(now)}
    )
    try:
        async with engine.begin() as conn:
            await conn.execute(
                audit_checkpoints.insert().values(
                    seq=seq, head_hash=head, count=seq, time=now, document=document
                )
            )
    except IntegrityError:
        return None  # another replica signed the same head
    kept = await witness.publish(witnesses, document)
    log.info(
        "audit.checkpoint seq=%s head=%s key=%s witnesses=%s/%s",
        seq,
        head,
        signer.key_id,
        kept,
        len(witnesses),
    )
    return document


async def rows(engine: AsyncEngine, *, case_id: str | None = None) -> AsyncGenerator[Any, None]:
    """Every entry in order (or a case's entries), streamed from the database."""
    query = sa.select(audit_log).order_by(audit_log.c.seq)
    if case_id is not None:
        query = query.where(audit_log.c.case_id == case_id)
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=2000))
        # A batch per await: one switch into the driver per 2,000 rows, not per row.
        async for batch in result.partitions():
            for row in batch:
                yield row


@dataclass(slots=True, frozen=True)
class Anchor:
    """A checkpoint a verification run has checked: where the next run may start."""

    seq: int
    head_hash: str


@dataclass(slots=True, frozen=True)
class Verdict:
    ok: bool
    entries: int
    checkpoints: int
    problem: str | None = None
    bad_seq: int | None = None
    since: int = 0  # the entries walked follow this seq (0: the whole log)
    newest: Anchor | None = None  # the newest checkpoint verified


async def verify(engine: AsyncEngine, keys: PublicKeys, *, since: Anchor | None = None) -> Verdict:
    """Walk the chain and every checkpoint; name the first entry that does not fit.

    With `since` (a checkpoint an earlier run verified) only the entries after it and the
    checkpoints from it on are read: the live entry at `since.seq` must still carry the hash
    that run saw, which pins every entry before it as long as the chain is not rewritten from
    there (a rewrite changes that hash; an edit left unrehashed is found by a full run)."""
    start, prev = (since.seq, since.head_hash) if since is not None else (0, GENESIS)
    documents = await checkpoints(engine, since=start)
    if since is not None:
        async with engine.connect() as conn:
            live = (
                await conn.execute(sa.select(audit_log.c.hash).where(audit_log.c.seq == since.seq))
            ).scalar()
        if live != since.head_hash:
            return Verdict(
                False,
                0,
                0,
                f"entry {since.seq}, verified before, is {'gone' if live is None else 'changed'}:"
                " the log was truncated or rewritten since",
                since.seq,
                since.seq,
            )
    walked = await walk(
        engine, after_seq=start, after_hash=prev, want={_claimed(d) for d in documents}
    )
    if walked.problem is not None:
        return Verdict(False, walked.entries, 0, walked.problem, walked.bad_seq, start)
    heads = walked.heads | ({since.seq: since.head_hash} if since is not None else {})
    checked, newest = 0, since
    for document in documents:
        kid, claimed = document.get("key_id"), (document.get("checkpoint") or {}).get("seq")
        if str(kid) not in keys.keys:
            # Named before the signature check: whose key it is matters more than the bytes.
            where = claimed if isinstance(claimed, int) else None
            return Verdict(
                False,
                walked.entries,
                checked,
                f"checkpoint {claimed} is {keys.unknown(kid)}",
                where,
                start,
            )
        try:
            signed = keys.verify(document, body="checkpoint")
        except VerificationError as exc:
            return Verdict(
                False, walked.entries, checked, f"a checkpoint does not verify: {exc}", None, start
            )
        seq = int(signed["seq"])
        if heads.get(seq) != signed["head_hash"]:
            return Verdict(
                False,
                walked.entries,
                checked,
                f"checkpoint {seq} signed a head the log no longer has (truncated or rewritten)",
                seq,
                start,
            )
        checked += 1
        newest = Anchor(seq, str(signed["head_hash"]))
    return Verdict(True, walked.entries, checked, since=start, newest=newest)


def _claimed(document: dict[str, Any]) -> int:
    """The seq a checkpoint document claims (-1 when it claims none)."""
    claimed = (document.get("checkpoint") or {}).get("seq")
    return claimed if isinstance(claimed, int) else -1


async def latest_checkpoint(engine: AsyncEngine) -> dict[str, Any] | None:
    """The newest signed checkpoint document, or None before the first."""
    async with engine.connect() as conn:
        document = (
            await conn.execute(
                sa.select(audit_checkpoints.c.document)
                .order_by(audit_checkpoints.c.seq.desc())
                .limit(1)
            )
        ).scalar()
    return dict(document) if document is not None else None


async def checkpoints(engine: AsyncEngine, *, since: int = 0) -> list[dict[str, Any]]:
    """Every signed checkpoint document (of seq `since` and later), oldest first."""
    async with engine.connect() as conn:
        result = await conn.execute(
            sa.select(audit_checkpoints.c.document)
            .where(audit_checkpoints.c.seq >= since)
            .order_by(audit_checkpoints.c.seq)
        )
        return [dict(document) for document in result.scalars()]
