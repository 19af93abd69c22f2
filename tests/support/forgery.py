"""What an insider with write access to the catalog does to the audit log: edit one entry and
re-chain every later one, so the chain itself is self-consistent again. The tests of pinned
keys, witnesses and signed checkpoints each show a different control catching it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncConnection

from avidence.client.canonical import ALGORITHM, key_id
from avidence.server import signing
from avidence.server.audit import log as audit
from avidence.server.catalog.schema import audit_head, audit_log, signing_keys


async def insert_key(
    conn: AsyncConnection,
    private: Ed25519PrivateKey,
    *,
    certificate: Any = None,
    created_at: datetime | None = None,
) -> str:
    """Add a public key row behind the server's back, as an insider would; its id."""
    kid = key_id(private.public_key())
    await conn.execute(
        signing_keys.insert().values(
            id=kid,
            algorithm=ALGORITHM,
            public_key_pem=signing.public_pem(private),
            created_at=created_at or datetime.now(UTC),
            certificate=certificate,
        )
    )
    return kid


async def rechain(conn: AsyncConnection, *, edit_seq: int, actor: str) -> str:
    """Give entry `edit_seq` another actor, recompute the hashes from there on (as a careful
    forger would, keeping the unique hashes unique while rewriting), move the head row, and
    return the new head hash."""
    rows = (await conn.execute(sa.select(audit_log).order_by(audit_log.c.seq))).all()
    prev = rows[edit_seq - 2].hash if edit_seq > 1 else audit.GENESIS
    for row in rows[edit_seq - 1 :]:
        body = audit.entry_body(row)
        body["prev_hash"] = prev
        if row.seq == edit_seq:
            body["actor"] = actor
        prev = audit.entry_hash(body)
        await conn.execute(
            audit_log.update()
            .where(audit_log.c.seq == row.seq)
            .values(actor=body["actor"], prev_hash=f"tmp{row.seq}", hash=f"tmp-{row.seq}")
        )
        await conn.execute(
            audit_log.update()
            .where(audit_log.c.seq == row.seq)
            .values(prev_hash=body["prev_hash"], hash=prev)
        )
    await conn.execute(audit_head.update().values(seq=rows[-1].seq, hash=prev))
    return str(prev)
