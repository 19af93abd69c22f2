"""Does the live log extend everything that was witnessed, and does every fact have its entry?

`log.verify` proves the chain in the catalog is internally consistent. An insider who can write
the catalog can make a consistent chain that is not the one that happened: delete the tail with
its checkpoint, restore an older backup, or replace the catalog with a forgery. What they cannot
reach is what the witnesses kept (`witness.py`) and the facts the rest of the catalog still
holds. So, for each witnessed checkpoint whose signature verifies:

- the live log is shorter than its `seq`: a **truncation** when the head row still remembers the
  longer log, else a **rollback** (the catalog as a whole is older: a restored backup, or a
  tail deleted together with the head row);
- the live entry at its `seq` has another hash: a **fork** (the log was rewritten from there on;
  a forged catalog, or an edit with every later hash recomputed);
- the catalog no longer holds that checkpoint: a **deleted checkpoint**.

And facts without their creation entry (evidence, tickets, transfers) name deleted entries that
no witness covers yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.client.canonical import PublicKeys, VerificationError

from ..catalog.schema import audit_checkpoints, audit_head, audit_log, tickets
from ..catalog.schema_exchange import transfers
from ..evidence import records as evidence_db
from .witness import Witness

Kind = Literal[
    "truncation", "rollback", "fork", "checkpoint_deleted", "unsigned", "missing", "timestamp"
]


@dataclass(slots=True, frozen=True)
class Finding:
    kind: Kind
    message: str


async def against_witnesses(
    engine: AsyncEngine, keys: PublicKeys, witnesses: Sequence[Witness], *, since: int = 0
) -> tuple[int, list[Finding]]:
    """(witnessed checkpoints checked, what does not fit), newest problem last. Checkpoints
    before seq `since` were checked by an earlier run and are skipped."""
    documents: list[tuple[str, dict[str, Any]]] = []
    for witness in witnesses:
        documents += [(witness.name, d) for d in await witness.read() if _seq(d) >= since]
    async with engine.connect() as conn:
        last = (await conn.execute(sa.select(sa.func.max(audit_log.c.seq)))).scalar() or 0
        head_row = (await conn.execute(sa.select(audit_head.c.seq))).scalar() or 0
        kept = {
            (int(r.seq), str(r.head_hash))
            for r in await conn.execute(
                sa.select(audit_checkpoints.c.seq, audit_checkpoints.c.head_hash)
            )
        }
        wanted = {int(d.get("checkpoint", {}).get("seq", 0)) for _, d in documents}
        live = dict(
            (int(seq), str(digest))
            for seq, digest in await conn.execute(
                sa.select(audit_log.c.seq, audit_log.c.hash).where(audit_log.c.seq.in_(wanted))
            )
        )
    findings: list[Finding] = []
    if head_row > last:
        findings.append(
            Finding(
                "truncation",
                f"the log's head row counts {head_row} entries but the log ends at {last}: "
                f"entries after {last} were deleted",
            )
        )
    checked = 0
    for name, document in sorted(documents, key=lambda d: _seq(d[1])):
        try:
            signed = keys.verify(document, body="checkpoint")
        except VerificationError as exc:
            findings.append(
                Finding("unsigned", f"{name}: checkpoint {_seq(document)} does not verify: {exc}")
            )
            continue
        checked += 1
        seq, head = int(signed["seq"]), str(signed["head_hash"])
        when = signed.get("time", "?")
        if seq > last:
            if head_row >= seq:
                findings.append(
                    Finding(
                        "truncation",
                        f"entries after {last} were deleted: {name} holds checkpoint {seq} "
                        f"signed at {when}, and the log's head row still counts {head_row}",
                    )
                )
            else:
                findings.append(
                    Finding(
                        "rollback",
                        f"the log ends at entry {last} but {name} holds checkpoint {seq} signed "
                        f"at {when}: the catalog was restored from an older backup, or its tail "
                        "was deleted together with the head row",
                    )
                )
        elif live.get(seq) != head:
            findings.append(
                Finding(
                    "fork",
                    f"entry {seq} is not the one {name} saw at checkpoint {seq} ({when}): the "
                    "log was rewritten from there on, or the catalog replaced",
                )
            )
        elif (seq, head) not in kept:
            findings.append(
                Finding(
                    "checkpoint_deleted",
                    f"checkpoint {seq} ({when}), held by {name}, was deleted from the catalog",
                )
            )
    return checked, _dedupe(findings)


def _seq(document: dict[str, Any]) -> int:
    try:
        return int(document.get("checkpoint", {}).get("seq", 0))
    except (TypeError, ValueError):
        return 0


def _dedupe(findings: list[Finding]) -> list[Finding]:
    """One finding per kind and message: several witnesses saw the same checkpoints."""
    return list(dict.fromkeys(findings))


# Facts and the entry that must exist for each: (table, id column, action, object prefix). Evidence
# records are asked of their repository, which alone reads the evidence table.
_CREATED = (
    (tickets, tickets.c.id, "ticket.issued", "ticket"),
    (transfers, transfers.c.id, "transfer.created", "transfer"),
)
_EVIDENCE_CREATED = ("evidence.created", "evidence")


def _recorded(action: str, kind: str) -> sa.Select[Any]:
    """The ids that entries of `action` name (their object is `kind:id`)."""
    return sa.select(sa.func.substr(audit_log.c.object, len(kind) + 2)).where(
        audit_log.c.action == action
    )


async def facts_without_entries(engine: AsyncEngine, *, limit: int = 5) -> list[Finding]:
    """Facts in the catalog whose creation entry is gone: entries deleted from the log."""
    findings = []
    async with engine.connect() as conn:
        action, kind = _EVIDENCE_CREATED
        orphans = {
            _EVIDENCE_CREATED: await evidence_db.ids_not_in(
                conn, _recorded(action, kind), limit=limit
            )
        }
        for table, column, action, kind in _CREATED:
            query = (
                sa.select(column)
                .select_from(table)
                .where(column.not_in(_recorded(action, kind)))
                .order_by(column)
                .limit(limit)
            )
            orphans[action, kind] = [str(i) for i in (await conn.execute(query)).scalars()]
    for (action, kind), names in orphans.items():
        if names:
            findings.append(
                Finding(
                    "missing",
                    f"{kind} {', '.join(names)} exist without their {action} entry: "
                    "entries were deleted from the log",
                )
            )
    return findings
