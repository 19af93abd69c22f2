"""Appending to, checkpointing and verifying the audit chain.

Entry hash = SHA-256 of the canonical JSON of (seq, time, actor, action, object, case, details,
client, prev_hash). The first entry's prev_hash is 64 zeros. A checkpoint signs (seq, head hash,
count, time) with the server key, so truncating the log after a checkpoint, or rewriting it and
recomputing every hash, is detectable with the public key alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from avidence.client.canonical import PublicKeys, VerificationError, canonical_json

from ..catalog.schema import audit_checkpoints, audit_head, audit_log
from ..signing import Signer
from ..webhooks import outbox
from . import witness
from .events import AuditEvent
from .witness import Witness

log = logging.getLogger("avidence.audit")

GENESIS = "0" * 64


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def entry_body(row: Any) -> dict[str, Any]:
    """The hashed content of a row (or of a mapping with the same keys)."""
    get = row.__getitem__ if isinstance(row, dict) else lambda k: getattr(row, k)
    return {
        "seq": int(get("seq")),
        "time": _iso(get("time")),
        "actor": get("actor"),
        "action": get("action"),
        "object": get("object"),
        "case_id": get("case_id"),
        "details": get("details"),
        "client": get("client"),
        "prev_hash": get("prev_hash"),
    }


def entry_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()


async def _head(conn: AsyncConnection) -> tuple[int, str]:
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
        seq, digest = await _head(conn)
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
    engine: AsyncEngine, signer: Signer, *, witnesses: Sequence[Witness] = ()
) -> dict[str, Any] | None:
    """Sign the current head and hand it to the witnesses; None when the log is empty or the
    head is already signed."""
    async with engine.connect() as conn:
        seq, head = await _head(conn)
        last = (await conn.execute(sa.select(sa.func.max(audit_checkpoints.c.seq)))).scalar()
    if seq == 0 or last == seq:
        return None
    now = datetime.now(UTC)
    document = signer.sign(
        "checkpoint", {"seq": seq, "head_hash": head, "count": seq, "time": _iso(now)}
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
class Verdict:
    ok: bool
    entries: int
    checkpoints: int
    problem: str | None = None
    bad_seq: int | None = None


async def verify(engine: AsyncEngine, keys: PublicKeys) -> Verdict:
    """Walk the whole chain and every checkpoint; name the first entry that does not fit."""
    expected_prev, expected_seq, count = GENESIS, 1, 0
    heads: dict[int, str] = {}
    # aclosing: an early return must give the streamed connection back at once, not at GC.
    async with contextlib.aclosing(rows(engine)) as entries:
        async for row in entries:
            if int(row.seq) != expected_seq:
                return Verdict(
                    False,
                    count,
                    0,
                    f"entry {expected_seq} is missing or out of order",
                    expected_seq,
                )
            body = entry_body(row)
            if row.prev_hash != expected_prev:
                return Verdict(
                    False,
                    count,
                    0,
                    f"entry {row.seq} does not follow entry {row.seq - 1}",
                    int(row.seq),
                )
            if entry_hash(body) != row.hash:
                return Verdict(False, count, 0, f"entry {row.seq} was altered", int(row.seq))
            heads[int(row.seq)] = row.hash
            expected_prev, expected_seq, count = row.hash, expected_seq + 1, count + 1
    checked = 0
    for document in await checkpoints(engine):
        kid, claimed = document.get("key_id"), (document.get("checkpoint") or {}).get("seq")
        if str(kid) not in keys.keys:
            # Named before the signature check: whose key it is matters more than the bytes.
            where = claimed if isinstance(claimed, int) else None
            return Verdict(
                False, count, checked, f"checkpoint {claimed} is {keys.unknown(kid)}", where
            )
        try:
            signed = keys.verify(document, body="checkpoint")
        except VerificationError as exc:
            return Verdict(False, count, checked, f"a checkpoint does not verify: {exc}")
        seq = int(signed["seq"])
        if heads.get(seq) != signed["head_hash"]:
            return Verdict(
                False,
                count,
                checked,
                f"checkpoint {seq} signed a head the log no longer has (truncated or rewritten)",
                seq,
            )
        checked += 1
    return Verdict(True, count, checked)


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


async def checkpoints(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every signed checkpoint document, oldest first."""
    async with engine.connect() as conn:
        result = await conn.execute(
            sa.select(audit_checkpoints.c.document).order_by(audit_checkpoints.c.seq)
        )
        return [dict(document) for document in result.scalars()]
