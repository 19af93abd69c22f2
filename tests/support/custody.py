"""Custody consistency: every fact has exactly its audit entries and webhook deliveries, and no
entry describes a fact the catalog does not hold. Checked after every injected crash.

`StatementFault` is the crash: it raises on the n-th SQL statement one task runs, so the action's
transaction never commits, exactly as if the process died between two of its steps.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.client.canonical import PublicKeys
from avidence.server import signing
from avidence.server.audit import log as audit
from avidence.server.catalog.schema import (
    audit_log,
    evidence,
    evidence_retention,
    tickets,
    uploads,
)
from avidence.server.catalog.schema_exchange import transfers, webhook_deliveries
from avidence.server.webhooks.outbox import EVENT_OF


class InjectedCrash(Exception):
    """The process 'died' here."""


class StatementFault:
    """Raise on the `n`-th statement run by a task `counts` accepts, once per `arm`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.left: int | None = None
        self.fired = False
        self.counts: Callable[[asyncio.Task[Any]], bool] = lambda _: False
        event.listen(engine.sync_engine, "before_cursor_execute", self._before)

    def arm(self, n: int, counts: Callable[[asyncio.Task[Any]], bool]) -> None:
        self.left, self.fired, self.counts = n, False, counts

    def disarm(self) -> None:
        self.left = None

    def _before(self, *_: Any) -> None:
        if self.left is None:
            return
        try:
            task = asyncio.current_task()
        except RuntimeError:
            return
        if task is None or not self.counts(task):
            return
        self.left -= 1
        if self.left == 0:
            self.left, self.fired = None, True
            raise InjectedCrash("crash injected before this statement")


async def assert_consistent(engine: AsyncEngine) -> None:
    """The whole catalog: facts and entries one to one, deliveries for every entry that calls
    for one, the chain unbroken."""
    async with engine.connect() as conn:
        entries = (await conn.execute(sa.select(audit_log).order_by(audit_log.c.seq))).all()
        seen = Counter((e.action, e.object) for e in entries)

        def objects(action: str) -> Counter[str]:
            return Counter({obj: n for (a, obj), n in seen.items() if a == action})

        def exactly_once(action: str, kind: str, ids: set[str]) -> None:
            found = objects(action)
            expected = {f"{kind}:{i}" for i in ids}
            assert set(found) == expected, f"{action}: entries {set(found)} != facts {expected}"
            assert all(n == 1 for n in found.values()), f"{action} written twice: {found}"

        made = set((await conn.execute(sa.select(evidence.c.id))).scalars())
        exactly_once("evidence.created", "evidence", made)
        done = (
            await conn.execute(sa.select(uploads.c.evidence_id).where(uploads.c.state == "done"))
        ).scalars()
        assert set(done) == made, "an upload is done without its evidence, or the reverse"

        issued = set((await conn.execute(sa.select(tickets.c.id))).scalars())
        exactly_once("ticket.issued", "ticket", issued)
        revoked = set(
            (
                await conn.execute(sa.select(tickets.c.id).where(tickets.c.revoked_at.is_not(None)))
            ).scalars()
        )
        exactly_once("ticket.revoked", "ticket", revoked)

        sent = (await conn.execute(sa.select(transfers.c.id, transfers.c.state))).all()
        exactly_once("transfer.created", "transfer", {t.id for t in sent})
        for state in ("acknowledged", "rejected"):
            exactly_once(f"transfer.{state}", "transfer", {t.id for t in sent if t.state == state})

        kept = (
            await conn.execute(
                sa.select(evidence_retention.c.evidence_id, evidence_retention.c.state)
            )
        ).all()
        gone = {k.evidence_id for k in kept if k.state in ("deleted", "purged", "blocked")}
        assert {o.removeprefix("evidence:") for o in objects("evidence.deleted")} >= gone
        exactly_once(
            "evidence.purged", "evidence", {k.evidence_id for k in kept if k.state == "purged"}
        )

        queued = Counter(
            str(p["id"])
            for p in (await conn.execute(sa.select(webhook_deliveries.c.payload))).scalars()
        )
    by_seq = {f"evt_{e.seq}": e for e in entries}
    for payload_id in queued:
        assert payload_id in by_seq, f"delivery {payload_id} for an entry that does not exist"
        assert by_seq[payload_id].action in EVENT_OF
    for e in entries:
        if e.action == "evidence.created":
            assert queued[f"evt_{e.seq}"] >= 1, f"no webhook delivery for entry {e.seq}"
    verdict = await audit.verify(engine, await _keys(engine))
    assert verdict.ok, verdict.problem


async def _keys(engine: AsyncEngine) -> PublicKeys:
    return PublicKeys.load(json.dumps({"keys": await signing.published(engine)}))
