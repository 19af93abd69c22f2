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
from .entries import (
    GENESIS,
    SHA256,
    SUITE_ALGORITHMS,
    UnknownAlgorithm,
    column,
    entry_body,
    entry_hash,
    following,
    iso,
    stored,
)
from .events import AuditEvent, ChainSwitched
from .tsa import TimeStamper
from .walk import walk
from .witness import Witness

__all__ = [
    "GENESIS",
    "Anchor",
    "Verdict",
    "append",
    "checkpoint",
    "entry_body",
    "entry_hash",
    "follow_suite",
    "switch",
]

log = logging.getLogger("avidence.audit")

async def _head_entry(conn: AsyncConnection) -> Any:
    """The last entry's seq, hash, algorithm, action and details (None in an empty log)."""
    return (
        await conn.execute(
            sa.select(
                audit_log.c.seq,
                audit_log.c.hash,
                audit_log.c.hash_algorithm,
                audit_log.c.action,
                audit_log.c.details,
            )
            .order_by(audit_log.c.seq.desc())
            .limit(1)
        )
    ).first()


async def read_head(conn: AsyncConnection) -> tuple[int, str]:
    row = await _head_entry(conn)
    return (int(row.seq), str(row.hash)) if row is not None else (0, GENESIS)


async def chain_algorithm(conn: AsyncConnection) -> str:
    """The hash the next entry is chained with, as the head row names it (for display: a name
    this version does not know is shown as it is, and `verify` refuses it)."""
    named = (await conn.execute(sa.select(audit_head.c.hash_algorithm))).scalar()
    return str(named) if named is not None else SHA256


async def _lock_head(conn: AsyncConnection) -> tuple[int, str, str]:
    """Take the head row's lock (held until the caller's transaction ends) and read it: the
    last seq and hash, and the algorithm the next entry is hashed with.

    The lock is a write to the row: a row lock on PostgreSQL, the database's write lock on
    SQLite. A catalog that has no head row yet starts one from the log's last entry."""
    locked = (
        await conn.execute(
            audit_head.update()
            .where(audit_head.c.id == 1)
            .values(seq=audit_head.c.seq)
            .returning(audit_head.c.seq, audit_head.c.hash, audit_head.c.hash_algorithm)
        )
    ).first()
    if locked is None:
        row = await _head_entry(conn)
        seq, digest, algorithm = 0, GENESIS, SHA256
        if row is not None:
            seq, digest = int(row.seq), str(row.hash)
            algorithm = following(stored(row.hash_algorithm), row.action, row.details)
        await conn.execute(
            audit_head.insert().values(
                id=1, seq=seq, hash=digest, hash_algorithm=column(algorithm)
            )
        )
        return seq, digest, algorithm
    return int(locked.seq), str(locked.hash), stored(locked.hash_algorithm)


async def append(conn: AsyncConnection, *events: AuditEvent) -> list[int]:
    """Chain `events` onto the log inside the caller's transaction and queue the webhook
    deliveries they call for; return their sequence numbers.

    Call it through `unit.unit_of_work`, at the end of the action's transaction: the head row
    stays locked until that transaction commits, so concurrent writers (tasks, processes,
    replicas) queue here instead of racing, and an entry commits exactly when its action does.
    """
    # Who hears of each entry is read before the lock, so the lock covers only the writes.
    plans = [await outbox.plan(conn, event) for event in events]
    seq, prev, algorithm = await _lock_head(conn)
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
            "hash_algorithm": column(algorithm),
        }
        row["hash"] = prev = entry_hash(entry_body(row))
        algorithm = following(algorithm, event.action, row["details"])
        await conn.execute(audit_log.insert().values(**row))
        await outbox.queue(conn, plan, event, seq)
        numbers.append(seq)
    await conn.execute(
        audit_head.update()
        .where(audit_head.c.id == 1)
        .values(seq=seq, hash=prev, hash_algorithm=column(algorithm))
    )
    return numbers


async def switch(engine: AsyncEngine, algorithm: str, *, actor: str = "server") -> int | None:
    """Make `algorithm` the chain hash of the entries to come; return the seq of the
    `audit.chain_switched` entry that says so (hashed with the old algorithm), or None when
    the chain uses it already. An empty log just starts with it.

    Called where the suite is known (`serve`, `key rotate`): the `gm` suite chains with SM3."""
    column(algorithm)  # an unknown name is refused before anything is written
    async with engine.begin() as conn:
        seq, _, current = await _lock_head(conn)
        if current == algorithm:
            return None
        if seq == 0:
            await conn.execute(
                audit_head.update()
                .where(audit_head.c.id == 1)
                .values(hash_algorithm=column(algorithm))
            )
            log.info("audit.chain_algorithm algorithm=%s (empty log)", algorithm)
            return None
        event = ChainSwitched(actor=actor, object="audit:chain", from_=current, to=algorithm)
        (number,) = await append(conn, event)
    outbox.wake()
    log.info("audit.chain_switched seq=%s from=%s to=%s", number, current, algorithm)
    return number


async def follow_suite(engine: AsyncEngine, suite: str, *, actor: str) -> int | None:
    """Chain the entries to come with the suite's hash (`switch`): SM3 for `gm`."""
    return await switch(engine, SUITE_ALGORITHMS[suite], actor=actor)


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
        entry = await _head_entry(conn)
        last = (await conn.execute(sa.select(sa.func.max(audit_checkpoints.c.seq)))).scalar()
    if entry is None or last == entry.seq:
        return None
    seq, head = int(entry.seq), str(entry.hash)
    now = datetime.now(UTC)
    document = signer.sign(
        "checkpoint",
        {
            "seq": seq,
            "head_hash": head,
            "count": seq,
            "time": iso(now),
            "hash_algorithm": stored(entry.hash_algorithm),
        },
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
    algorithm: str | None = None  # from the start: the first entry's own
    documents = await checkpoints(engine, since=start)
    if since is not None:
        async with engine.connect() as conn:
            live = (
                await conn.execute(
                    sa.select(
                        audit_log.c.hash,
                        audit_log.c.hash_algorithm,
                        audit_log.c.action,
                        audit_log.c.details,
                    ).where(audit_log.c.seq == since.seq)
                )
            ).first()
        if live is None or live.hash != since.head_hash:
            return Verdict(
                False,
                0,
                0,
                f"entry {since.seq}, verified before, is {'gone' if live is None else 'changed'}:"
                " the log was truncated or rewritten since",
                since.seq,
                since.seq,
            )
        try:
            anchored = stored(live.hash_algorithm)
            algorithm = following(anchored, live.action, live.details)
        except UnknownAlgorithm as exc:
            return Verdict(False, 0, 0, f"entry {since.seq}: {exc}", since.seq, since.seq)
    walked = await walk(
        engine,
        after_seq=start,
        after_hash=prev,
        after_algorithm=algorithm,
        want={_claimed(d) for d in documents},
    )
    if walked.problem is not None:
        return Verdict(False, walked.entries, 0, walked.problem, walked.bad_seq, start)
    if since is not None:
        walked.algorithms[since.seq] = anchored
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
        if heads.get(seq) != signed["head_hash"] or signed.get(
            "hash_algorithm", SHA256
        ) != walked.algorithms.get(seq):
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
