"""Signed receipts: the server's statement that it holds an original with these digests.

A receipt is canonical JSON of the evidence record signed with the server's Ed25519 key. It is
made once, when the evidence record is created, and stored as issued, so rotating the key later
never changes an old receipt; `GET /api/keys` keeps publishing the key that signed it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from avidence.client.canonical import canonical_json

from .. import clock
from ..catalog.schema import receipts
from ..signing import Signer
from .records import Evidence

RECEIPT_TYPE = "avidence.receipt/v1"


def receipt_body(record: Evidence, *, uploader_name: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": RECEIPT_TYPE,
        "evidence_id": record.id,
        "case": record.case_id,
        "item": record.item,
        "filename": record.filename,
        "size": record.size,
        "blake3": record.blake3,
        "sha256": record.sha256,
        "uploader": {"id": record.uploader, "name": uploader_name},
        "received_at": record.received_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "storage_key": record.storage_key,
    }
    if record.sm3:
        body["sm3"] = record.sm3
    return body


def receipt_id(document: Mapping[str, Any]) -> str:
    """A short name for one signed receipt: `rcp_` and the first 16 hex digits of the SHA-256
    of its canonical JSON, so anyone holding the receipt file can compute it offline."""
    return "rcp_" + hashlib.sha256(canonical_json(dict(document))).hexdigest()[:16]


async def issue(
    conn: AsyncConnection, signer: Signer, record: Evidence, *, uploader_name: str
) -> dict[str, Any]:
    """Sign and store the receipt inside the transaction that creates the evidence record."""
    document = signer.sign("receipt", receipt_body(record, uploader_name=uploader_name))
    await conn.execute(
        receipts.insert().values(
            evidence_id=record.id,
            key_id=signer.key_id,
            document=document,
            created_at=clock.now(),
        )
    )
    return document


async def get(engine: AsyncEngine, evidence_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        document = (
            await conn.execute(
                sa.select(receipts.c.document).where(receipts.c.evidence_id == evidence_id)
            )
        ).scalar()
    return dict(document) if document is not None else None
