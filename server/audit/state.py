"""The audit log's state for the admin API: the head and the chain hash of the entries to come,
the newest signed checkpoint, how many entries no checkpoint covers yet, and whether each
witness holds that checkpoint.

A cheap look, not a verification: `avidence-server audit verify` walks the whole chain and
every checkpoint; this answers "is sealing and witnessing working?" at a glance. Each witness
is asked about one checkpoint only (a file witness reads its file, an S3 witness one HEAD),
with a time limit, so an unreachable witness shows as such instead of holding the page.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import Settings
from . import log, witness

WITNESS_TIMEOUT = 5.0


async def _witnessed(found: witness.Witness, document: dict[str, Any] | None) -> dict[str, Any]:
    answer: dict[str, Any] = {"name": found.name, "holds_latest": None, "error": None}
    if document is None:
        return answer
    try:
        answer["holds_latest"] = await asyncio.wait_for(found.holds(document), WITNESS_TIMEOUT)
    except TimeoutError:
        answer["error"] = f"no answer within {WITNESS_TIMEOUT:g} s"
    except Exception as exc:  # an unreadable witness is a finding to show, not a server error
        answer["error"] = type(exc).__name__
    return answer


async def state(engine: AsyncEngine, settings: Settings) -> dict[str, Any]:
    async with engine.connect() as conn:
        seq, head = await log.read_head(conn)
        chained = await log.chain_algorithm(conn)
    document = await log.latest_checkpoint(engine)
    body = (document or {}).get("checkpoint") or {}
    sealed = int(body.get("seq", 0))
    checkpoint = (
        {
            "seq": sealed,
            "time": body.get("time"),
            "head_hash": body.get("head_hash"),
            "key_id": document.get("key_id"),
            "algorithm": document.get("algorithm"),
        }
        if document is not None
        else None
    )
    return {
        "entries": seq,
        "head_hash": head if seq else None,
        "hash_algorithm": chained,  # of the entries to come: sha256, or sm3 under gm
        "checkpoint": checkpoint,
        "unsealed": seq - sealed,
        "checkpoint_interval": settings.checkpoint_interval,
        "witnesses": [await _witnessed(found, document) for found in witness.configured(settings)],
    }
