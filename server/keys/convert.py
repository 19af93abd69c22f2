"""`encrypt-existing`: seal every plain object a store holds for evidence, checked against the
catalog's digests (the storage side is `storage.sealconvert`).

The objects are the catalog's, not a listing of the bucket: each original with its BLAKE3,
SHA-256 and SM3, each derivative (browser copies, posters, HLS pieces) with its BLAKE3 and
SHA-256, so every sealed copy is compared with what the receipt or the job recorded before the
plain bytes go. Purged evidence is left out (its bytes are gone). Each conversion is audited as
it happens (`object.sealed`), and the run once with its counts.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.storage.sealconvert import Converted, Outcome

from ..audit import unit
from ..audit.events import EncryptExistingRun, ObjectSealed
from ..evidence import tallies

log = logging.getLogger("avidence.server.keys.convert")

PAGE = 500
# Outcomes that leave an object plain that should not be: the run exits non-zero.
FAILED = frozenset({Outcome.LOCKED, Outcome.MISMATCH, Outcome.MISSING})


@dataclass(slots=True, frozen=True)
class Item:
    """One stored object of the catalog and the digests recorded for it."""

    evidence_id: str
    case_id: str
    key: str
    role: str
    size: int
    digests: dict[str, str]


@dataclass(slots=True)
class Summary:
    counts: Counter[str] = field(default_factory=Counter)
    left_plain: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.left_plain)


def _digests(**values: str | None) -> dict[str, str]:
    return {name: value for name, value in values.items() if value}


async def items(engine: AsyncEngine) -> AsyncIterator[Item]:
    """Every original and derivative of evidence not purged, a page at a time, by key."""
    last = ""
    while True:
        async with engine.connect() as conn:
            rows = await tallies.stored_objects(conn, after=last, limit=PAGE)
        for row in rows:
            found = _digests(blake3=row[5], sha256=row[6], sm3=row[7])
            yield Item(row[0], row[1], row[2], row[3], int(row[4]), found)
        if len(rows) < PAGE:
            return
        last = rows[-1][2]


async def _audited(engine: AsyncEngine, item: Item, done: Converted, *, actor: str) -> None:
    event = ObjectSealed(
        actor=actor,
        object=f"evidence:{item.evidence_id}",
        case_id=item.case_id,
        key=item.key,
        role=item.role,
        size=done.size,
        checked=sorted(item.digests),
    )
    await unit.record(engine, event)


async def run(
    engine: AsyncEngine,
    convert: Callable[[Item], Awaitable[Converted]],
    *,
    actor: str,
    dry_run: bool = False,
    report: Callable[[Item, Converted], None] = lambda item, done: None,
) -> Summary:
    """`convert` every item (with `dry_run`, an inspection that changes nothing); `report`
    hears each outcome."""
    summary = Summary()
    async for item in items(engine):
        done = await convert(item)
        if done.outcome is Outcome.SEALED and not dry_run:
            await _audited(engine, item, done, actor=actor)
        summary.counts[done.outcome.value] += 1
        if done.outcome in FAILED:
            summary.left_plain.append(item.key)
            log.warning(
                "encrypt.left_plain key=%s evidence=%s outcome=%s detail=%s",
                item.key, item.evidence_id, done.outcome.value, done.detail,
            )  # fmt: skip
        report(item, done)
    if not dry_run:
        await unit.record(
            engine,
            EncryptExistingRun(
                actor=actor,
                object="store",
                counts=dict(summary.counts),
                left_plain=summary.left_plain,
            ),
        )
    return summary
